"""Kaggle submissions and the class-prior post-processing of the best RFCX solutions.

:func:`write_submission` writes ``recording_id,s0,...`` rows (in the order
of ``sample_submission.csv`` when given); :func:`rescale_to_priors` moves
each species' mean score toward its prior, read with :func:`read_priors`
(and estimated from out-of-fold predictions with :func:`priors_from_scores`,
written with :func:`write_priors`).
"""

import numpy as np

from speechbrain_rfcx._io import write_atomically
from speechbrain_rfcx.data.annotations import (
    read_csv_table,
    read_species_values,
    species_columns,
)


def _check_ids(ids, what):
    seen = set()
    for rid in ids:
        if rid in seen:
            raise ValueError(f"recording {rid!r} appears twice in {what}")
        seen.add(rid)


def write_submission(path, recording_ids, clip_scores, sample_submission=None):
    """Write a Kaggle submission: ``recording_id,s0,...,s{C-1}``.

    With ``sample_submission``, the file has exactly its rows, in its order,
    and its columns, in their order; a recording missing from either side, or
    a species column that does not match the scores, is an error naming it.

    Arguments
    ---------
    path : str
        Output CSV file.
    recording_ids : list of str
        ``N`` recording ids, the rows of ``clip_scores``.
    clip_scores : array_like
        ``(N, C)`` finite scores.
    sample_submission : str, optional
        The competition's ``sample_submission.csv``.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "submission.csv")
    >>> write_submission(path, ["b", "a"], [[0.25, 0.5], [1.0, 0.0]])
    >>> print(open(path).read())
    recording_id,s0,s1
    b,0.25,0.5
    a,1.0,0.0
    <BLANKLINE>
    """
    import pandas as pd

    scores = np.asarray(clip_scores, dtype=float)
    ids = [str(rid) for rid in recording_ids]
    if scores.ndim != 2 or scores.shape[0] != len(ids):
        raise ValueError(
            f"clip_scores must have shape ({len(ids)}, C) for {len(ids)} "
            f"recording_ids, got {scores.shape}"
        )
    if not np.isfinite(scores).all():
        row = int(np.flatnonzero(~np.isfinite(scores).all(axis=1))[0])
        raise ValueError(f"clip_scores of recording {ids[row]!r} are not finite")
    _check_ids(ids, "recording_ids")
    columns = species_columns(scores.shape[1])
    frame = pd.DataFrame(scores, columns=columns)
    frame.insert(0, "recording_id", ids)
    if sample_submission is not None:
        order, sample_columns = read_sample_submission(
            sample_submission, scores.shape[1]
        )
        check_submission_rows(ids, order, sample_submission)
        frame = frame.set_index("recording_id").loc[order, sample_columns[1:]]
        frame = frame.reset_index()[sample_columns]
    write_atomically(path, frame.to_csv(index=False, lineterminator="\n"))


def read_sample_submission(path, n_classes):
    """Row order and columns of a ``sample_submission.csv``, checked against
    ``n_classes`` species: a ``recording_id`` column, each id once, and
    exactly the species columns ``s0..s{C-1}`` (any order).

    Returns
    -------
    order : list of str
        The recording ids, in the file's order.
    columns : list of str
        ``recording_id`` and the species columns, in the file's order.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "sample.csv")
    >>> _ = open(path, "w").write("recording_id,s1,s0\\nb,0,0\\na,0,0\\n")
    >>> read_sample_submission(path, 2)
    (['b', 'a'], ['recording_id', 's1', 's0'])
    >>> read_sample_submission(path, 3)
    Traceback (most recent call last):
    ...
    ValueError: .../sample.csv: lacks column(s) s2 of the scores
    """
    sample = read_csv_table(path, dtype={"recording_id": str})
    if "recording_id" not in sample.columns:
        raise ValueError(f"{path}: no recording_id column")
    columns = species_columns(n_classes)
    sample_columns = [c for c in sample.columns if c != "recording_id"]
    unknown = [c for c in sample_columns if c not in columns]
    if unknown:
        raise ValueError(
            f"{path}: column(s) {', '.join(map(str, unknown))} have no scores "
            f"(clip_scores has {len(columns)} species)"
        )
    unused = [c for c in columns if c not in sample_columns]
    if unused:
        raise ValueError(f"{path}: lacks column(s) {', '.join(unused)} of the scores")
    if sample["recording_id"].isna().any():
        line = int(np.flatnonzero(sample["recording_id"].isna())[0]) + 2
        raise ValueError(f"{path} line {line}: empty recording_id")
    order = list(sample["recording_id"])
    _check_ids(order, str(path))
    return order, list(sample.columns)


def check_submission_rows(recording_ids, order, sample_submission):
    """Raise unless ``recording_ids`` are exactly the ids of the sample
    submission (``order``): a recording missing from either side is named.

    Example
    -------
    >>> check_submission_rows(["a", "b"], ["b", "a"], "sample.csv")
    >>> check_submission_rows(["a"], ["b", "a"], "sample.csv")
    Traceback (most recent call last):
    ...
    ValueError: no scores for 1 recording(s) of sample.csv, first 'b'
    """
    scored, wanted = set(recording_ids), set(order)
    missing = [rid for rid in order if rid not in scored]
    if missing:
        raise ValueError(
            f"no scores for {len(missing)} recording(s) of {sample_submission}, "
            f"first {missing[0]!r}"
        )
    extra = [rid for rid in recording_ids if rid not in wanted]
    if extra:
        raise ValueError(
            f"{len(extra)} scored recording(s) are not in {sample_submission}, "
            f"first {extra[0]!r}"
        )


def _sigmoid(x):
    """Logistic function, exact at +-inf and free of overflow."""
    decay = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + decay), decay / (1.0 + decay))


def rescale_to_priors(scores, priors, strength=1.0, n_iterations=80):
    """Move each species' mean score toward its prior (class-prior post-processing).

    Per species ``c``, with column mean ``m_c`` and prior ``p_c``, the target
    mean interpolates in log space::

        target_c = m_c ** (1 - strength) * p_c ** strength

    and every score of the column gets the same logit shift ``b_c``::

        s'_nc = sigmoid(logit(s_nc) + b_c),   mean_n s'_nc = target_c

    (``b_c`` found by bisection). The map is strictly increasing, so the
    order within a column is kept and only the ranking *across* species (what
    lwlrap scores within a recording) changes; scores stay in ``[0, 1]``
    (exact 0 and 1 stay put). ``strength=0`` is the identity; ``strength=1``
    hits the prior unless the column holds only 0s and 1s (then it is left as
    it is: no shift can move it).

    Arguments
    ---------
    scores : array_like
        ``(N, C)`` probabilities in ``[0, 1]``.
    priors : array_like
        ``(C,)`` expected fraction of recordings with each species, in ``(0, 1)``.
    strength : float
        Interpolation weight in ``[0, 1]``.
    n_iterations : int
        Bisection steps (80 resolve the shift to below 1e-20).

    Returns
    -------
    numpy.ndarray
        ``(N, C)`` rescaled scores.

    Example
    -------
    >>> scores = np.array([[0.1, 0.5], [0.3, 0.7]])
    >>> out = rescale_to_priors(scores, priors=[0.4, 0.6])
    >>> out.mean(axis=0).round(6).tolist()
    [0.4, 0.6]
    >>> bool((np.argsort(out, axis=0) == np.argsort(scores, axis=0)).all())
    True
    """
    scores = np.asarray(scores, dtype=float)
    priors = np.asarray(priors, dtype=float)
    if scores.ndim != 2:
        raise ValueError(f"scores must have shape (N, C), got {scores.shape}")
    if priors.shape != (scores.shape[1],):
        raise ValueError(
            f"priors must have shape ({scores.shape[1]},) to match scores, "
            f"got {priors.shape}"
        )
    if not (np.isfinite(scores).all() and (scores >= 0).all() and (scores <= 1).all()):
        raise ValueError("scores must be probabilities in [0, 1]")
    outside = np.flatnonzero(~((priors > 0) & (priors < 1)))
    if len(outside):
        c = int(outside[0])
        raise ValueError(f"prior of species {c} must lie in (0, 1), got {priors[c]}")
    if not 0 <= strength <= 1:
        raise ValueError(f"strength must lie in [0, 1], got {strength!r}")
    if strength == 0 or scores.shape[0] == 0:
        return scores.copy()
    means = scores.mean(axis=0)
    with np.errstate(divide="ignore"):
        logits = np.log(scores) - np.log1p(-scores)
        targets = np.exp((1 - strength) * np.log(means) + strength * np.log(priors))
    low = np.full(scores.shape[1], -100.0)
    high = np.full(scores.shape[1], 100.0)
    for _ in range(n_iterations):
        shift = (low + high) / 2
        too_high = _sigmoid(logits + shift).mean(axis=0) > targets
        high = np.where(too_high, shift, high)
        low = np.where(too_high, low, shift)
    shift = (low + high) / 2
    shift[means == 0] = 0.0  # an all-zero column has nothing to rescale
    return _sigmoid(logits + shift)


def read_priors(path, n_classes):
    """Class priors from a CSV with ``species_id,prior`` columns (every species).

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "p.csv")
    >>> _ = open(path, "w").write("species_id,prior\\n1,0.2\\n0,0.1\\n")
    >>> read_priors(path, 2).tolist()
    [0.1, 0.2]
    """
    priors = read_species_values(
        path, "prior", n_classes, lambda v: 0 < v < 1, "(0, 1)"
    )
    missing = [c for c in range(n_classes) if c not in priors]
    if missing:
        raise ValueError(
            f"{path}: no prior for species {', '.join(map(str, missing[:5]))}"
            f"{' ...' if len(missing) > 5 else ''} (every species needs one)"
        )
    return np.array([priors[c] for c in range(n_classes)])


def priors_from_scores(scores, floor=1e-3):
    """Class priors estimated from predictions: each species' mean probability.

    Out-of-fold predictions of the training recordings estimate how often each
    species is present in recordings like them (a model's mean probability,
    unlike the human labels, does not depend on which files someone labelled);
    :func:`rescale_to_priors` then moves the test columns toward those means.
    Priors are clipped to ``[floor, 1 - floor]`` (:func:`rescale_to_priors`
    needs them inside ``(0, 1)``).

    Arguments
    ---------
    scores : array_like
        ``(N, C)`` probabilities.
    floor : float
        Smallest (and one minus the largest) prior.

    Returns
    -------
    numpy.ndarray
        ``(C,)`` priors.

    Example
    -------
    >>> priors_from_scores([[0.2, 0.0], [0.4, 0.0]]).round(3).tolist()
    [0.3, 0.001]
    """
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2 or scores.shape[0] == 0:
        raise ValueError(
            f"scores must have shape (N, C) with N > 0, got {scores.shape}"
        )
    return np.clip(scores.mean(axis=0), floor, 1 - floor)


def write_priors(path, priors):
    """Write ``species_id,prior`` rows, the CSV :func:`read_priors` reads.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "priors.csv")
    >>> write_priors(path, [0.25, 0.5])
    >>> read_priors(path, 2).tolist()
    [0.25, 0.5]
    """
    rows = "".join(f"{c},{float(p)!r}\n" for c, p in enumerate(priors))
    write_atomically(path, "species_id,prior\n" + rows)
