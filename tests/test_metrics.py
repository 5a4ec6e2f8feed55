"""Tests of speechbrain_rfcx.metrics (lwlrap and LwlrapStats)."""

import io
import math
import time

import numpy as np
import pytest
import torch
from sklearn.metrics import label_ranking_average_precision_score

from speechbrain_rfcx import metrics
from speechbrain_rfcx.metrics import (
    LwlrapStats,
    chance_lwlrap,
    lwlrap,
    lwlrap_per_class,
    masked_lwlrap,
)


def sklearn_lwlrap(truth, scores):
    """The oracle: sklearn LRAP weighted by the number of labels per row."""
    truth = np.asarray(truth)
    keep = truth.sum(1) > 0
    return label_ranking_average_precision_score(
        truth[keep], np.asarray(scores)[keep], sample_weight=truth[keep].sum(1)
    )


def random_labels(rng, n_rows, n_classes, p_true=0.15):
    truth = (rng.random((n_rows, n_classes)) < p_true).astype(int)
    truth[0, 0] = 1  # at least one positive
    truth[1] = 0  # at least one all-negative row
    return truth


@pytest.mark.parametrize(
    "n_rows, n_classes, seed", [(5, 3, 0), (50, 24, 1), (300, 24, 2), (40, 7, 3)]
)
def test_matches_sklearn_without_ties(n_rows, n_classes, seed):
    rng = np.random.default_rng(seed)
    truth = random_labels(rng, n_rows, n_classes)
    scores = rng.normal(size=(n_rows, n_classes))
    assert lwlrap(truth, scores) == pytest.approx(
        sklearn_lwlrap(truth, scores), abs=1e-9
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_sklearn_with_ties(seed):
    # sklearn also ranks ties pessimistically (rankdata "max"), so it stays exact.
    rng = np.random.default_rng(seed)
    truth = random_labels(rng, 200, 24, p_true=0.3)
    scores = rng.integers(0, 3, size=truth.shape).astype(float)
    assert lwlrap(truth, scores) == pytest.approx(
        sklearn_lwlrap(truth, scores), abs=1e-9
    )


def test_hand_computed():
    truth = [[1, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]]
    scores = [[0.1, 0.9, 0.8, 0.2], [0.4, 0.3, 0.2, 0.1], [0.9, 0.1, 0.2, 0.3]]
    # row 0 order: c1, c2, c3, c0. c2: rank 2, 1 true at/above -> 1/2;
    #                               c0: rank 4, 2 true at/above -> 2/4.
    # row 1: c3 is last of 4 -> 1/4.   row 2: no positives -> nothing.
    assert lwlrap(truth, scores) == pytest.approx((1 / 2 + 2 / 4 + 1 / 4) / 3)
    per_class, weights = lwlrap_per_class(truth, scores)
    np.testing.assert_allclose(per_class[[0, 2, 3]], [0.5, 0.5, 0.25])
    assert np.isnan(per_class[1])  # class 1 has no label
    np.testing.assert_allclose(weights, [1 / 3, 0, 1 / 3, 1 / 3])


def test_perfect_and_worst_ranking():
    truth = np.array([[1, 1, 0, 0, 0], [0, 0, 0, 1, 0]])
    good = truth + 0.01 * np.arange(5)  # every true class above every false one
    assert lwlrap(truth, good) == 1.0
    # Worst: true classes at the bottom. Row 0: ranks 4 and 5 -> 1/4, 2/5;
    # row 1: rank 5 -> 1/5.
    assert lwlrap(truth, -good) == pytest.approx((1 / 4 + 2 / 5 + 1 / 5) / 3)


def test_weights_and_per_class_recompose_lwlrap():
    rng = np.random.default_rng(4)
    truth = random_labels(rng, 120, 10, p_true=0.2)
    truth[:, 9] = 0  # one class never present
    scores = rng.normal(size=truth.shape)
    per_class, weights = lwlrap_per_class(truth, scores)
    assert weights.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(weights, truth.sum(0) / truth.sum())
    assert weights[9] == 0 and np.isnan(per_class[9])
    assert np.nansum(weights * per_class) == pytest.approx(lwlrap(truth, scores))


def test_invariances():
    rng = np.random.default_rng(5)
    truth = random_labels(rng, 60, 8, p_true=0.3)
    logits = rng.normal(size=truth.shape)
    value = lwlrap(truth, logits)
    # monotone transform of the scores (logits -> probabilities)
    assert lwlrap(truth, 1 / (1 + np.exp(-logits))) == pytest.approx(value)
    # same permutation of the columns of both; any permutation of the rows
    cols, rows = rng.permutation(8), rng.permutation(60)
    assert lwlrap(truth[:, cols], logits[:, cols]) == pytest.approx(value)
    assert lwlrap(truth[rows], logits[rows]) == pytest.approx(value)
    # adding a constant to a row changes nothing (only in-row order matters)
    shifted = logits + rng.normal(size=(60, 1)) * 10
    assert lwlrap(truth, shifted) == pytest.approx(value)


def test_ties_are_pessimistic():
    # constant row, 2 true of 4: every true class has rank 4, 2 true at/above
    assert lwlrap([[1, 0, 1, 0]], [[0.3, 0.3, 0.3, 0.3]]) == pytest.approx(2 / 4)
    # a true class tied with a false one: rank 2 (not 1), 1 true -> 1/2
    assert lwlrap([[1, 0, 0]], [[0.5, 0.5, 0.1]]) == pytest.approx(1 / 2)
    # two true classes tied at the top: both rank 2 with 2 true -> 1
    assert lwlrap([[1, 1, 0]], [[0.7, 0.7, 0.1]]) == 1.0


def test_torch_inputs_match_numpy():
    rng = np.random.default_rng(6)
    truth = random_labels(rng, 30, 6, p_true=0.3)
    scores = rng.normal(size=truth.shape)
    mask = (rng.random(truth.shape) < 0.7).astype(int)
    mask[0, 0] = 1
    as_torch = (torch.tensor(truth, dtype=torch.bool), torch.tensor(scores))
    assert lwlrap(*as_torch) == pytest.approx(lwlrap(truth, scores))
    assert masked_lwlrap(*as_torch, torch.tensor(mask)) == pytest.approx(
        masked_lwlrap(truth, scores, mask)
    )
    grad_scores = torch.tensor(scores, requires_grad=True)
    assert lwlrap(as_torch[0], grad_scores) == pytest.approx(lwlrap(truth, scores))


def test_masked_full_mask_equals_lwlrap():
    rng = np.random.default_rng(7)
    truth = random_labels(rng, 80, 24)
    scores = rng.normal(size=truth.shape)
    assert masked_lwlrap(truth, scores, np.ones_like(truth)) == pytest.approx(
        lwlrap(truth, scores), abs=1e-12
    )


def test_masked_hand_computed():
    truth = [[1, 1, 0, 1]]  # class 1's label is unknown, whatever it says
    scores = [[0.2, 0.9, 0.5, 0.1]]
    mask = [[1, 0, 1, 1]]
    # reduced row: classes 0, 2, 3 with scores 0.2, 0.5, 0.1 and truth 1, 0, 1.
    # c0: rank 2, 1 true at/above -> 1/2; c3: rank 3, 2 true at/above -> 2/3.
    assert masked_lwlrap(truth, scores, mask) == pytest.approx((1 / 2 + 2 / 3) / 2)
    reduced = lwlrap([[1, 0, 1]], [[0.2, 0.5, 0.1]])
    assert masked_lwlrap(truth, scores, mask) == pytest.approx(reduced)
    # unknown cells may hold anything, even NaN
    nan_truth = [[1, np.nan, 0, 1]]
    nan_scores = [[0.2, np.nan, 0.5, 0.1]]
    assert masked_lwlrap(nan_truth, nan_scores, mask) == pytest.approx(reduced)


def test_masked_matches_rowwise_oracle():
    rng = np.random.default_rng(8)
    truth = random_labels(rng, 60, 12, p_true=0.3)
    scores = rng.normal(size=truth.shape)
    mask = rng.random(truth.shape) < 0.6
    total, n_labels = 0.0, 0
    for row_truth, row_scores, row_known in zip(truth, scores, mask):
        kept_truth = row_truth[row_known]
        if kept_truth.sum() == 0:
            continue
        lrap = label_ranking_average_precision_score(
            kept_truth[None], row_scores[row_known][None]
        )
        total += lrap * kept_truth.sum()
        n_labels += kept_truth.sum()
    assert masked_lwlrap(truth, scores, mask) == pytest.approx(total / n_labels)


@pytest.mark.parametrize("n_classes", [2, 24])
def test_chance_one_positive_per_row(n_classes):
    # with one true class, Prec = 1 / rank and rank is uniform on 1..C
    truth = np.zeros((2000, n_classes), dtype=int)
    truth[np.arange(2000), np.arange(2000) % n_classes] = 1
    harmonic = sum(1 / k for k in range(1, n_classes + 1))
    assert chance_lwlrap(truth, n_draws=16) == pytest.approx(
        harmonic / n_classes, abs=0.004
    )


def test_chance_deterministic_and_all_true():
    truth = random_labels(np.random.default_rng(9), 100, 6, p_true=0.3)
    assert chance_lwlrap(truth, seed=3) == chance_lwlrap(truth, seed=3)
    assert chance_lwlrap(np.ones((5, 4), dtype=int)) == 1.0


@pytest.mark.parametrize(
    "truth, scores, message",
    [
        ([[1, 0]], [[0.1, 0.2, 0.3]], "same shape"),
        ([[1, 0.5]], [[0.1, 0.2]], "truth must contain only 0 and 1"),
        ([[1, 0]], [[0.1, np.nan]], "NaN"),
        ([1, 0], [0.1, 0.2], "2-D"),
        ([[0, 0]], [[0.1, 0.2]], "no positive"),
    ],
)
def test_bad_input_raises(truth, scores, message):
    with pytest.raises(ValueError, match=message):
        lwlrap(truth, scores)


def test_bad_mask_and_draws_raise():
    with pytest.raises(ValueError, match="mask must contain only 0 and 1"):
        masked_lwlrap([[1, 0]], [[0.1, 0.2]], [[1, 2]])
    with pytest.raises(ValueError, match="mask must have the shape"):
        masked_lwlrap([[1, 0]], [[0.1, 0.2]], [[1, 1, 1]])
    with pytest.raises(ValueError, match="n_draws"):
        chance_lwlrap([[1, 0]], n_draws=0)


def test_large_input_is_fast_and_chunked(monkeypatch):
    rng = np.random.default_rng(10)
    truth = (rng.random((100_000, 24)) < 0.05).astype(int)
    truth[0, 0] = 1
    scores = rng.random(truth.shape)
    start = time.perf_counter()
    value = lwlrap(truth, scores)
    assert time.perf_counter() - start < 10
    # chunk boundaries must not change the result
    monkeypatch.setattr(metrics, "_MAX_PAIRS_PER_CHUNK", 24 * 24 * 7)
    small = slice(0, 3000)
    assert lwlrap(truth[small], scores[small]) == pytest.approx(
        sklearn_lwlrap(truth[small], scores[small]), abs=1e-9
    )
    assert 0.1 < value < 0.25  # random scores: near the chance level


def make_batches(seed=11, n_batches=4, batch_size=8, n_classes=5):
    rng = np.random.default_rng(seed)
    batches = []
    for b in range(n_batches):
        truth = (rng.random((batch_size, n_classes)) < 0.3).astype(np.float32)
        truth[0, b % n_classes] = 1
        mask = (rng.random((batch_size, n_classes)) < 0.7).astype(np.float32)
        mask[0] = 1
        batches.append(
            (
                [f"rec{b}_{i}" for i in range(batch_size)],
                torch.tensor(rng.normal(size=(batch_size, n_classes))),
                torch.tensor(truth),
                torch.tensor(mask),
            )
        )
    return batches


def test_stats_equal_function_on_concatenation():
    batches = make_batches()
    stats = LwlrapStats()
    for ids, scores, targets, mask in batches:
        stats.append(ids, scores, targets, mask=mask)
    scores = torch.cat([b[1] for b in batches])
    targets = torch.cat([b[2] for b in batches])
    masks = torch.cat([b[3] for b in batches])
    summary = stats.summarize()
    assert summary["lwlrap"] == pytest.approx(lwlrap(targets, scores))
    assert summary["masked_lwlrap"] == pytest.approx(
        masked_lwlrap(targets, scores, masks)
    )
    per_class, weights = lwlrap_per_class(targets, scores)
    np.testing.assert_allclose(summary["per_class"], per_class)
    np.testing.assert_allclose(summary["weights"], weights)
    assert summary["n_recordings"] == 32
    assert summary["n_labels"] == int(targets.sum())
    assert stats.summarize("lwlrap") == summary["lwlrap"]


def test_stats_without_mask_has_no_masked_entry_and_clear_works():
    stats = LwlrapStats()
    ids, scores, targets, _ = make_batches(n_batches=1)[0]
    stats.append(ids, scores, targets)
    assert "masked_lwlrap" not in stats.summarize()
    stats.clear()
    with pytest.raises(ValueError, match="empty"):
        stats.summarize()
    stats.append(ids, scores, targets)  # ids may be reused after clear()
    assert stats.summarize("n_recordings") == len(ids)


def test_stats_rejects_duplicates_and_bad_shapes():
    stats = LwlrapStats()
    stats.append(["a", "b"], torch.zeros(2, 3), torch.eye(2, 3))
    with pytest.raises(ValueError, match="'b' was already appended"):
        stats.append(["b"], torch.zeros(1, 3), torch.ones(1, 3))
    with pytest.raises(ValueError, match="len\\(ids\\)=2"):
        stats.append(["c", "d"], torch.zeros(3, 3), torch.ones(3, 3))
    with pytest.raises(ValueError, match="4 classes"):
        stats.append(["e"], torch.zeros(1, 4), torch.ones(1, 4))


def test_write_stats_table():
    stats = LwlrapStats(class_names=["coqui", "tody", "owl"])
    # rec1: truth {coqui}, coqui is 2nd of 3 -> 1/2
    # rec2: truth {coqui, tody}, ranked 1st and 2nd -> 1, 1
    stats.append(
        ["rec1", "rec2"],
        torch.tensor([[0.5, 0.9, 0.1], [3.0, 2.0, 1.0]]),
        torch.tensor([[1, 0, 0], [1, 1, 0]]),
    )
    out = io.StringIO()
    stats.write_stats(out)
    lines = out.getvalue().splitlines()
    assert lines[0] == "lwlrap: 0.8333 (2 recordings, 3 true labels)"
    assert lines[2].split() == ["coqui", "2", "0.6667", "0.7500"]
    assert lines[3].split() == ["tody", "1", "0.3333", "1.0000"]
    assert lines[4].split() == ["owl", "0", "0.0000", "n/a"]


def test_gather_merges_shards_and_drops_padding_repeats(monkeypatch):
    batches = make_batches(n_batches=2)
    rank0, rank1 = LwlrapStats(), LwlrapStats()
    rank0.append(*batches[0][:3], mask=batches[0][3])
    rank1.append(*batches[1][:3], mask=batches[1][3])
    # DistributedSampler pads the last shard by repeating the first recordings
    rank1.append(batches[0][0][:2], batches[0][1][:2], batches[0][2][:2])
    shard1 = (
        rank1.ids,
        torch.cat(rank1.scores),
        torch.cat(rank1.targets),
        torch.cat(rank1.masks),
        True,
    )

    def fake_all_gather(output, local):
        output[0], output[1] = local, shard1

    monkeypatch.setattr(metrics, "is_distributed_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2, raising=False)
    monkeypatch.setattr(
        torch.distributed, "all_gather_object", fake_all_gather, raising=False
    )
    rank0.gather()
    assert rank0.ids == batches[0][0] + batches[1][0]
    scores = torch.cat([batches[0][1], batches[1][1]])
    targets = torch.cat([batches[0][2], batches[1][2]])
    masks = torch.cat([batches[0][3], batches[1][3]])
    assert rank0.summarize("lwlrap") == pytest.approx(lwlrap(targets, scores))
    assert rank0.summarize("masked_lwlrap") == pytest.approx(
        masked_lwlrap(targets, scores, masks)
    )


def test_gather_without_process_group_is_a_no_op():
    stats = LwlrapStats()
    ids, scores, targets, _ = make_batches(n_batches=1)[0]
    stats.append(ids, scores, targets)
    before = stats.summarize("lwlrap")
    stats.gather()
    assert stats.ids == ids and stats.summarize("lwlrap") == before
    assert math.isfinite(before)
