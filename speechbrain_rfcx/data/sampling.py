"""What a training epoch draws: anchored crop entries and class-balanced weights.

A prepared manifest has one entry per recording. Training draws crops, and a
crop is placed around an *anchor*: a TP box, an FP box, or nothing (a random
crop). :func:`anchored_entries` expands the recordings into one entry per
anchor, so a sampler can weight anchors: one species as often as any other (the class-balanced
batches of the original research), TP-, FP-centred and random crops in chosen
proportions (the best competition solutions), using SpeechBrain's
``ReproducibleWeightedRandomSampler``.
"""

import numpy as np
from speechbrain.dataio.sampler import ReproducibleWeightedRandomSampler

ANCHOR_SOURCES = ("tp", "fp", "random")


def anchored_entries(manifest, sources=("tp",), folds=None):
    """One entry per anchor box of the chosen sources.

    Arguments
    ---------
    manifest : dict
        ``recording_id -> entry`` as written by ``prepare_rfcx``.
    sources : sequence of str
        ``"tp"``: one entry per TP box; ``"fp"``: one per FP box;
        ``"random"``: one per recording, with no anchor (a random crop).
    folds : collection of int, optional
        Keep only recordings of these folds.

    Returns
    -------
    dict
        ``"<recording_id>/<source><k>" -> entry`` with the recording's keys
        plus ``recording_id``, ``anchor`` (a box dict or None) and
        ``anchor_source``.

    Example
    -------
    >>> box = {"species_id": 2, "songtype_id": 1, "t_min": 0.0, "f_min": 1.0,
    ...        "t_max": 1.0, "f_max": 2.0}
    >>> manifest = {"r1": {"tp_boxes": [box], "fp_boxes": [box], "fold": 0},
    ...             "r2": {"tp_boxes": [], "fp_boxes": [], "fold": 1}}
    >>> sorted(anchored_entries(manifest, ("tp", "fp", "random")))
    ['r1/fp0', 'r1/random0', 'r1/tp0', 'r2/random0']
    >>> list(anchored_entries(manifest, ("tp",), folds=[1]))
    []
    """
    unknown = set(sources) - set(ANCHOR_SOURCES)
    if unknown:
        raise ValueError(
            f"unknown anchor source(s) {sorted(unknown)}; use {ANCHOR_SOURCES}"
        )
    entries = {}
    for rid, entry in manifest.items():
        if folds is not None and entry["fold"] not in folds:
            continue
        for source in sources:
            anchors = [None] if source == "random" else entry[f"{source}_boxes"]
            for k, anchor in enumerate(anchors):
                entries[f"{rid}/{source}{k}"] = dict(
                    entry, recording_id=rid, anchor=anchor, anchor_source=source
                )
    return entries


def sampling_weights(entries, source_weights=None, balanced=True):
    """Draw weights for anchored entries.

    Each anchor source gets a total weight (``source_weights``, default 1 for
    every source present). Within a source, ``balanced=True`` gives every
    anchor species the same share (the class-balanced batches of the
    original research); otherwise every entry weighs the same. Random-crop
    entries have no species and share their source's weight equally.

    Arguments
    ---------
    entries : dict
        As returned by :func:`anchored_entries`.
    source_weights : dict, optional
        ``{"tp": w, "fp": w, "random": w}``; missing sources weigh 0.
    balanced : bool

    Returns
    -------
    numpy.ndarray
        One weight per entry, in the order of ``entries``; sums to 1.

    Example
    -------
    >>> box = lambda s: {"species_id": s}
    >>> entries = {"a": {"anchor": box(0), "anchor_source": "tp"},
    ...            "b": {"anchor": box(0), "anchor_source": "tp"},
    ...            "c": {"anchor": box(1), "anchor_source": "tp"},
    ...            "d": {"anchor": None, "anchor_source": "random"}}
    >>> sampling_weights(entries).tolist()
    [0.125, 0.125, 0.25, 0.5]
    >>> sampling_weights(entries, {"tp": 1.0}, balanced=False).round(3).tolist()
    [0.333, 0.333, 0.333, 0.0]
    """
    groups = [
        (
            e["anchor_source"],
            e["anchor"]["species_id"] if balanced and e["anchor"] else None,
        )
        for e in entries.values()
    ]
    present = {source for source, _ in groups}
    if source_weights is None:
        source_weights = {source: 1.0 for source in present}
    unknown = set(source_weights) - set(ANCHOR_SOURCES)
    if unknown:
        raise ValueError(
            f"unknown anchor source(s) {sorted(unknown)}; use {ANCHOR_SOURCES}"
        )
    group_size, groups_per_source = {}, {}
    for group in groups:
        group_size[group] = group_size.get(group, 0) + 1
    for source, _ in group_size:
        groups_per_source[source] = groups_per_source.get(source, 0) + 1
    weights = np.array(
        [
            source_weights.get(source, 0.0)
            / groups_per_source[source]
            / group_size[(source, species)]
            for source, species in groups
        ]
    )
    if not weights.sum() > 0:
        raise ValueError(
            f"no entry can be drawn: sources present {sorted(present)}, "
            f"source_weights {source_weights}"
        )
    return weights / weights.sum()


def make_train_sampler(entries, n_samples, source_weights=None, balanced=True, seed=1):
    """A reproducible weighted sampler drawing ``n_samples`` anchors an epoch.

    See :func:`sampling_weights` for the weights. Call ``set_epoch`` every
    epoch for new draws (``SEDBrain`` does).

    Example
    -------
    >>> entries = {f"e{i}": {"anchor": {"species_id": i % 2},
    ...                      "anchor_source": "tp"} for i in range(5)}
    >>> sampler = make_train_sampler(entries, n_samples=8, seed=3)
    >>> len(list(sampler))
    8
    """
    weights = sampling_weights(entries, source_weights, balanced)
    return ReproducibleWeightedRandomSampler(
        weights.tolist(), num_samples=n_samples, replacement=True, seed=seed
    )
