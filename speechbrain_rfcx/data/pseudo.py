"""Pseudo-labels: a model's framewise probabilities as targets of unlabelled cells.

A pseudo-labelling round (``recipes/RFCX/pseudo_label.py``) scores every
training recording with the fold model that did not train on it (out of
fold) and every test recording with the fold ensemble, and keeps each
recording's framewise probabilities in ``<folder>/<recording_id>.npz``
(:func:`write_pseudo_labels`). The next round's crops read them
(:func:`add_pseudo_labels`): in a crop, a cell (a species in the clip, or a
species in one frame) that no human box labels takes the pseudo-label if the
model is confident, positive above :attr:`PseudoLabelRule.positive`,
negative below :attr:`PseudoLabelRule.negative`, and stays unlabelled in
between. Human labels always win: a TP box's cells stay 1 and an FP box's
cells stay 0, whatever the model says.
"""

import io
import os
from typing import NamedTuple

import numpy as np
import torch

from speechbrain_rfcx._io import write_atomically

PSEUDO_SUFFIX = ".npz"


class PseudoLabelRule(NamedTuple):
    """How probabilities become targets.

    Attributes
    ----------
    positive : float
        Probabilities at or above it label a cell positive.
    negative : float
        Probabilities at or below it label a cell negative.
    soft : bool
        True: a labelled cell's target is the probability itself (soft
        labels); False: 1 or 0.

    Example
    -------
    >>> PseudoLabelRule(0.6, 0.1)
    PseudoLabelRule(positive=0.6, negative=0.1, soft=False)
    """

    positive: float
    negative: float
    soft: bool = False

    def check(self):
        """Raises a ValueError unless ``0 <= negative < positive <= 1``."""
        if not 0.0 <= self.negative < self.positive <= 1.0:
            raise ValueError(
                "pseudo-label thresholds must satisfy 0 <= negative < positive "
                f"<= 1, got negative={self.negative!r}, positive={self.positive!r}"
            )
        return self

    def apply(self, probs):
        """``(target, known)`` tensors of probabilities under the rule.

        Example
        -------
        >>> rule = PseudoLabelRule(positive=0.6, negative=0.1)
        >>> target, known = rule.apply(torch.tensor([0.9, 0.3, 0.05]))
        >>> target.tolist(), known.tolist()
        ([1.0, 0.0, 0.0], [1.0, 0.0, 1.0])
        """
        positive = probs >= self.positive
        known = (positive | (probs <= self.negative)).to(probs.dtype)
        target = probs.clone() if self.soft else positive.to(probs.dtype)
        return target * known, known


def pseudo_label_path(folder, recording_id):
    """The pseudo-label file of a recording in a round's folder."""
    return os.path.join(folder, f"{recording_id}{PSEUDO_SUFFIX}")


def write_pseudo_labels(path, frame_probs, frame_hop):
    """Saves one recording's framewise probabilities (T, C), whole or not at all.

    Frame ``i`` covers ``[i * frame_hop, (i + 1) * frame_hop)`` seconds (the
    grid of :func:`speechbrain_rfcx.inference.score_audio`).

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "r1.npz")
    >>> write_pseudo_labels(path, np.full((4, 2), 0.5), frame_hop=0.5)
    >>> probs, hop = read_pseudo_labels(path)
    >>> probs.shape, hop
    ((4, 2), 0.5)
    """
    frame_probs = np.asarray(frame_probs, dtype=np.float32)
    if frame_probs.ndim != 2:
        raise ValueError(
            f"frame_probs must be (frames, classes), got {frame_probs.shape}"
        )
    if not frame_hop > 0:
        raise ValueError(f"frame_hop must be positive, got {frame_hop!r}")
    buffer = io.BytesIO()
    np.savez(buffer, probs=frame_probs, frame_hop=np.float64(frame_hop))
    write_atomically(path, buffer.getvalue())


def read_pseudo_labels(path):
    """``(frame_probs (T, C) float32, frame_hop seconds)`` of a recording."""
    with np.load(path) as data:
        return data["probs"], float(data["frame_hop"])


def pseudo_crop_probs(frame_probs, frame_hop, start, crop_seconds, n_frames):
    """Probabilities of a crop's frames and of the crop, from a recording's frames.

    Each crop frame takes the max over the recording frames that overlap
    it (the nearest one when none does, past the recording's end the last);
    the crop takes the max over its frames.

    Returns
    -------
    tuple of torch.Tensor
        ``(clip (C,), frames (n_frames, C))``.

    Example
    -------
    >>> probs = np.array([[0.1], [0.9], [0.2], [0.0]])  # 1 s frames
    >>> clip, frames = pseudo_crop_probs(probs, 1.0, start=1.0, crop_seconds=2.0,
    ...                                  n_frames=2)
    >>> clip.tolist(), frames.flatten().tolist()
    ([0.8999999761581421], [0.8999999761581421, 0.20000000298023224])
    """
    probs = torch.as_tensor(np.asarray(frame_probs, dtype=np.float32))
    edges = start + crop_seconds * np.arange(n_frames + 1) / n_frames
    first = np.floor(edges[:-1] / frame_hop + 1e-9).astype(int)
    last = np.ceil(edges[1:] / frame_hop - 1e-9).astype(int) - 1
    first = np.clip(first, 0, len(probs) - 1)
    last = np.clip(np.maximum(last, first), 0, len(probs) - 1)
    frames = torch.stack([probs[a : b + 1].amax(0) for a, b in zip(first, last)])
    return frames.amax(0), frames


def add_pseudo_labels(targets, frame_probs, frame_hop, start, crop_seconds, rule):
    """A crop's targets with pseudo-labels in the cells no human box labels.

    Arguments
    ---------
    targets : dict of torch.Tensor
        The human targets of the crop
        (:func:`speechbrain_rfcx.data.crops.crop_targets`).
    frame_probs : numpy.ndarray
        (T_rec, C) framewise probabilities of the whole recording.
    frame_hop : float
        Seconds per recording frame.
    start, crop_seconds : float
        The crop.
    rule : PseudoLabelRule

    Returns
    -------
    dict of torch.Tensor
        The same keys; ``label_mask`` / ``frame_label_mask`` now also mark the
        pseudo-labelled cells, ``frame_mask`` is the max of ``frame_target``.

    Example
    -------
    >>> human = {"clip_target": torch.tensor([1.0, 0.0, 0.0]),
    ...          "label_mask": torch.tensor([1.0, 1.0, 0.0]),
    ...          "frame_target": torch.tensor([[1.0, 0.0, 0.0]]),
    ...          "frame_label_mask": torch.tensor([[1.0, 1.0, 0.0]]),
    ...          "frame_mask": torch.tensor([1.0])}
    >>> probs = np.array([[0.0, 0.9, 0.8]])  # the model disagrees on s0, s1
    >>> out = add_pseudo_labels(human, probs, 1.0, 0.0, 1.0, PseudoLabelRule(0.5, 0.1))
    >>> out["clip_target"].tolist(), out["label_mask"].tolist()
    ([1.0, 0.0, 1.0], [1.0, 1.0, 1.0])
    """
    n_frames = targets["frame_target"].shape[0]
    clip, frames = pseudo_crop_probs(
        frame_probs, frame_hop, start, crop_seconds, n_frames
    )
    if clip.shape != targets["clip_target"].shape:
        raise ValueError(
            f"pseudo-labels have {clip.shape[0]} classes, the targets "
            f"{targets['clip_target'].shape[0]}"
        )
    out = dict(targets)
    for target_key, known_key, probs in (
        ("clip_target", "label_mask", clip),
        ("frame_target", "frame_label_mask", frames),
    ):
        pseudo, pseudo_known = rule.apply(probs)
        human_known = targets[known_key] > 0
        out[target_key] = torch.where(human_known, targets[target_key], pseudo)
        out[known_key] = torch.where(human_known, targets[known_key], pseudo_known)
    out["frame_mask"] = out["frame_target"].amax(1)
    return out
