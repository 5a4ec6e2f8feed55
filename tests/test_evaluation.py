"""rfcx-evaluate and the detection metrics behind it."""

import os

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from speechbrain_rfcx.detections.events import Detection, read_thresholds
from speechbrain_rfcx.detections.tables import write_detections_csv
from speechbrain_rfcx.evaluation import main as evaluate_main
from speechbrain_rfcx.metrics import (
    average_precision,
    fit_thresholds,
    lwlrap,
    precision_recall_at,
)


def _labels_and_scores(seed, n=60, c=5):
    rng = np.random.default_rng(seed)
    truth = (rng.random((n, c)) < 0.3).astype(int)
    truth[0] = 1  # every species has a positive
    scores = np.clip(0.35 * truth + 0.65 * rng.random((n, c)), 0, 1)  # tie-free
    return truth, scores


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_average_precision_matches_sklearn_without_ties(seed):
    truth, scores = _labels_and_scores(seed)
    expected = [average_precision_score(truth[:, c], scores[:, c]) for c in range(5)]
    np.testing.assert_allclose(average_precision(truth, scores), expected)


def test_ties_are_not_rewarded_and_empty_species_are_nan():
    ap = average_precision([[1, 0], [0, 0]], [[0.5, 0.2], [0.5, 0.9]])
    assert ap[0] == pytest.approx(0.5) and np.isnan(ap[1])


@pytest.mark.parametrize("target", [0.6, 0.8, 0.95])
def test_fitted_thresholds_reach_the_target_with_the_most_recall(target):
    truth, scores = _labels_and_scores(3, n=200)
    fitted = fit_thresholds(truth, scores, target)
    precision, recall = precision_recall_at(truth, scores, fitted)
    assert (precision >= target).all()
    for c in range(truth.shape[1]):  # any lower score as the cut misses the target
        lower = scores[scores[:, c] < fitted[c], c]
        if lower.size:
            p, _ = precision_recall_at(truth[:, [c]], scores[:, [c]], lower.max())
            assert p[0] < target


def _write_clip_csv(path, ids, values):
    frame = pd.DataFrame(values, columns=[f"s{c}" for c in range(values.shape[1])])
    frame.insert(0, "recording_id", ids)
    frame.to_csv(path, index=False)


def test_cli_agrees_with_the_metrics_and_writes_thresholds_detect_reads(
    tmp_path, capsys
):
    truth, scores = _labels_and_scores(4, n=80)
    ids = [f"rec{i:02d}" for i in range(80)]
    _write_clip_csv(tmp_path / "truth.csv", ids, truth)
    _write_clip_csv(tmp_path / "scores.csv", ["site/" + r for r in ids], scores)
    out = tmp_path / "eval"
    assert evaluate_main(["--reference", str(tmp_path / "truth.csv"), "--scores",
                          str(tmp_path / "scores.csv"), "--out", str(out),
                          "--fit-precision", "0.9", "--plot"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert f"lwlrap {lwlrap(truth, scores):.4f}" in printed
    assert "80 recordings evaluated" in printed  # ids matched by file name
    table = pd.read_csv(out / "per_species.csv")
    np.testing.assert_allclose(table.ap, average_precision(truth, scores))
    p, r = precision_recall_at(truth, scores, 0.5)
    np.testing.assert_allclose(table.precision, p)
    np.testing.assert_allclose(table.recall, r)
    fitted = read_thresholds(out / "thresholds.csv", 5)  # what rfcx-detect reads
    assert sorted(fitted) == list(range(5))
    assert fitted == pytest.approx(
        dict(enumerate(fit_thresholds(truth, scores, 0.9))), abs=1e-6
    )
    assert (out / "pr_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "summary.txt").read_text() in printed


def test_events_are_matched_to_boxes_within_the_collar(tmp_path, capsys):
    boxes = pd.DataFrame(
        [("a", 0, 1, 1.0, 100, 2.0, 900), ("a", 0, 1, 5.0, 100, 6.0, 900),
         ("a", 1, 1, 3.0, 100, 4.0, 900), ("b", 1, 1, 0.5, 100, 1.5, 900)],
        columns=["recording_id", "species_id", "songtype_id", "t_min", "f_min",
                 "t_max", "f_max"],
    )  # fmt: skip
    boxes.to_csv(tmp_path / "ref.csv", index=False)
    detections = tmp_path / "det"
    os.makedirs(detections / "site")
    write_detections_csv(detections / "site" / "a.detections.csv", [
        Detection(0, 1.3, 2.2, 0.9),  # matches the first box
        Detection(0, 1.1, 2.0, 0.8),  # that box is taken: a false positive
        Detection(1, 3.9, 4.5, 0.7),  # onset 0.9 s off: a false positive
    ], "a")  # fmt: skip
    write_detections_csv(
        detections / "b.detections.csv", [Detection(1, 0.6, 1.4, 0.6)], "b"
    )
    evaluate_main(["--reference", str(tmp_path / "ref.csv"), "--detections",
                   str(detections), "--out", str(tmp_path / "eval"),
                   "--collar", "0.5"])  # fmt: skip
    table = pd.read_csv(tmp_path / "eval" / "per_species.csv")
    assert table[["event_tp", "event_fp", "event_fn"]].values.tolist() == [
        [1, 1, 1],
        [1, 1, 1],
    ]
    assert "precision 0.5000, recall 0.5000, F1 0.5000" in capsys.readouterr().out
    # clip scores from the best event per recording: both recordings, both species
    assert table.positives.tolist() == [1, 2] and table.ap.tolist() == [1.0, 1.0]


@pytest.mark.parametrize(
    "scores_text, message",
    [
        ("recording_id,s0,s2\na,0.1,0.2\n", "species columns must be s0..s1"),
        ("recording_id,s0,s1\na,0.1,high\n", "line 2: s1 is not a finite number"),
        ("recording_id,s0,s1\nzz,0.1,0.2\n", "no scored recording is in the reference"),
    ],
)
def test_bad_inputs_are_named(tmp_path, capsys, scores_text, message):
    _write_clip_csv(tmp_path / "truth.csv", ["a"], np.array([[1, 0]]))
    (tmp_path / "scores.csv").write_text(scores_text)
    with pytest.raises(SystemExit):
        evaluate_main(["--reference", str(tmp_path / "truth.csv"), "--scores",
                       str(tmp_path / "scores.csv"), "--out", str(tmp_path / "e")])  # fmt: skip
    assert message in capsys.readouterr().err
