"""The one valid-frame rule: which frames of a padded batch hold audio.

A batch carries SpeechBrain relative lengths ``lens`` (B,) in (0, 1]: item
``b`` is valid over the first ``lens[b]`` of its (padded) samples. Relative
lengths stay meaningful at any time resolution, so the same ``lens`` decides
the valid frames of every sequence made from the batch: a model's frame
outputs, every downsampled layer of its encoder, the frame losses and the
whole-recording scorer all call :func:`frame_mask` with ``lens`` and their
number of frames, so the loss never counts a frame the model masked.

Authors
 * speechbrain-rfcx contributors
"""

import torch
from speechbrain.dataio.dataio import length_to_mask

__all__ = ["check_lens", "frame_mask"]

# Keeps 0.5 * 4 (or float32's 0.6 * 25 = 15.000001) from becoming one frame more.
_TOLERANCE = 1e-4


def check_lens(lens, batch_size=None, name="lens"):
    """Raises a ValueError unless ``lens`` are (B,) relative lengths in (0, 1].

    Arguments
    ---------
    lens : torch.Tensor
        The relative lengths.
    batch_size : int, optional
        The expected B (any B if None).
    name : str
        How the error message names ``lens``.

    Example
    -------
    >>> check_lens(torch.tensor([1.0, 0.5]), batch_size=2)
    >>> check_lens(torch.tensor([1.0, 0.0]))
    Traceback (most recent call last):
        ...
    ValueError: lens must lie in (0, 1], got [1.0, 0.0]
    """
    expected = "B" if batch_size is None else batch_size
    if lens.dim() != 1 or batch_size not in (None, lens.shape[0]):
        raise ValueError(
            f"{name} must have shape ({expected},), got {tuple(lens.shape)}"
        )
    if bool(((lens <= 0) | (lens > 1)).any()):
        raise ValueError(f"{name} must lie in (0, 1], got {lens.tolist()}")


def frame_mask(lens, n_frames):
    """(B,) relative lengths -> (B, n_frames) bool mask of the valid frames.

    Frame ``i`` is valid when it starts inside the valid part
    (``i < lens * n_frames``, with a small tolerance for rounding error): the
    first ``ceil(lens * n_frames)`` frames, and always at least one.

    Arguments
    ---------
    lens : torch.Tensor
        (B,) relative lengths in (0, 1].
    n_frames : int
        Number of frames of the (padded) sequence.

    Returns
    -------
    torch.Tensor
        (B, n_frames) bool, True on valid frames, on the device of ``lens``.

    Raises
    ------
    ValueError
        If ``lens`` is not 1-D or has a value outside (0, 1].

    Example
    -------
    >>> frame_mask(torch.tensor([1.0, 0.5, 0.3, 0.01]), 4)
    tensor([[ True,  True,  True,  True],
            [ True,  True, False, False],
            [ True,  True, False, False],
            [ True, False, False, False]])
    """
    lens = torch.as_tensor(lens).float()
    check_lens(lens)
    n_frames = int(n_frames)
    counts = torch.ceil(lens * n_frames - _TOLERANCE).clamp(1, n_frames)
    return length_to_mask(counts, max_len=n_frames).bool()
