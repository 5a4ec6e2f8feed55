"""Label-weighted label-ranking average precision (lwlrap), the RFCX metric.

For a recording ``s`` and one of its true classes ``c``::

    rank(s, c) = number of classes j with scores[s, j] >= scores[s, c]
    hits(s, c) = number of TRUE classes j with scores[s, j] >= scores[s, c]
    Prec(s, c) = hits(s, c) / rank(s, c)

lwlrap is the mean of ``Prec`` over every (recording, true class) pair, so each
label weighs the same. Grouping the pairs by class gives the per-class view:
``per_class[c]`` is the mean ``Prec(s, c)`` over the recordings where ``c`` is
true, ``weights[c]`` the fraction of all true labels that belong to ``c``, and
``lwlrap == nansum(weights * per_class)``. Recordings without a true class
contribute nothing. Only the order of scores inside a row matters, so logits and
probabilities give the same value.

Ties are counted pessimistically: both counts use ``>=``, so every class of a
group of tied scores takes the worst rank of the group. A row of constant scores
with ``k`` true classes out of ``C`` gives ``Prec = k / C`` to each true class.
This is exactly what ``sklearn.metrics.label_ranking_average_precision_score``
does (``rankdata(..., "max")``), so on any matrix with at least one true label::

    lwlrap(y, s) == label_ranking_average_precision_score(
        y, s, sample_weight=y.sum(1))

ties included (rows without positives get weight 0 there). Implementations
that rank with ``argsort`` break ties by column order instead, so tied scores
can score higher there; here a tie is never rewarded.

``masked_lwlrap`` handles incompletely labelled data (RFCX train: verified true
positives and verified false positives, everything else unknown): in each row
only the known cells take part, as if the unknown classes had been deleted from
that row before ranking.

Authors
 * speechbrain-rfcx contributors 2026
"""

import numpy as np
import torch
from speechbrain.utils.distributed import is_distributed_initialized
from speechbrain.utils.metric_stats import MetricStats

# Largest number of (row, class, class) comparisons done at once (memory bound).
_MAX_PAIRS_PER_CHUNK = 1 << 22


def _to_numpy(array, name):
    """Converts a torch tensor or array-like to a 2-D numpy array."""
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D (recordings, classes) array, got shape {array.shape}"
        )
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValueError(f"{name} must be numeric, got dtype {array.dtype}")
    return array


def _check_binary(array, name, where=None):
    """Raises ValueError unless ``array`` (restricted to ``where``) is 0/1."""
    values = array if where is None else array[where]
    if not np.isin(values, (0, 1)).all():
        bad = values[~np.isin(values, (0, 1))][0]
        raise ValueError(f"{name} must contain only 0 and 1, found {bad!r}")


def _validated(truth, scores, mask=None):
    """Checks the inputs; returns (positives, scores, known) as numpy arrays."""
    truth = _to_numpy(truth, "truth")
    scores = _to_numpy(scores, "scores")
    if truth.shape != scores.shape:
        raise ValueError(
            f"truth and scores must have the same shape, got truth {truth.shape} "
            f"and scores {scores.shape}"
        )
    if mask is None:
        known = np.ones(truth.shape, dtype=bool)
    else:
        mask = _to_numpy(mask, "mask")
        if mask.shape != truth.shape:
            raise ValueError(
                f"mask must have the shape of truth {truth.shape}, got {mask.shape}"
            )
        _check_binary(mask, "mask")
        known = mask.astype(bool)
    _check_binary(truth, "truth", where=known)
    scores = scores.astype(np.float64)
    if np.isnan(scores[known]).any():
        raise ValueError("scores contain NaN")
    positives = known & (np.where(known, truth, 0) == 1)
    if not positives.any():
        raise ValueError("truth has no positive (known) label: lwlrap is undefined")
    return positives, scores, known


def _label_precisions(positives, scores, known):
    """Prec(s, c) for every known true cell, 0 elsewhere; shape (N, C)."""
    n_rows, n_classes = scores.shape
    precisions = np.zeros(scores.shape)
    rows_per_chunk = max(1, _MAX_PAIRS_PER_CHUNK // (n_classes * n_classes))
    for start in range(0, n_rows, rows_per_chunk):
        chunk = slice(start, start + rows_per_chunk)
        row_scores = scores[chunk]
        # at_or_above[n, c, j]: class j is known and ranked at or above class c
        at_or_above = row_scores[:, None, :] >= row_scores[:, :, None]
        at_or_above &= known[chunk][:, None, :]
        rank = at_or_above.sum(-1)
        hits = (at_or_above & positives[chunk][:, None, :]).sum(-1)
        precisions[chunk] = np.where(positives[chunk], hits / np.maximum(rank, 1), 0.0)
    return precisions


def _per_class(positives, precisions):
    """Per-class mean precision (NaN for classes without a label) and weights."""
    labels_per_class = positives.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = precisions.sum(0) / labels_per_class
    weights = labels_per_class / labels_per_class.sum()
    return per_class, weights


def lwlrap(truth, scores):
    """Label-weighted label-ranking average precision.

    Arguments
    ---------
    truth : array-like or torch.Tensor
        (N, C) binary labels (1 = the class is present in the recording).
    scores : array-like or torch.Tensor
        (N, C) scores, higher = more likely (logits or probabilities). Ties are
        ranked pessimistically (see the module docstring).

    Returns
    -------
    float
        The lwlrap, in (0, 1].

    Raises
    ------
    ValueError
        On shape mismatch, non-binary truth, NaN scores or no positive label.

    Example
    -------
    >>> truth = [[1, 0, 0], [0, 1, 1]]
    >>> scores = [[0.9, 0.5, 0.1], [0.8, 0.7, 0.6]]
    >>> lwlrap(truth, scores)  # (1 + 1/2 + 2/3) / 3
    0.722...
    """
    positives, scores, known = _validated(truth, scores)
    return float(_label_precisions(positives, scores, known).sum() / positives.sum())


def lwlrap_per_class(truth, scores):
    """Per-class lwlrap and class weights.

    Arguments
    ---------
    truth : array-like or torch.Tensor
        (N, C) binary labels.
    scores : array-like or torch.Tensor
        (N, C) scores, higher = more likely.

    Returns
    -------
    per_class : numpy.ndarray
        (C,) mean label precision of each class over the recordings where it is
        true; NaN for a class with no true label.
    weights : numpy.ndarray
        (C,) fraction of all true labels belonging to each class (sums to 1;
        0 for a class with no true label). ``np.nansum(weights * per_class)``
        is the lwlrap.

    Example
    -------
    >>> per_class, weights = lwlrap_per_class(
    ...     [[1, 0, 0], [0, 1, 1]], [[0.9, 0.5, 0.1], [0.8, 0.7, 0.6]]
    ... )
    >>> per_class.round(3).tolist(), weights.round(3).tolist()
    ([1.0, 0.5, 0.667], [0.333, 0.333, 0.333])
    """
    positives, scores, known = _validated(truth, scores)
    return _per_class(positives, _label_precisions(positives, scores, known))


def masked_lwlrap(truth, scores, mask):
    """lwlrap over the known cells only, for incompletely labelled data.

    In each row the classes whose mask is 0 are removed before ranking, so they
    neither count as true labels nor push a true class down. With an all-ones
    mask this is :func:`lwlrap`.

    Arguments
    ---------
    truth : array-like or torch.Tensor
        (N, C) labels: 1 = verified present, 0 = verified absent. Values in
        unknown cells are ignored (they may even be NaN).
    scores : array-like or torch.Tensor
        (N, C) scores, higher = more likely. Values in unknown cells are ignored.
    mask : array-like or torch.Tensor
        (N, C) binary; 1 = the cell is known (labelled), 0 = unknown.

    Returns
    -------
    float
        The lwlrap of the known cells.

    Example
    -------
    >>> truth = [[1, 0, 0]]
    >>> scores = [[0.5, 0.9, 0.1]]
    >>> masked_lwlrap(truth, scores, [[1, 1, 1]])  # class 1 outranks class 0
    0.5
    >>> masked_lwlrap(truth, scores, [[1, 0, 1]])  # class 1 is unknown
    1.0
    """
    positives, scores, known = _validated(truth, scores, mask)
    return float(_label_precisions(positives, scores, known).sum() / positives.sum())


def _column_cuts(truth, scores):
    """Per class: distinct scores (descending) and the TP / FP counts of
    calling every recording at or above each one present."""
    truth = _to_numpy(truth, "truth")
    scores = _to_numpy(scores, "scores").astype(np.float64)
    if truth.shape != scores.shape:
        raise ValueError(
            f"truth and scores must have the same shape, got truth {truth.shape} "
            f"and scores {scores.shape}"
        )
    _check_binary(truth, "truth")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    cuts = []
    for c in range(truth.shape[1]):
        order = np.argsort(-scores[:, c], kind="stable")
        values, hits = scores[order, c], truth[order, c].astype(bool)
        last_of_tie = np.r_[values[1:] != values[:-1], True]
        tp = np.cumsum(hits)[last_of_tie]
        fp = np.cumsum(~hits)[last_of_tie]
        cuts.append((values[last_of_tie], tp, fp, int(hits.sum())))
    return cuts


def average_precision(truth, scores):
    """Per-class average precision (the area under the precision-recall
    curve as a step function), NaN for classes without a positive.

    Tied scores are one cut (all called together), so a tie is never
    rewarded, as in :func:`lwlrap`; without ties this is
    ``sklearn.metrics.average_precision_score`` per column.

    Example
    -------
    >>> truth = [[1, 0], [0, 1], [1, 0], [0, 0]]
    >>> scores = [[0.9, 0.1], [0.8, 0.7], [0.3, 0.2], [0.1, 0.6]]
    >>> average_precision(truth, scores).round(3).tolist()  # (1 + 2/3) / 2, 1
    [0.833, 1.0]
    """
    result = []
    for _, tp, fp, n_pos in _column_cuts(truth, scores):
        if n_pos == 0:
            result.append(np.nan)
            continue
        precision = tp / (tp + fp)
        recall_gain = np.diff(np.r_[0, tp]) / n_pos
        result.append(float((precision * recall_gain).sum()))
    return np.asarray(result)


def precision_recall_curves(truth, scores):
    """Per class: ``(thresholds, precision, recall)`` arrays, thresholds
    descending (calling a recording when its score is at or above one).

    Example
    -------
    >>> [(t.tolist(), p.tolist(), r.tolist())
    ...  for t, p, r in precision_recall_curves([[1], [0], [1]], [[0.9], [0.5], [0.2]])]
    [([0.9, 0.5, 0.2], [1.0, 0.5, 0.6666666666666666], [0.5, 0.5, 1.0])]
    """
    return [
        (values, tp / (tp + fp), tp / n_pos if n_pos else np.full(len(tp), np.nan))
        for values, tp, fp, n_pos in _column_cuts(truth, scores)
    ]


def precision_recall_at(truth, scores, thresholds):
    """Per-class precision and recall when calling scores ``>= thresholds``.

    Arguments
    ---------
    truth, scores : array-like
        (N, C) labels and scores.
    thresholds : float or array-like
        One threshold, or one per class.

    Returns
    -------
    precision, recall : numpy.ndarray
        (C,) each; NaN where nothing is called / nothing is true.

    Example
    -------
    >>> p, r = precision_recall_at([[1, 0], [0, 1], [1, 1]],
    ...                            [[0.9, 0.2], [0.6, 0.8], [0.4, 0.1]], 0.5)
    >>> p.tolist(), r.tolist()
    ([0.5, 1.0], [0.5, 0.5])
    """
    truth = _to_numpy(truth, "truth").astype(bool)
    scores = _to_numpy(scores, "scores")
    called = scores >= np.broadcast_to(np.asarray(thresholds, float), scores.shape[1:])
    tp = (called & truth).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return tp / called.sum(0), tp / truth.sum(0)


def fit_thresholds(truth, scores, target_precision):
    """Per class, the lowest threshold whose precision reaches the target.

    Among the cuts whose precision (scores at or above the cut) is at least
    ``target_precision``, the one with the most recall. A class that never
    reaches the target gets ``1.0`` (nothing called), one without a
    positive NaN (no evidence: leave it to the default threshold).

    Example
    -------
    >>> truth = [[1], [1], [0], [1], [0]]
    >>> scores = [[0.9], [0.8], [0.7], [0.6], [0.1]]
    >>> fit_thresholds(truth, scores, 0.75).tolist()  # 3 of 4 at or above 0.6
    [0.6]
    >>> fit_thresholds(truth, scores, 1.0).tolist()
    [0.8]
    """
    if not 0.0 < target_precision <= 1.0:
        raise ValueError(f"target precision must lie in (0, 1], got {target_precision}")
    result = []
    for values, tp, fp, n_pos in _column_cuts(truth, scores):
        reached = np.flatnonzero(tp / (tp + fp) >= target_precision)
        if n_pos == 0:
            result.append(np.nan)
        elif len(reached) == 0:
            result.append(1.0)
        else:
            result.append(float(min(1.0, values[reached[-1]])))
    return np.asarray(result)


def chance_lwlrap(truth, n_draws=32, seed=0):
    """Expected lwlrap of random scores for these labels (Monte-Carlo estimate).

    A baseline: a model must beat this value to have learned anything. It
    depends on the labels (more true classes per row = higher chance level).

    Arguments
    ---------
    truth : array-like or torch.Tensor
        (N, C) binary labels.
    n_draws : int
        Number of random score matrices (uniform, so tie-free) to average over.
    seed : int
        Seed of the random generator (the result is deterministic).

    Returns
    -------
    float
        The mean lwlrap over the draws.

    Example
    -------
    >>> chance_lwlrap([[1, 1, 1, 1]])  # every class true: any ranking is perfect
    1.0
    >>> 0.3 < chance_lwlrap([[1, 0, 0, 0]] * 50, n_draws=8) < 0.7  # H_4/4 = 0.52
    True
    """
    if not (isinstance(n_draws, (int, np.integer)) and n_draws >= 1):
        raise ValueError(f"n_draws must be a positive integer, got {n_draws!r}")
    truth = _to_numpy(truth, "truth")
    _check_binary(truth, "truth")
    truth = truth[truth.sum(1) > 0]  # rows without positives do not count
    if truth.size == 0:
        raise ValueError("truth has no positive label: lwlrap is undefined")
    rng = np.random.default_rng(seed)
    draws = [lwlrap(truth, rng.random(truth.shape)) for _ in range(n_draws)]
    return float(np.mean(draws))


class LwlrapStats(MetricStats):
    """Accumulates scores and labels over batches; summarizes them as lwlrap.

    Follows SpeechBrain's ``MetricStats`` interface (``append``, ``summarize``,
    ``write_stats``, ``clear``). The stored batches are plain CPU tensors
    (``self.scores``, ``self.targets``, ``self.masks``, lists of (B, C)) plus
    ``self.ids``, so they can be gathered across processes; under DDP call
    :meth:`gather` on every process before ``summarize``.

    Arguments
    ---------
    class_names : list of str, optional
        Names used in the per-species table; default ``s0, s1, ...`` (the
        submission column names).

    Example
    -------
    >>> import sys
    >>> stats = LwlrapStats(class_names=["frog", "bird"])
    >>> stats.append(
    ...     ids=["rec1", "rec2"],
    ...     scores=torch.tensor([[2.0, -1.0], [0.5, 1.5]]),
    ...     targets=torch.tensor([[1, 0], [1, 1]]),
    ... )
    >>> stats.append(["rec3"], torch.tensor([[0.1, 0.9]]), torch.tensor([[1, 0]]))
    >>> stats.summarize("lwlrap")  # (1 + 1 + 1 + 1/2) / 4
    0.875
    >>> stats.write_stats(sys.stdout)
    lwlrap: 0.8750 (3 recordings, 4 true labels)
    species  labels  weight  lwlrap
    frog          3  0.7500  0.8333
    bird          1  0.2500  1.0000
    """

    def __init__(self, class_names=None):
        self.class_names = None if class_names is None else list(class_names)
        self.clear()

    def clear(self):
        """Removes every stored batch and the last summary."""
        self.ids = []
        self.scores = []
        self.targets = []
        self.masks = []
        self.has_mask = False
        self.summary = {}
        self._seen_ids = set()

    def append(self, ids, scores, targets, mask=None):
        """Stores one batch.

        Arguments
        ---------
        ids : list of str
            One id per recording; an id already stored raises ValueError (a
            recording must be scored once; average crops/TTA before appending).
        scores : torch.Tensor
            (B, C) logits or probabilities (only the order inside a row matters).
        targets : torch.Tensor
            (B, C) binary labels.
        mask : torch.Tensor, optional
            (B, C) binary; 1 = the label cell is known. Enables "masked_lwlrap"
            in the summary; batches appended without a mask count as fully known.
        """
        ids = list(ids)
        scores = torch.as_tensor(scores).detach().to("cpu", torch.float64)
        targets = torch.as_tensor(targets).detach().to("cpu", torch.float64)
        if mask is None:
            mask = torch.ones_like(targets)
        else:
            mask = torch.as_tensor(mask).detach().to("cpu", torch.float64)
            self.has_mask = True
        for name, tensor in (("scores", scores), ("targets", targets), ("mask", mask)):
            if tensor.ndim != 2 or tensor.shape[0] != len(ids):
                raise ValueError(
                    f"{name} must have shape (len(ids)={len(ids)}, classes), got "
                    f"{tuple(tensor.shape)}"
                )
        if self.scores and scores.shape[1] != self.scores[0].shape[1]:
            raise ValueError(
                f"scores have {scores.shape[1]} classes, earlier batches had "
                f"{self.scores[0].shape[1]}"
            )
        for utt_id in ids:
            if utt_id in self._seen_ids:
                raise ValueError(f"id {utt_id!r} was already appended")
            self._seen_ids.add(utt_id)
        self.ids.extend(ids)
        self.scores.append(scores)
        self.targets.append(targets)
        self.masks.append(mask)
        self.summary = {}

    def gather(self):
        """Collects the batches of all DDP processes into every process.

        Call it on every process (it is a collective operation) before
        ``summarize``. Ids repeated across processes (``DistributedSampler``
        pads the last shard with repeated recordings) are kept once. Without an
        initialized process group this does nothing.
        """
        if not is_distributed_initialized():
            return
        local = (
            self.ids,
            *(
                torch.cat(t) if t else None
                for t in (self.scores, self.targets, self.masks)
            ),
            self.has_mask,
        )
        shards = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(shards, local)
        self.clear()
        for ids, scores, targets, masks, has_mask in shards:
            if not ids:  # a process may have had nothing to score
                continue
            keep = [i for i, utt_id in enumerate(ids) if utt_id not in self._seen_ids]
            self.append(
                [ids[i] for i in keep],
                scores[keep],
                targets[keep],
                masks[keep] if has_mask else None,
            )

    def summarize(self, field=None):
        """Computes lwlrap (and the masked variant) over everything appended.

        Arguments
        ---------
        field : str, optional
            Return only this entry of the summary.

        Returns
        -------
        dict or value
            ``lwlrap`` (float), ``per_class`` and ``weights`` ((C,) arrays, see
            :func:`lwlrap_per_class`), ``n_recordings``, ``n_labels`` and, if
            any batch had a mask, ``masked_lwlrap``.
        """
        if not self.ids:
            raise ValueError("LwlrapStats is empty: append batches first")
        scores = torch.cat(self.scores).numpy()
        targets = torch.cat(self.targets).numpy()
        positives, scores_np, known = _validated(targets, scores)
        precisions = _label_precisions(positives, scores_np, known)
        per_class, weights = _per_class(positives, precisions)
        self.summary = {
            "lwlrap": float(precisions.sum() / positives.sum()),
            "per_class": per_class,
            "weights": weights,
            "n_recordings": len(self.ids),
            "n_labels": int(positives.sum()),
        }
        if self.has_mask:
            masks = torch.cat(self.masks).numpy()
            self.summary["masked_lwlrap"] = masked_lwlrap(targets, scores, masks)
        return self.summary if field is None else self.summary[field]

    def write_stats(self, filestream, verbose=False):
        """Writes the overall lwlrap and a per-species table.

        Arguments
        ---------
        filestream : file-like object
            Where to write.
        verbose : bool
            Also print the text to stdout.
        """
        if not self.summary:
            self.summarize()
        summary = self.summary
        per_class, weights = summary["per_class"], summary["weights"]
        names = self.class_names or [f"s{c}" for c in range(len(per_class))]
        if len(names) != len(per_class):
            raise ValueError(
                f"class_names has {len(names)} names for {len(per_class)} classes"
            )
        lines = [
            f"lwlrap: {summary['lwlrap']:.4f} ({summary['n_recordings']} "
            f"recordings, {summary['n_labels']} true labels)"
        ]
        if "masked_lwlrap" in summary:
            lines.append(f"masked lwlrap: {summary['masked_lwlrap']:.4f}")
        width = max(len("species"), *(len(name) for name in names))
        lines.append(f"{'species':<{width}}  labels  weight  lwlrap")
        n_labels = np.rint(weights * summary["n_labels"]).astype(int)
        for name, count, weight, value in zip(names, n_labels, weights, per_class):
            shown = "   n/a" if np.isnan(value) else f"{value:.4f}"
            lines.append(f"{name:<{width}}  {count:>6d}  {weight:.4f}  {shown}")
        message = "\n".join(lines) + "\n"
        filestream.write(message)
        if verbose:
            print(message, end="")
