"""Sound-event-detection heads and the shared CNN neck.

``AttentionSEDHead`` turns frame features (B, T', D) into clip logits (B, C) and
frame logits (B, T', C); ``SEDNeck`` turns a CNN feature map (B, D, T', F') into
frame features (B, T', D') the way PANNs and the original RFCX research do.

Authors
 * speechbrain-rfcx contributors
"""

import torch
import torch.nn.functional as F
from torch import nn

POOLINGS = ("attention_max", "attention_sum", "max", "mean")


class AttentionSEDHead(nn.Module):
    """Frame-wise classifier plus pooling over time into clip logits.

    ``cla = Conv1d(D, C, 1)`` gives the frame logits. The clip logits depend on
    ``pooling``, with attention weights ``w = softmax_t(tanh(att(x)))``
    (``att = Conv1d(D, C, 1)``, padded frames excluded):

    * ``"attention_max"`` (original RFCX research): ``max_t(w * cla)``;
    * ``"attention_sum"`` (PANNs decision-level attention): the probability
      ``sum_t(w * sigmoid(cla))`` returned as a logit (clamped away from 0 and 1);
    * ``"max"``: ``max_t(cla)``; ``"mean"``: mean of ``cla`` over valid frames
      (these two have no ``att`` layer).

    Arguments
    ---------
    in_features : int
        Frame feature size D.
    n_classes : int
        Number of classes C.
    pooling : str
        One of ``"attention_max"``, ``"attention_sum"``, ``"max"``, ``"mean"``.

    Example
    -------
    >>> head = AttentionSEDHead(16, 3)
    >>> mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    >>> clip, frames = head(torch.randn(2, 5, 16), mask)
    >>> clip.shape, frames.shape
    (torch.Size([2, 3]), torch.Size([2, 5, 3]))
    """

    def __init__(self, in_features, n_classes, pooling="attention_max"):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if in_features <= 0 or n_classes <= 0:
            raise ValueError(
                "in_features and n_classes must be positive, got "
                f"in_features={in_features!r}, n_classes={n_classes!r}"
            )
        self.pooling = pooling
        self.cla = nn.Conv1d(in_features, n_classes, kernel_size=1)
        self.att = None
        if pooling.startswith("attention"):
            self.att = nn.Conv1d(in_features, n_classes, kernel_size=1)

    def frame_logits(self, x):
        """Frame-wise logits ``cla(x)``: (B, T, D) -> (B, T, C).

        Arguments
        ---------
        x : torch.Tensor
            (B, T, D) frame features.

        Returns
        -------
        torch.Tensor
            (B, T, C) logits.

        Example
        -------
        >>> AttentionSEDHead(4, 2).frame_logits(torch.zeros(1, 3, 4)).shape
        torch.Size([1, 3, 2])
        """
        return self.cla(x.transpose(1, 2)).transpose(1, 2)

    def forward(self, x, mask=None):
        """Computes clip and frame logits.

        Arguments
        ---------
        x : torch.Tensor
            (B, T, D) frame features.
        mask : torch.Tensor, optional
            (B, T), nonzero/True on valid frames; every row needs one valid frame.
            None means all frames are valid.

        Returns
        -------
        clip_logits : torch.Tensor
            (B, C)
        frame_logits : torch.Tensor
            (B, T, C)
        """
        frame_logits, attention_logits = self.frame_outputs(x)
        return self.pool(frame_logits, attention_logits, mask), frame_logits

    def frame_outputs(self, x):
        """Frame logits ``cla(x)`` and attention logits ``att(x)`` (None without
        attention), both (B, T, C), from (B, T, D) frame features.

        Example
        -------
        >>> cla, att = AttentionSEDHead(4, 2).frame_outputs(torch.zeros(1, 3, 4))
        >>> cla.shape, att.shape
        (torch.Size([1, 3, 2]), torch.Size([1, 3, 2]))
        """
        if x.dim() != 3:
            raise ValueError(
                f"x must have shape (batch, time, features), got {x.shape}"
            )
        h = x.transpose(1, 2)  # (B, D, T)
        attention = None if self.att is None else self.att(h).transpose(1, 2)
        return self.cla(h).transpose(1, 2), attention

    def pool(self, frame_logits, attention_logits=None, mask=None):
        """Clip logits (B, C) from frame and attention logits (B, T, C).

        Pooling only looks at the frames it is given, so pooling the frame
        outputs of a whole recording over a span of frames gives the clip
        logits of that span (see ``speechbrain_rfcx.inference``).

        Example
        -------
        >>> head = AttentionSEDHead(4, 2, pooling="max")
        >>> cla = torch.tensor([[[0.0, 1.0], [2.0, -1.0], [9.0, 9.0]]])
        >>> head.pool(cla, mask=torch.tensor([[1, 1, 0]]))
        tensor([[2., 1.]])
        """
        cla = frame_logits.transpose(1, 2)  # (B, C, T)
        if mask is None:
            valid = torch.ones(
                cla.shape[0], 1, cla.shape[2], dtype=torch.bool, device=cla.device
            )
        else:
            if mask.shape != frame_logits.shape[:2]:
                raise ValueError(
                    f"mask must have shape {tuple(frame_logits.shape[:2])}, "
                    f"got {tuple(mask.shape)}"
                )
            valid = mask.bool().unsqueeze(1)  # (B, 1, T)
        if self.pooling == "max":
            return cla.masked_fill(~valid, float("-inf")).amax(dim=-1)
        if self.pooling == "mean":
            weights = valid.to(cla.dtype)
            return (cla * weights).sum(-1) / weights.sum(-1).clamp(min=1.0)
        if attention_logits is None:
            raise ValueError(f"pooling {self.pooling!r} needs attention_logits")
        scores = torch.tanh(attention_logits.transpose(1, 2))
        weights = torch.softmax(scores.masked_fill(~valid, float("-inf")), dim=-1)
        if self.pooling == "attention_max":
            return (weights * cla).masked_fill(~valid, float("-inf")).amax(dim=-1)
        prob = (weights * torch.sigmoid(cla)).sum(-1)
        eps = torch.finfo(prob.dtype).eps
        return torch.logit(prob.clamp(eps, 1.0 - eps))

    def extra_repr(self):
        """Summary shown by ``print(module)``."""
        return f"pooling={self.pooling!r}"


class SEDNeck(nn.Module):
    """CNN feature map (B, D, T', F') -> frame features (B, T', out_features).

    Mean over frequency, then max-pool + avg-pool (kernel 3, stride 1) over time,
    dropout, ``fc1`` + ReLU, dropout: the neck of PANNs' CNN14 SED model and of
    the original RFCX research. The linear layer is named ``fc1`` so that PANNs
    checkpoints map onto it.

    With ``frequency_bins=F'`` the neck is frequency-aware instead: the F'
    frequency rows of the feature map are kept and flattened into each frame's
    features (``fc1`` reads D * F' inputs), so the head knows *where* in the
    spectrum a pattern lies. A convolutional backbone is nearly
    shift-equivariant in frequency, so after a mean over frequency the same
    call shape in two bands looks alike; species defined by their band (most
    RFCX species, and the confusable pairs) are then told apart slowly.

    Arguments
    ---------
    in_channels : int
        Channels D of the feature map.
    out_features : int
        Output size of ``fc1`` (defaults to ``in_channels``).
    dropout : float
        Dropout before and after ``fc1``.
    frequency_bins : int, optional
        None: mean over frequency (PANNs). An int F': the feature map's
        frequency size, flattened into the features.

    Example
    -------
    >>> neck = SEDNeck(8, 4)
    >>> neck(torch.randn(2, 8, 5, 3)).shape
    torch.Size([2, 5, 4])
    >>> SEDNeck(8, 4, frequency_bins=3).fc1.in_features
    24
    """

    def __init__(
        self, in_channels, out_features=None, dropout=0.5, frequency_bins=None
    ):
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        if frequency_bins is not None and (
            int(frequency_bins) != frequency_bins or frequency_bins < 1
        ):
            raise ValueError(
                f"frequency_bins must be a positive integer or None, got {frequency_bins!r}"
            )
        self.frequency_bins = None if frequency_bins is None else int(frequency_bins)
        self.out_features = out_features or in_channels
        self.fc1 = nn.Linear(
            in_channels * (self.frequency_bins or 1), self.out_features
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, fmap):
        """Pools and projects a feature map.

        Arguments
        ---------
        fmap : torch.Tensor
            (B, D, T', F') feature map, or (B, D, T') already reduced over F.

        Returns
        -------
        torch.Tensor
            (B, T', out_features) frame features.
        """
        if self.frequency_bins is not None:
            if fmap.dim() != 4 or fmap.shape[3] != self.frequency_bins:
                raise ValueError(
                    f"the neck expects (batch, channels, time, {self.frequency_bins}) "
                    f"feature maps, got {tuple(fmap.shape)}"
                )
            fmap = fmap.permute(0, 1, 3, 2).flatten(1, 2)  # (B, D * F', T')
        elif fmap.dim() == 4:
            fmap = fmap.mean(dim=3)
        if fmap.dim() != 3:
            raise ValueError(
                "fmap must have shape (batch, channels, time[, freq]), "
                f"got {tuple(fmap.shape)}"
            )
        x = F.max_pool1d(fmap, 3, stride=1, padding=1) + F.avg_pool1d(
            fmap, 3, stride=1, padding=1
        )
        x = self.dropout(x.transpose(1, 2))
        return self.dropout(F.relu(self.fc1(x)))
