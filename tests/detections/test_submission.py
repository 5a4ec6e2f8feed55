"""Tests of speechbrain_rfcx.detections.submission: submissions, priors."""

import numpy as np
import pandas as pd
import pytest

from speechbrain_rfcx.detections.submission import rescale_to_priors, write_submission
from speechbrain_rfcx.metrics import lwlrap

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
