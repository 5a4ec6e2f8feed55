"""Transformer SED model on SpeechBrain's ``TransformerEncoder``.

Authors
 * speechbrain-rfcx contributors
"""

from speechbrain.lobes.models.transformer.Transformer import (
    PositionalEncoding,
    TransformerEncoder,
)
from torch import nn

from speechbrain_rfcx.models.registry import register_model
from speechbrain_rfcx.models.sequence import SequenceEncoderSED


@register_model("transformer_sed")
class TransformerSED(SequenceEncoderSED):
    """Log-mel -> conv subsampling (time / 4) -> Transformer encoder -> SED head.

    Pre-norm Transformer layers with absolute sinusoidal positions (SpeechBrain
    blocks); padded frames are masked out of self-attention and pooling. The
    defaults (d_model 128, 4 heads, 4 layers, d_ffn 512: about 1 M parameters
    in all) train on a CPU; a 10.9 s crop at the default features (1,025
    frames) gives 257 encoder frames.

    Arguments
    ---------
    d_model : int
        Encoder width.
    nhead : int
        Attention heads.
    num_layers : int
        Encoder layers.
    d_ffn : int
        Hidden size of the feed-forward blocks.
    dropout : float
        Dropout of the front end and the encoder.
    max_len : int
        Longest encoder sequence (frames after subsampling) the positional
        encoding covers: 5000 frames = 213 s at the default features.
    frontend_channels : tuple of int
        Channels of the two convolutional subsampling blocks.
    pooling : str
        ``"attention_max"`` (default), ``"attention_sum"``, ``"max"``, ``"mean"``
        or ``"cls"`` (learned CLS frame; see ``SequenceEncoderSED``).
    **kwargs
        Common arguments of ``SEDModel`` (n_classes, sample_rate, feature
        options, feature_augment).

    Example
    -------
    >>> import torch
    >>> model = TransformerSED(n_classes=3, sample_rate=16000, n_fft=256,
    ...     hop_length=128, n_mels=16, d_model=16, nhead=2, num_layers=1, d_ffn=32)
    >>> out = model(torch.randn(2, 8000), torch.tensor([1.0, 0.5]))
    >>> out["clip_logits"].shape, out["frame_logits"].shape, out["embedding"].shape
    (torch.Size([2, 3]), torch.Size([2, 16, 3]), torch.Size([2, 16]))
    """

    def __init__(
        self,
        d_model=128,
        nhead=4,
        num_layers=4,
        d_ffn=512,
        dropout=0.1,
        max_len=5000,
        frontend_channels=(64, 32),
        pooling="attention_max",
        **kwargs,
    ):
        super().__init__(
            d_model=d_model,
            frontend_channels=frontend_channels,
            pooling=pooling,
            dropout=dropout,
            **kwargs,
        )
        self.max_len = max_len
        self.positional_encoding = PositionalEncoding(d_model, max_len=max_len)
        self.encoder = TransformerEncoder(
            num_layers=num_layers,
            nhead=nhead,
            d_ffn=d_ffn,
            d_model=d_model,
            dropout=dropout,
            activation=nn.GELU,
            normalize_before=True,
        )

    def run_encoder(self, x, key_padding_mask):
        """Adds positions and runs the encoder; see ``SequenceEncoderSED``."""
        if x.shape[1] > self.max_len:
            raise ValueError(
                f"input gives {x.shape[1]} encoder frames, more than max_len="
                f"{self.max_len}; raise max_len or use shorter windows"
            )
        x = x + self.positional_encoding(x)
        out, _ = self.encoder(x, src_key_padding_mask=key_padding_mask)
        return out
