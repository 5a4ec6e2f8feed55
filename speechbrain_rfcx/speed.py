"""Speed change of a batch, with its targets rescaled in time.

``change_speed`` plays a batch faster or slower (speechbrain ``Resample``)
and moves the frame targets and ``lens`` with the audio. Training
augmentation (``speechbrain_rfcx.augment.speed_perturb``) and test-time
augmentation (``speechbrain_rfcx.inference``) both use it; this module keeps
the scorer free of the training augmentations.

Authors
 * speechbrain-rfcx contributors
"""

import functools
from fractions import Fraction

import torch
from speechbrain.augment.time_domain import Resample

from speechbrain_rfcx.data.crops import FRAME_KEYS, check_targets, check_wavs
from speechbrain_rfcx.frames import check_lens

__all__ = ["change_speed", "speed_ratio"]

_MAX_SPEED_DENOMINATOR = 100


@functools.lru_cache(maxsize=16)
def _resampler(orig_freq, new_freq):
    return Resample(orig_freq=orig_freq, new_freq=new_freq)


def speed_ratio(speed):
    """The speed as a compact fraction: (numerator, denominator).

    Arguments
    ---------
    speed : float
        Playback speed factor (> 0).

    Returns
    -------
    tuple of int
        The fraction nearest ``speed`` with a denominator of at most 100.

    Example
    -------
    >>> speed_ratio(0.9), speed_ratio(1.1)
    ((9, 10), (11, 10))
    """
    if not speed > 0:
        raise ValueError(f"speed must be positive, got {speed}")
    ratio = Fraction(speed).limit_denominator(_MAX_SPEED_DENOMINATOR)
    return ratio.numerator, ratio.denominator


def _time_stretch_frames(x, numerator, denominator):
    """Remap the time axis of frame targets for a speed of num/den.

    Output frame ``j`` covers input time ``[j, j + 1) * speed`` (in frames);
    it takes the max over the input frames it overlaps, and zero when it lies
    past the end of the input. Integer arithmetic keeps the overlap exact.
    """
    n_frames = x.shape[1]
    idx = torch.arange(n_frames, device=x.device)
    out_j, in_k = idx.view(-1, 1), idx.view(1, -1)
    overlap = (in_k * denominator < (out_j + 1) * numerator) & (
        (in_k + 1) * denominator > out_j * numerator
    )
    trailing = x.shape[2:]
    flat = x.reshape(x.shape[0], 1, n_frames, -1)
    weights = overlap.to(x.dtype).view(1, n_frames, n_frames, 1)
    return (flat * weights).amax(dim=2).reshape(x.shape[0], n_frames, *trailing)


def change_speed(wavs, lens, targets=None, speed=1.0):
    """Play a batch at ``speed`` and keep the original number of samples.

    The audio is resampled (speechbrain ``Resample``) so that an event at time
    ``t`` moves to ``t / speed`` and a tone at ``f`` Hz moves to
    ``f * speed`` Hz, then the tail is cropped (``speed < 1``) or zero-padded
    (``speed > 1``) back to the input length. The speed is approximated by a
    fraction with denominator at most 100 (0.9 -> 9/10, 1.1 -> 11/10).

    Target conventions:

    * ``lens`` (and ``targets['lens']``) become ``min(lens / speed, 1)``.
    * Frame targets (``frame_target``, ``frame_mask``, ``frame_label_mask``)
      keep their frame count ``T``; new frame ``j`` takes the max over the old
      frames overlapping ``[j, j + 1) * speed``, so events move to
      ``t / speed`` (within a frame); frames past the end of the original
      audio become zero (no call, unknown).
    * Clip targets: a species whose positive frames (``frame_target``) are all
      cropped away loses its clip label (``clip_target`` and ``label_mask``
      set to 0: unknown); a species whose known frames (``frame_label_mask``,
      e.g. an FP box) are all cropped away becomes unknown (``label_mask`` 0).
      Only ``speed < 1`` crops anything away.

    Arguments
    ---------
    wavs : torch.Tensor
        Audio batch, shape ``(B, samples)``.
    lens : torch.Tensor
        Relative valid lengths, shape ``(B,)``.
    targets : dict, optional
        Targets of the contract (any subset of its keys), or None.
    speed : float
        Playback speed factor (> 1 is faster and shorter).

    Returns
    -------
    wavs : torch.Tensor
        Perturbed audio, same shape as the input.
    lens : torch.Tensor
        New relative lengths.
    targets : dict or None
        New targets dictionary (None if ``targets`` was None).

    Example
    -------
    >>> wavs = torch.zeros(1, 1000)
    >>> targets = {"frame_target": torch.tensor([[[0.0], [0.0], [0.0], [1.0]]])}
    >>> out, lens, new = change_speed(wavs, torch.ones(1), targets, speed=2.0)
    >>> out.shape, lens
    (torch.Size([1, 1000]), tensor([0.5000]))
    >>> new["frame_target"].flatten().tolist()
    [0.0, 1.0, 0.0, 0.0]
    """
    check_wavs(wavs)
    batch_size, n_samples = wavs.shape
    check_lens(lens, batch_size)
    has_targets = targets is not None
    targets = targets if has_targets else {}
    n_frames = check_targets(targets, batch_size)
    numerator, denominator = speed_ratio(speed)
    new_targets = dict(targets) if has_targets else None
    if numerator == denominator:
        return wavs, lens, new_targets

    # Resampling from rate num to rate den plays the audio num/den faster.
    stretched = _resampler(numerator, denominator)(wavs)
    if stretched.shape[1] >= n_samples:
        stretched = stretched[:, :n_samples]
    else:
        stretched = torch.nn.functional.pad(
            stretched, (0, n_samples - stretched.shape[1])
        )
    exact_speed = numerator / denominator
    new_lens = (lens / exact_speed).clamp(max=1.0)
    if "lens" in targets:
        new_targets["lens"] = (targets["lens"] / exact_speed).clamp(max=1.0)

    if n_frames is not None:
        for key in FRAME_KEYS:
            if key in targets:
                new_targets[key] = _time_stretch_frames(
                    targets[key], numerator, denominator
                )
        _drop_cropped_labels(targets, new_targets)
    return stretched, new_lens, new_targets


def _drop_cropped_labels(old, new):
    """Clip labels whose frame evidence was cropped away become unknown."""
    lost = None
    for key in ("frame_target", "frame_label_mask"):
        if key in old:
            had = old[key].amax(dim=1) > 0
            has = new[key].amax(dim=1) > 0
            key_lost = had & ~has
            lost = key_lost if lost is None else lost | key_lost
            if key == "frame_target" and "clip_target" in old:
                new["clip_target"] = old["clip_target"].masked_fill(key_lost, 0.0)
    if lost is not None and "label_mask" in old:
        new["label_mask"] = old["label_mask"].masked_fill(lost, 0.0)
