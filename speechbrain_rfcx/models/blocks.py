"""Blocks shared by the model families: input checks, masked means over valid
frames and the CNN14 convolution block (PANNs, CRNN). The valid-frame mask
itself is ``speechbrain_rfcx.frames.frame_mask``.

Authors
 * speechbrain-rfcx contributors
"""

import torch
import torch.nn.functional as F
from torch import nn


def masked_mean(x, mask):
    """Mean of (B, T, D) features over the valid frames of a (B, T) mask.

    Arguments
    ---------
    x : torch.Tensor
        (B, T, D) features.
    mask : torch.Tensor
        (B, T), nonzero on valid frames.

    Returns
    -------
    torch.Tensor
        (B, D) means.

    Example
    -------
    >>> x = torch.tensor([[[1.0], [3.0], [100.0]]])
    >>> masked_mean(x, torch.tensor([[1, 1, 0]]))
    tensor([[2.]])
    """
    weights = mask.to(x.dtype).unsqueeze(-1)
    return (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def check_inputs(wavs, lens):
    """Validates ``(wavs, lens)`` and returns ``lens`` (all ones if None).

    Arguments
    ---------
    wavs : torch.Tensor
        (B, samples) waveforms.
    lens : torch.Tensor or None
        (B,) relative lengths in (0, 1].

    Returns
    -------
    torch.Tensor
        (B,) float relative lengths on ``wavs.device``.

    Example
    -------
    >>> check_inputs(torch.zeros(2, 100), None)
    tensor([1., 1.])
    """
    if wavs.dim() != 2:
        raise ValueError(
            f"wavs must have shape (batch, samples), got {tuple(wavs.shape)}"
        )
    if lens is None:
        return torch.ones(wavs.shape[0], device=wavs.device)
    lens = torch.as_tensor(lens, device=wavs.device).float()
    if lens.shape != (wavs.shape[0],):
        raise ValueError(
            f"lens must have shape ({wavs.shape[0]},), got {tuple(lens.shape)}"
        )
    if bool(((lens <= 0) | (lens > 1 + 1e-6)).any()):
        raise ValueError(f"lens must lie in (0, 1], got {lens.tolist()}")
    return lens.clamp(max=1.0)


class ConvBlock(nn.Module):
    """Two 3x3 conv + BatchNorm + ReLU layers, then average pooling (CNN14).

    Arguments
    ---------
    in_channels : int
        Input channels.
    out_channels : int
        Output channels.

    Example
    -------
    >>> ConvBlock(1, 4)(torch.randn(2, 1, 8, 6), pool_size=(2, 2)).shape
    torch.Size([2, 4, 4, 3])
    """

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x, pool_size=(2, 2)):
        """(B, C_in, T, F) -> (B, C_out, T / pool, F / pool)."""
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, kernel_size=pool_size)
