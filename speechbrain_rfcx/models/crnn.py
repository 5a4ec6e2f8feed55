"""A small frequency-aware CRNN SED model (the DCASE baseline family).

Convolution blocks pool frequency more than time, and the remaining
frequency bins are flattened into each frame's features instead of averaged
away, so the model knows *where* in the spectrum a call lies; a
bidirectional GRU adds context over time. Small enough to train from
scratch on a CPU, which the ImageNet-shaped backbones are not.
"""

from torch import nn

from speechbrain_rfcx.frames import frame_mask
from speechbrain_rfcx.models.base import SEDModel
from speechbrain_rfcx.models.blocks import ConvBlock
from speechbrain_rfcx.models.heads import AttentionSEDHead
from speechbrain_rfcx.models.registry import register_model


@register_model("crnn_sed")
class CRNNSED(SEDModel):
    """Conv blocks -> flatten (channels x frequency) -> BiGRU -> SED head.

    Arguments
    ---------
    channels : tuple of int
        Output channels of the conv blocks (two 3x3 convs each).
    time_pooling : tuple of int
        Time pooling after each block (frequency is pooled by 2 each time,
        by 4 in the first block); the product is the time downsampling.
    hidden : int
        GRU units per direction (the embedding has ``2 * hidden``).
    **kwargs
        Common ``SEDModel`` arguments (n_classes, sample_rate, feature
        options, pooling, dropout, feature_augment).

    Example
    -------
    >>> import torch
    >>> model = CRNNSED(n_classes=3, sample_rate=16000, n_fft=512,
    ...                 hop_length=160, n_mels=32).eval()
    >>> out = model(torch.randn(2, 16000))
    >>> out["clip_logits"].shape, out["frame_logits"].shape, out["embedding"].shape
    (torch.Size([2, 3]), torch.Size([2, 25, 3]), torch.Size([2, 128]))
    """

    def __init__(
        self,
        channels=(32, 64, 64),
        time_pooling=(2, 2, 1),
        hidden=64,
        dropout=0.2,
        **kwargs,
    ):
        super().__init__(dropout=dropout, **kwargs)
        if len(channels) != len(time_pooling):
            raise ValueError(
                f"channels {channels} and time_pooling {time_pooling} differ in length"
            )
        self.pools = [(t, 4 if i == 0 else 2) for i, t in enumerate(time_pooling)]
        freq_bins = self.features.n_mels
        for _, f in self.pools:
            freq_bins //= f
        if freq_bins < 1:
            raise ValueError(
                f"n_mels={self.features.n_mels} is too few for {len(channels)} "
                "conv blocks (frequency is pooled by 4, then 2 per block)"
            )
        self.blocks = nn.ModuleList()
        in_channels = self.in_channels
        for out_channels in channels:
            self.blocks.append(ConvBlock(in_channels, out_channels))
            in_channels = out_channels
        self.conv_dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(
            in_channels * freq_bins, hidden, batch_first=True, bidirectional=True
        )
        self.head = AttentionSEDHead(2 * hidden, self.n_classes, self.pooling)

    def encode(self, feats, rel_lens):
        """(B, C_in, T, F) -> (B, T / prod(time_pooling), 2 * hidden)."""
        x = feats
        for block, pool in zip(self.blocks, self.pools):
            x = self.conv_dropout(block(x, pool_size=pool))
        x = x.permute(0, 2, 1, 3).flatten(start_dim=2)  # (B, T', C * F')
        lengths = frame_mask(rel_lens, x.shape[1]).sum(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(
            x, lengths, batch_first=True, enforce_sorted=False
        )
        out, _ = self.gru(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(
            out, batch_first=True, total_length=x.shape[1]
        )
        return out
