"""Tests of speechbrain_rfcx.detections: events, tables, submissions, priors."""

import numpy as np
import pandas as pd
import pytest

from speechbrain_rfcx.data.annotations import AnnotationError, Box
from speechbrain_rfcx.detections import (
    Detection,
    frames_to_detections,
    read_audacity_labels,
    read_raven_table,
    rescale_to_priors,
    species_bands,
    write_audacity_labels,
    write_detections_csv,
    write_raven_table,
    write_submission,
)
from speechbrain_rfcx.metrics import lwlrap

RAVEN_HEADER = (
    "Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\t"
    "High Freq (Hz)\tSpecies ID\tSpecies\tScore"
)


def assert_same_detections(got, expected, time_tol=1e-6, freq_tol=1e-3, score_tol=1e-6):
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.species_id == e.species_id
        assert g.t_min == pytest.approx(e.t_min, abs=time_tol)
        assert g.t_max == pytest.approx(e.t_max, abs=time_tol)
        assert g.score == pytest.approx(e.score, abs=score_tol)
        assert g.has_band == e.has_band
        if e.has_band:
            assert g.f_min == pytest.approx(e.f_min, abs=freq_tol)
            assert g.f_max == pytest.approx(e.f_max, abs=freq_tol)


@pytest.fixture
def some_detections():
    return [
        Detection(3, 1.234567, 2.5, 0.871234, 512.25, 2048.5),
        Detection(0, 4.0, 5.75, 0.5),
        Detection(17, 10.0, 10.125, 0.999999, 0.0, 24000.0),
    ]


# ---------------------------------------------------------------------------
# frames_to_detections
# ---------------------------------------------------------------------------


def plant_events(rng, n_frames, hop, offset, events, n_classes):
    """Frame probabilities: noise below 0.3, event frames above 0.7."""
    centres = offset + hop * np.arange(n_frames)
    probs = rng.uniform(0.0, 0.3, size=(n_frames, n_classes))
    for species, t_min, t_max in events:
        inside = (centres >= t_min) & (centres <= t_max)
        probs[inside, species] = rng.uniform(0.7, 1.0, size=inside.sum())
    return probs, centres


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planted_events_are_recovered_within_one_frame(seed):
    rng = np.random.default_rng(seed)
    hop, offset, n_frames, n_classes = 0.1, 0.05, 600, 6
    events = []
    for species in range(n_classes):
        start = rng.uniform(0.0, 5.0)
        while start < 50.0:  # non-overlapping, gaps of at least 1 s
            length = rng.uniform(0.3, 3.0)
            events.append((species, start, start + length))
            start += length + rng.uniform(1.0, 8.0)
    probs, centres = plant_events(rng, n_frames, hop, offset, events, n_classes)
    found = frames_to_detections(probs, frame_hop=hop, frame_offset=offset)
    assert len(found) == len(events)
    for species in range(n_classes):
        truth = sorted(e for e in events if e[0] == species)
        mine = [d for d in found if d.species_id == species]
        assert len(mine) == len(truth)
        for d, (_, t_min, t_max) in zip(mine, truth):
            assert abs(d.t_min - t_min) <= hop
            assert abs(d.t_max - t_max) <= hop
            inside = (centres >= t_min) & (centres <= t_max)
            assert d.score == probs[inside, species].max()
    # the same frames described by their times give the same detections
    assert_same_detections(frames_to_detections(probs, frame_times=centres), found)
    starts = [(d.t_min, d.species_id) for d in found]
    assert starts == sorted(starts)


def hand_probs():
    """One species, frames of 1 s (frame i spans [i, i + 1])."""
    column = np.array([0.6, 0.8, 0.1, 0.7, 0.9, 0.0, 0.2, 0.1, 0.95])
    return column[:, None]


@pytest.mark.parametrize(
    "merge_gap, min_duration, expected",
    [
        (0.0, 0.0, [(0, 2, 0.8), (3, 5, 0.9), (8, 9, 0.95)]),
        (0.99, 0.0, [(0, 2, 0.8), (3, 5, 0.9), (8, 9, 0.95)]),
        (1.0, 0.0, [(0, 5, 0.9), (8, 9, 0.95)]),
        (3.0, 0.0, [(0, 9, 0.95)]),
        (0.0, 2.0, [(0, 2, 0.8), (3, 5, 0.9)]),
        (0.0, 2.01, []),
        # min_duration applies to merged events: each run alone is 2 s
        (1.0, 3.0, [(0, 5, 0.9)]),
    ],
)
def test_merging_and_min_duration_by_hand(merge_gap, min_duration, expected):
    found = frames_to_detections(
        hand_probs(),
        frame_hop=1.0,
        frame_offset=0.5,
        threshold=0.5,
        merge_gap=merge_gap,
        min_duration=min_duration,
    )
    assert [(d.t_min, d.t_max, d.score) for d in found] == expected


def test_threshold_is_inclusive_and_frames_start_at_zero():
    probs = np.array([[0.5], [0.2], [0.2]])
    found = frames_to_detections(probs, frame_times=[0.0, 0.5, 1.0], threshold=0.5)
    # the first frame is centred at 0: its half before 0 s is cut off
    assert [(d.t_min, d.t_max) for d in found] == [(0.0, 0.25)]


def test_irregular_frame_times_split_at_midpoints():
    probs = np.array([[0.1], [0.9], [0.9], [0.1]])
    found = frames_to_detections(probs, frame_times=[1.0, 2.0, 4.0, 8.0])
    assert [(d.t_min, d.t_max) for d in found] == [(1.5, 6.0)]


def test_per_species_thresholds():
    probs = np.full((4, 3), 0.6)
    by_array = frames_to_detections(probs, frame_hop=1.0, threshold=[0.5, 0.7, 0.6])
    assert [d.species_id for d in by_array] == [0, 2]
    by_dict = frames_to_detections(
        probs, frame_hop=1.0, threshold={1: 0.55}, default_threshold=0.9
    )
    assert [d.species_id for d in by_dict] == [1]
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        frames_to_detections(probs, frame_hop=1.0, threshold=[0.5, 0.5])
    with pytest.raises(ValueError, match="species_id 7"):
        frames_to_detections(probs, frame_hop=1.0, threshold={7: 0.5})


def test_bands_are_attached_per_species():
    probs = np.full((3, 2), 0.9)
    found = frames_to_detections(probs, frame_hop=1.0, species_bands={1: (300, 900)})
    by_species = {d.species_id: d for d in found}
    assert (by_species[1].f_min, by_species[1].f_max) == (300.0, 900.0)
    assert not by_species[0].has_band


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(frame_probs=np.zeros(5), frame_hop=1.0), r"shape \(T, C\)"),
        (dict(frame_probs=np.full((2, 1), np.nan), frame_hop=1.0), "non-finite"),
        (dict(frame_probs=np.zeros((2, 1))), "exactly one"),
        (
            dict(frame_probs=np.zeros((2, 1)), frame_hop=1.0, frame_times=[0, 1]),
            "exactly one",
        ),
        (dict(frame_probs=np.zeros((2, 1)), frame_times=[1.0, 1.0]), "increasing"),
        (dict(frame_probs=np.zeros((2, 1)), frame_times=[1.0]), r"shape \(2,\)"),
        (dict(frame_probs=np.zeros((1, 1)), frame_times=[1.0]), "frame_hop"),
        (dict(frame_probs=np.zeros((2, 1)), frame_hop=-1.0), "frame_hop"),
        (dict(frame_probs=np.zeros((2, 1)), frame_hop=1.0, merge_gap=-1), "merge_gap"),
    ],
)
def test_frames_to_detections_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        frames_to_detections(**kwargs)


def test_detection_validates_its_fields():
    with pytest.raises(ValueError, match="species_id"):
        Detection(-1, 0.0, 1.0, 0.5)
    with pytest.raises(ValueError, match="both"):
        Detection(0, 0.0, 1.0, 0.5, f_min=100.0)
    with pytest.raises(ValueError, match="f_min 900.0 is above f_max 100.0"):
        Detection(0, 0.0, 1.0, 0.5, 900.0, 100.0)
    assert type(Detection(np.int64(2), 0, 1, np.float32(0.5)).species_id) is int


# ---------------------------------------------------------------------------
# species_bands
# ---------------------------------------------------------------------------


def test_species_bands_quantiles_by_hand():
    f_mins = [100.0, 200.0, 300.0, 400.0, 500.0]
    f_maxs = [1000.0, 2000.0, 3000.0, 4000.0, 5000.0]
    boxes = [Box(4, 1, 0.0, lo, 1.0, hi) for lo, hi in zip(f_mins, f_maxs)]
    boxes.append(Box(1, 1, 0.0, 50.0, 1.0, 60.0))
    # linear interpolation: quantile q of 5 sorted values sits at index 4 q
    assert species_bands(boxes, quantiles=(0.25, 0.75)) == {
        1: (50.0, 60.0),
        4: (200.0, 4000.0),
    }
    assert species_bands(boxes, quantiles=(0.1, 0.9))[4] == (140.0, 4600.0)
    frame = pd.DataFrame([b.to_dict() for b in boxes])
    assert species_bands(frame) == species_bands(boxes)
    assert list(species_bands(frame)) == [1, 4]


def test_species_bands_rejects_bad_input():
    with pytest.raises(ValueError, match="quantiles"):
        species_bands([], quantiles=(0.9, 0.1))
    with pytest.raises(ValueError, match="f_max"):
        species_bands(pd.DataFrame({"species_id": [0], "f_min": [1.0]}))
    assert species_bands([]) == {}


# ---------------------------------------------------------------------------
# Raven
# ---------------------------------------------------------------------------


def test_raven_round_trip_and_header(tmp_path, some_detections):
    path = tmp_path / "rec.Table.1.selections.txt"
    write_raven_table(path, some_detections, species_names={3: "Coqui frog"})
    lines = path.read_text().splitlines()
    assert lines[0] == RAVEN_HEADER
    rows = [line.split("\t") for line in lines[1:]]
    assert [r[0] for r in rows] == ["1", "2", "3"]
    assert {r[1] for r in rows} == {"Spectrogram 1"}
    assert {r[2] for r in rows} == {"1"}
    assert [r[8] for r in rows] == ["Coqui frog", "s0", "s17"]
    assert rows[1][5:7] == ["", ""]  # no band
    assert_same_detections(read_raven_table(path), some_detections)


def test_raven_reads_tables_saved_again_by_raven(tmp_path):
    header = (
        "Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tDelta Time (s)\t"
        "Low Freq (Hz)\tHigh Freq (Hz)\tSpecies ID\tSpecies\tScore\tNotes"
    )
    rows = [
        "1\tWaveform 1\t1\t1.5\t2.5\t1.0\t0\t0\t4\ts4\t0.8\t",
        "1\tSpectrogram 1\t1\t1.5\t2.5\t1.0\t100\t900\t4\ts4\t0.8\t",
        "2\tSpectrogram 1\t1\t3\t4\t1.0\t200\t800\t2\ts2\t0.6\tchecked",
    ]
    path = tmp_path / "saved.txt"
    path.write_text("\n".join([header, *rows]) + "\n")
    got = read_raven_table(path)
    # selection 1 is read once (its first row, as Raven lists views in order)
    assert_same_detections(
        got, [Detection(4, 1.5, 2.5, 0.8, 0.0, 0.0), Detection(2, 3, 4, 0.6, 200, 800)]
    )


@pytest.mark.parametrize(
    "row, message",
    [
        ("2\tSpectrogram 1\t1\tabc\t2.0\t100\t900\t1\ts1\t0.5", "line 3: Begin Time"),
        ("2\tSpectrogram 1\t1\t1.0\t2.0\t100\t900\t1\ts1", "line 3: 9 fields"),
        ("2\tSpectrogram 1\t1\t3.0\t2.0\t100\t900\t1\ts1\t0.5", "line 3: .*t_min"),
        ("2\tSpectrogram 1\t1\t1.0\t2.0\t100\t900\t1.5\ts1\t0.5", "line 3: Species ID"),
        ("2\tSpectrogram 1\t1\t1.0\t2.0\t100\t\t1\ts1\t0.5", "line 3: High Freq"),
    ],
)
def test_raven_malformed_line_is_named(tmp_path, row, message):
    path = tmp_path / "bad.txt"
    good = "1\tSpectrogram 1\t1\t1.0\t2.0\t100\t900\t1\ts1\t0.5"
    path.write_text("\n".join([RAVEN_HEADER, good, row]) + "\n")
    with pytest.raises(AnnotationError, match=f"bad.txt {message}"):
        read_raven_table(path)


def test_raven_missing_column_is_named(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("Selection\tBegin Time (s)\tEnd Time (s)\tSpecies ID\n1\t0\t1\t2\n")
    with pytest.raises(AnnotationError, match="line 1: missing column.*Score"):
        read_raven_table(path)


def test_writers_are_atomic(tmp_path, some_detections, monkeypatch):
    path = tmp_path / "table.txt"
    path.write_text("old")

    def broken_name(species_id, species_names):
        raise RuntimeError("interrupted")

    monkeypatch.setattr("speechbrain_rfcx.detections._species_name", broken_name)
    with pytest.raises(RuntimeError):
        write_raven_table(path, some_detections)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["table.txt"]


# ---------------------------------------------------------------------------
# Audacity
# ---------------------------------------------------------------------------


def test_audacity_round_trip_with_and_without_bands(tmp_path, some_detections):
    path = tmp_path / "labels.txt"
    write_audacity_labels(path, some_detections)
    lines = path.read_text().splitlines()
    assert lines[:2] == ["1.234567\t2.500000\ts3 0.871", "\\\t512.250000\t2048.500000"]
    assert lines[2] == "4.000000\t5.750000\ts0 0.500"
    assert len(lines) == 5  # two detections have a band
    assert_same_detections(read_audacity_labels(path), some_detections, score_tol=5e-4)

    no_bands = [
        Detection(d.species_id, d.t_min, d.t_max, d.score) for d in some_detections
    ]
    write_audacity_labels(path, no_bands)
    assert len(path.read_text().splitlines()) == 3
    assert_same_detections(read_audacity_labels(path), no_bands, score_tol=5e-4)


def test_audacity_species_names_round_trip(tmp_path, some_detections):
    names = {3: "Eleutherodactylus coqui", 0: "tink"}
    path = tmp_path / "labels.txt"
    write_audacity_labels(path, some_detections, species_names=names)
    assert path.read_text().splitlines()[0].endswith("\tEleutherodactylus coqui 0.871")
    got = read_audacity_labels(path, species_names=names)
    assert [d.species_id for d in got] == [3, 0, 17]  # s17 has no name


def test_audacity_negative_frequencies_mean_no_band(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("1\t2\ts1 0.5\n\\\t-1.000000\t-1.000000\n")
    assert read_audacity_labels(path) == [Detection(1, 1.0, 2.0, 0.5)]


@pytest.mark.parametrize(
    "text, message",
    [
        ("1\t2\ts1 0.5\n1\t2\tfrog\n", "line 2: label 'frog'"),
        ("1\t2\ts1 0.5\n1\t2\tcoqui 0.5\n", "line 2: label 'coqui 0.5'"),
        ("1\t2\ts1 high\n", "line 1: score 'high'"),
        ("\\\t100\t200\n", "line 1: frequency line without a label"),
        ("1\t2\ts1 0.5\n\\\t100\t200\n\\\t100\t200\n", "line 3: frequency line"),
        ("1\t2\ts1 0.5\n\\\t100\n", "line 2: a frequency line needs"),
        ("1\ts1 0.5\n", "line 1: a label line needs"),
        ("1\tx\ts1 0.5\n", "line 1: end 'x'"),
    ],
)
def test_audacity_malformed_line_is_named(tmp_path, text, message):
    path = tmp_path / "labels.txt"
    path.write_text(text)
    with pytest.raises(AnnotationError, match=message):
        read_audacity_labels(path)


# ---------------------------------------------------------------------------
# CSV
# ---------------------------------------------------------------------------


def test_detections_csv(tmp_path, some_detections):
    path = tmp_path / "detections.csv"
    write_detections_csv(path, some_detections, recording_id="rec9")
    frame = pd.read_csv(path, dtype={"recording_id": str})
    assert list(frame.columns) == [
        "recording_id",
        "species_id",
        "t_min",
        "f_min",
        "t_max",
        "f_max",
        "score",
    ]
    assert (frame["recording_id"] == "rec9").all()
    assert frame["species_id"].tolist() == [3, 0, 17]
    assert frame["t_min"].tolist() == [d.t_min for d in some_detections]
    assert frame["score"].tolist() == [d.score for d in some_detections]
    assert np.isnan(frame.loc[1, "f_min"]) and frame.loc[2, "f_max"] == 24000.0

    write_detections_csv(path, {"a": some_detections[:1], "b": some_detections[1:]})
    assert pd.read_csv(path)["recording_id"].tolist() == ["a", "b", "b"]
    write_detections_csv(path, some_detections)
    assert "recording_id" not in pd.read_csv(path).columns


# ---------------------------------------------------------------------------
# Submission
# ---------------------------------------------------------------------------


@pytest.fixture
def sample_submission(tmp_path):
    path = tmp_path / "sample_submission.csv"
    path.write_text("recording_id,s0,s1,s2\nccc,0,0,0\n000a,0,0,0\nbbb,0,0,0\n")
    return path


def test_submission_follows_sample_order(tmp_path, sample_submission):
    ids = ["000a", "bbb", "ccc"]
    scores = np.random.default_rng(0).random((3, 3))
    out = tmp_path / "submission.csv"
    write_submission(out, ids, scores, sample_submission=sample_submission)
    assert out.read_text().splitlines()[0] == "recording_id,s0,s1,s2"
    frame = pd.read_csv(out, dtype={"recording_id": str})
    assert frame["recording_id"].tolist() == ["ccc", "000a", "bbb"]
    for row, rid in zip(frame.itertuples(index=False), frame["recording_id"]):
        assert list(row[1:]) == scores[ids.index(rid)].tolist()  # exact values


def test_submission_keeps_sample_column_order(tmp_path):
    sample = tmp_path / "sample.csv"
    sample.write_text("recording_id,s1,s0\nx,0,0\n")
    out = tmp_path / "submission.csv"
    write_submission(out, ["x"], [[0.25, 0.75]], sample_submission=sample)
    assert out.read_text() == "recording_id,s1,s0\nx,0.75,0.25\n"


def test_submission_mismatches_are_named(tmp_path, sample_submission):
    out = tmp_path / "submission.csv"
    scores = np.zeros((3, 3))
    with pytest.raises(ValueError, match="'bbb'"):
        write_submission(out, ["000a", "ccc", "zzz"], scores, sample_submission)
    with pytest.raises(ValueError, match="not in .*sample_submission.csv, first 'zzz'"):
        write_submission(
            out, ["000a", "bbb", "ccc", "zzz"], np.zeros((4, 3)), sample_submission
        )
    with pytest.raises(ValueError, match="s3"):
        write_submission(
            out, ["000a", "bbb", "ccc"], np.zeros((3, 4)), sample_submission
        )
    with pytest.raises(ValueError, match="s2"):
        write_submission(
            out, ["000a", "bbb", "ccc"], np.zeros((3, 2)), sample_submission
        )
    with pytest.raises(ValueError, match="'bbb' appears twice"):
        write_submission(out, ["bbb", "bbb", "ccc"], scores)
    with pytest.raises(ValueError, match=r"shape \(2, C\)"):
        write_submission(out, ["a", "b"], scores)
    with pytest.raises(ValueError, match="'b'.*not finite"):
        write_submission(out, ["a", "b"], [[0.0], [np.nan]])
    assert not out.exists()


# ---------------------------------------------------------------------------
# rescale_to_priors
# ---------------------------------------------------------------------------


def random_scores(seed, n=300, c=6):
    rng = np.random.default_rng(seed)
    return rng.beta(0.5, 2.0, size=(n, c)), rng.uniform(0.02, 0.6, size=c)


@pytest.mark.parametrize("strength", [0.3, 0.7, 1.0])
def test_rescale_keeps_order_within_columns(strength):
    scores, priors = random_scores(0)
    out = rescale_to_priors(scores, priors, strength=strength)
    assert out.shape == scores.shape
    assert ((out >= 0) & (out <= 1)).all()
    order = np.argsort(scores, axis=0)
    sorted_out = np.take_along_axis(out, order, axis=0)
    assert (np.diff(sorted_out, axis=0) > 0).all()  # strictly increasing, no new ties


def test_rescale_hits_priors_and_strength_zero_is_identity():
    scores, priors = random_scores(1)
    means = scores.mean(axis=0)
    np.testing.assert_allclose(
        rescale_to_priors(scores, priors).mean(axis=0), priors, atol=1e-9
    )
    np.testing.assert_array_equal(rescale_to_priors(scores, priors, 0.0), scores)
    half = rescale_to_priors(scores, priors, 0.5).mean(axis=0)
    # halfway in log space: the geometric mean of the old mean and the prior
    np.testing.assert_allclose(half, np.sqrt(means * priors), rtol=1e-9)
    assert (np.abs(np.log(half / priors)) < np.abs(np.log(means / priors))).all()


def test_rescale_changes_ranking_across_columns_only_and_keeps_exact_ends():
    scores = np.array([[0.0, 0.2], [0.5, 0.3], [1.0, 0.4], [0.2, 0.1]])
    out = rescale_to_priors(scores, [0.1, 0.9])
    assert out[0, 0] == 0.0 and out[2, 0] == 1.0
    assert (out[:, 1] > out[:, 0])[1]  # row 1 now ranks species 1 first
    assert (np.argsort(out, axis=0) == np.argsort(scores, axis=0)).all()


def test_rescale_to_true_priors_repairs_miscalibrated_columns():
    # species scored by an honest signal, but some columns are shifted down by
    # a constant logit (the miscalibration prior rescaling repairs)
    rng = np.random.default_rng(3)
    n, c = 2000, 8
    priors = rng.uniform(0.05, 0.5, size=c)
    truth = (rng.random((n, c)) < priors).astype(int)
    truth[truth.sum(1) == 0, 0] = 1
    signal = 2.0 * truth + rng.normal(0.0, 1.0, size=(n, c))
    bias = rng.uniform(-4.0, 2.0, size=c)
    scores = 1.0 / (1.0 + np.exp(-(signal - 1.0 + bias)))
    rescaled = rescale_to_priors(scores, truth.mean(axis=0))
    assert lwlrap(truth, rescaled) > lwlrap(truth, scores) + 0.05
    # as good as the scores before the miscalibration, give or take
    calibrated = 1.0 / (1.0 + np.exp(-(signal - 1.0)))
    assert lwlrap(truth, rescaled) > lwlrap(truth, calibrated) - 0.01


@pytest.mark.parametrize(
    "scores, priors, strength, message",
    [
        (np.full((2, 2), 0.5), [0.5], 1.0, r"shape \(2,\)"),
        (np.full((2, 2), 0.5), [0.5, 1.0], 1.0, "species 1"),
        (np.full((2, 2), 0.5), [0.0, 0.5], 1.0, "species 0"),
        (np.full((2, 2), 1.5), [0.5, 0.5], 1.0, r"\[0, 1\]"),
        (np.full(2, 0.5), [0.5, 0.5], 1.0, r"\(N, C\)"),
        (np.full((2, 2), 0.5), [0.5, 0.5], -1.0, "strength"),
        (np.full((2, 2), 0.5), [0.5, 0.5], 1.5, "strength"),
    ],
)
def test_rescale_rejects_bad_input(scores, priors, strength, message):
    with pytest.raises(ValueError, match=message):
        rescale_to_priors(scores, priors, strength)
