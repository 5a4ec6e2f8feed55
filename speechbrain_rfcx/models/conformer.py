"""Conformer SED model on SpeechBrain's ``ConformerEncoder``.

Authors
 * speechbrain-rfcx contributors
"""

from speechbrain.lobes.models.transformer.Conformer import ConformerEncoder
from speechbrain.nnet.attention import RelPosEncXL

from speechbrain_rfcx.models.registry import register_model
from speechbrain_rfcx.models.sequence import SequenceEncoderSED


@register_model("conformer_sed")
class ConformerSED(SequenceEncoderSED):
    """Log-mel -> conv subsampling (time / 4) -> Conformer encoder -> SED head.

    SpeechBrain Conformer layers with relative positional attention
    (``RelPosMHAXL``); padded frames are masked out of self-attention, of the
    convolution modules' outputs and of the pooling. The defaults (d_model 128,
    4 heads, 4 layers, d_ffn 512, kernel 31: about 1.8 M parameters in all)
    train on a CPU.

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
    kernel_size : int
        Kernel of the depthwise convolutions (odd).
    dropout : float
        Dropout of the front end and the encoder.
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
    >>> model = ConformerSED(n_classes=3, sample_rate=16000, n_fft=256,
    ...     hop_length=128, n_mels=16, d_model=16, nhead=2, num_layers=1,
    ...     d_ffn=32, kernel_size=3, pooling="cls")
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
        kernel_size=31,
        dropout=0.1,
        frontend_channels=(64, 32),
        pooling="attention_max",
        **kwargs,
    ):
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size!r}")
        super().__init__(
            d_model=d_model,
            frontend_channels=frontend_channels,
            pooling=pooling,
            dropout=dropout,
            **kwargs,
        )
        self.positional_encoding = RelPosEncXL(d_model)
        self.encoder = ConformerEncoder(
            num_layers=num_layers,
            d_model=d_model,
            d_ffn=d_ffn,
            nhead=nhead,
            kernel_size=kernel_size,
            dropout=dropout,
            attention_type="RelPosMHAXL",
        )

    def run_encoder(self, x, key_padding_mask):
        """Runs the encoder with relative positions; see ``SequenceEncoderSED``."""
        out, _ = self.encoder(
            x,
            src_key_padding_mask=key_padding_mask,
            pos_embs=self.positional_encoding(x),
        )
        return out
