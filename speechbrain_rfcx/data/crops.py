"""Training crops: place a window, read it, and build its targets from boxes.

A crop of ``crop_seconds`` is placed around an anchor box (TP or FP; see
``speechbrain_rfcx.data.sampling``) or at random.
Its targets, for ``n_frames`` equal frames and ``n_classes`` species:

- ``clip_target`` (C): 1 for every species with a TP box overlapping the crop;
- ``frame_target`` (T, C): 1 where a TP box of that species overlaps the frame;
- ``frame_mask`` (T): 1 where any species has a TP box (max of frame_target);
- ``label_mask`` (C): 1 where the cell is known: a TP box (positive) or an FP
  box (negative) of that species overlaps the crop; 0 = unlabelled;
- ``frame_label_mask`` (T, C): 1 where a TP or FP box of that species overlaps
  the frame.

A TP box wins over an FP box of the same species in the same crop.

These keys are the target contract, declared here once: a batch of crops
carries them with a leading batch dimension, plus ``lens`` (B,), the relative
valid lengths, in the same dict (``speechbrain_rfcx.augment`` transforms them
with the audio, ``speechbrain_rfcx.losses`` reads them, ``SEDBrain`` collects
them). :func:`check_targets` validates such a batch.
"""

import random

import numpy as np
import torch

from speechbrain_rfcx.data.annotations import Box
from speechbrain_rfcx.data.audio import read_segment
from speechbrain_rfcx.data.pseudo import add_pseudo_labels, read_pseudo_labels
from speechbrain_rfcx.frames import check_lens

CLIP_KEYS = ("clip_target", "label_mask")  # (C,) per crop
FRAME_KEYS = ("frame_target", "frame_mask", "frame_label_mask")  # (T, C) or (T,)
TARGET_KEYS = (
    "clip_target",
    "frame_target",
    "frame_mask",
    "label_mask",
    "frame_label_mask",
)
SOFT_KEYS = ("clip_target", "frame_target", "frame_mask")  # may be mixed (mixup)
KNOWN_MASK_KEYS = ("label_mask", "frame_label_mask")  # 1 = known (TP or FP)


def choose_crop_start(duration, crop_seconds, box=None, rng=random):
    """Start time of a crop that contains ``box`` (or lies anywhere).

    A box shorter than the crop lies wholly inside it, at a uniformly random
    offset; a longer box covers the whole crop. The crop stays inside the
    recording; a recording shorter than the crop gives 0.

    Example
    -------
    >>> box = Box(0, 1, t_min=20.0, f_min=1.0, t_max=22.0, f_max=2.0)
    >>> start = choose_crop_start(60.0, 10.0, box, random.Random(0))
    >>> 12.0 <= start <= 20.0
    True
    >>> choose_crop_start(5.0, 10.0)
    0.0
    """
    latest = duration - crop_seconds
    if latest <= 0:
        return 0.0
    if box is None:
        return rng.uniform(0.0, latest)
    if box.duration <= crop_seconds:
        low, high = box.t_max - crop_seconds, box.t_min
    else:
        low, high = box.t_min, box.t_max - crop_seconds
    low, high = max(low, 0.0), min(high, latest)
    if low > high:  # box at the very edge: the nearest valid start
        return min(max(low, 0.0), latest)
    return rng.uniform(low, high)


def _frames_hit(box, edges):
    """Boolean (T,) of frames whose span overlaps the box."""
    return (edges[1:] > box.t_min) & (edges[:-1] < box.t_max)


def crop_targets(
    tp_boxes, fp_boxes, start, crop_seconds, n_frames, n_classes, min_overlap=0.0
):
    """Targets of the crop ``[start, start + crop_seconds)`` (see module doc).

    Arguments
    ---------
    tp_boxes, fp_boxes : list of Box
    start, crop_seconds : float
    n_frames : int
        Frame-target resolution.
    n_classes : int
    min_overlap : float
        Seconds a box must overlap the crop to count (0 = any overlap).

    Returns
    -------
    dict of torch.Tensor

    Example
    -------
    >>> tp = [Box(1, 1, t_min=2.0, f_min=1.0, t_max=4.0, f_max=2.0)]
    >>> fp = [Box(2, 1, t_min=0.0, f_min=1.0, t_max=1.0, f_max=2.0)]
    >>> t = crop_targets(tp, fp, start=0.0, crop_seconds=8.0, n_frames=4,
    ...                  n_classes=3)
    >>> t["clip_target"].tolist(), t["label_mask"].tolist()
    ([0.0, 1.0, 0.0], [0.0, 1.0, 1.0])
    >>> t["frame_target"][:, 1].tolist(), t["frame_mask"].tolist()
    ([0.0, 1.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0])
    """
    end = start + crop_seconds
    edges = start + crop_seconds * np.arange(n_frames + 1) / n_frames
    clip = np.zeros(n_classes, dtype=np.float32)
    known = np.zeros(n_classes, dtype=np.float32)
    frames = np.zeros((n_frames, n_classes), dtype=np.float32)
    frames_known = np.zeros((n_frames, n_classes), dtype=np.float32)
    for is_tp, boxes in ((True, tp_boxes), (False, fp_boxes)):
        for box in boxes:
            overlap = min(box.t_max, end) - max(box.t_min, start)
            if overlap <= min_overlap or overlap <= 0:
                continue
            s = box.species_id
            hit = _frames_hit(box, edges)
            known[s] = 1.0
            if is_tp:
                clip[s] = 1.0
                frames[hit, s] = 1.0
                frames_known[hit, s] = 1.0
            else:
                frames_known[hit & (frames[:, s] == 0), s] = 1.0
    return {
        "clip_target": torch.from_numpy(clip),
        "frame_target": torch.from_numpy(frames),
        "frame_mask": torch.from_numpy(frames.max(axis=1)),
        "label_mask": torch.from_numpy(known),
        "frame_label_mask": torch.from_numpy(frames_known),
    }


def load_crop(
    wav,
    duration,
    tp_boxes,
    fp_boxes,
    anchor,
    crop_seconds,
    n_frames,
    n_classes,
    sample_rate,
    min_overlap=0.0,
    rng=random,
    pseudo_labels=None,
    pseudo_rule=None,
):
    """Place a crop around ``anchor``, read only its samples, build targets.

    Arguments
    ---------
    wav : str
        Audio path.
    duration : float
        Recording length in seconds.
    tp_boxes, fp_boxes : list of Box or of dicts (as in the manifests)
    anchor : Box, dict or None
        The box the crop contains (see :func:`choose_crop_start`); None
        places the crop at random.
    crop_seconds : float
    n_frames, n_classes, sample_rate : int
    min_overlap : float
    rng : random.Random or the random module
    pseudo_labels : str, optional
        The recording's pseudo-label file
        (:func:`speechbrain_rfcx.data.pseudo.write_pseudo_labels`): cells no
        human box labels take pseudo-labels under ``pseudo_rule``
        (:func:`speechbrain_rfcx.data.pseudo.add_pseudo_labels`).
    pseudo_rule : speechbrain_rfcx.data.pseudo.PseudoLabelRule, optional
        Required with ``pseudo_labels``.

    Returns
    -------
    dict
        ``signal`` (crop_seconds * sample_rate samples, zero padded),
        ``crop_start`` and the targets of :func:`crop_targets`.

    Example
    -------
    >>> import os, tempfile, soundfile as sf
    >>> path = os.path.join(tempfile.mkdtemp(), "r.flac")
    >>> sf.write(path, np.zeros(8000 * 6, dtype="float32"), 8000)
    >>> tp = [{"species_id": 0, "songtype_id": 1, "t_min": 4.0, "f_min": 1.0,
    ...        "t_max": 5.0, "f_max": 2.0}]
    >>> crop = load_crop(path, 6.0, tp, [], anchor=tp[0], crop_seconds=2.0,
    ...                  n_frames=8, n_classes=2, sample_rate=8000)
    >>> crop["signal"].shape, crop["clip_target"].tolist()
    (torch.Size([16000]), [1.0, 0.0])
    """
    tp_boxes = [b if isinstance(b, Box) else Box.from_dict(b) for b in tp_boxes]
    fp_boxes = [b if isinstance(b, Box) else Box.from_dict(b) for b in fp_boxes]
    if anchor is not None and not isinstance(anchor, Box):
        anchor = Box.from_dict(anchor)
    start = choose_crop_start(duration, crop_seconds, anchor, rng)
    n_samples = int(round(crop_seconds * sample_rate))
    signal = read_segment(wav, start, crop_seconds, sample_rate)
    if signal.numel() < n_samples:
        signal = torch.nn.functional.pad(signal, (0, n_samples - signal.numel()))
    targets = crop_targets(
        tp_boxes, fp_boxes, start, crop_seconds, n_frames, n_classes, min_overlap
    )
    if pseudo_labels is not None:
        frame_probs, frame_hop = read_pseudo_labels(pseudo_labels)
        targets = add_pseudo_labels(
            targets, frame_probs, frame_hop, start, crop_seconds, pseudo_rule
        )
    return {"signal": signal, "crop_start": start, **targets}


def check_wavs(wavs):
    """Raises a ValueError unless ``wavs`` is a floating (B, samples) tensor.

    Example
    -------
    >>> check_wavs(torch.zeros(2, 100))
    >>> check_wavs(torch.zeros(100))
    Traceback (most recent call last):
        ...
    ValueError: wavs must be a (batch, samples) tensor, got (100,)
    """
    if not torch.is_tensor(wavs) or wavs.dim() != 2:
        shape = tuple(wavs.shape) if torch.is_tensor(wavs) else type(wavs).__name__
        raise ValueError(f"wavs must be a (batch, samples) tensor, got {shape}")
    if not wavs.is_floating_point():
        raise ValueError(f"wavs must be floating point, got dtype {wavs.dtype}")


def check_targets(targets, batch_size):
    """Validates the shapes of a batch's contract keys; returns its frame count.

    Any subset of the keys may be present (other keys pass unchecked); every
    frame target must have the same number of frames T.

    Arguments
    ---------
    targets : dict
        Batch targets: ``TARGET_KEYS`` with a leading batch dimension, and
        ``lens`` (B,).
    batch_size : int
        The expected B.

    Returns
    -------
    int or None
        T, or None without frame targets.

    Example
    -------
    >>> check_targets({"frame_mask": torch.zeros(2, 8), "lens": torch.ones(2)}, 2)
    8
    >>> check_targets({"clip_target": torch.zeros(2, 24)}, 2) is None
    True
    """
    if not isinstance(targets, dict):
        raise ValueError(f"targets must be a dict, got {type(targets).__name__}")
    n_frames = None
    for key, value in targets.items():
        if key in CLIP_KEYS or key in FRAME_KEYS or key == "lens":
            if not torch.is_tensor(value) or value.shape[:1] != (batch_size,):
                shape = tuple(value.shape) if torch.is_tensor(value) else value
                raise ValueError(
                    f"targets['{key}'] must be a tensor with batch size "
                    f"{batch_size}, got {shape}"
                )
        expected_dim = {"frame_mask": 2, "lens": 1}.get(
            key, 3 if key in FRAME_KEYS else 2 if key in CLIP_KEYS else None
        )
        if expected_dim is not None and value.dim() != expected_dim:
            raise ValueError(
                f"targets['{key}'] must have {expected_dim} dimensions, "
                f"got shape {tuple(value.shape)}"
            )
        if key in FRAME_KEYS:
            if n_frames is not None and value.shape[1] != n_frames:
                raise ValueError(
                    f"targets['{key}'] has {value.shape[1]} frames but other "
                    f"frame targets have {n_frames}"
                )
            n_frames = value.shape[1]
    if "lens" in targets:
        check_lens(targets["lens"], batch_size, name="targets['lens']")
    return n_frames
