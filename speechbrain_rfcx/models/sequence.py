"""``SequenceEncoderSED``: the base of the models built on a SpeechBrain
sequence encoder (Transformer, Conformer): convolutional subsampling, a
projection to ``d_model``, padding masks and optional CLS pooling.

Authors
 * speechbrain-rfcx contributors
"""

import torch
from speechbrain.lobes.models.convolution import ConvolutionFrontEnd
from torch import nn

from speechbrain_rfcx.frames import frame_mask
from speechbrain_rfcx.models.base import SEDModel
from speechbrain_rfcx.models.heads import AttentionSEDHead


class SequenceEncoderSED(SEDModel):
    """Base of the Transformer/Conformer SED models (SpeechBrain encoders).

    A SpeechBrain ``ConvolutionFrontEnd`` (two 3x3 conv blocks, stride 2 each:
    time downsampled by 4) reads the (B, T, F, C_in) features; a linear layer
    projects each frame to ``d_model``; subclasses run the encoder. Padded
    frames are masked out of self-attention (``src_key_padding_mask``) and of
    the pooling. With ``pooling="cls"`` a learned CLS frame is prepended; its
    encoder output, classified by the head's frame classifier, gives the clip
    logits, and it is the embedding.

    Arguments
    ---------
    d_model : int
        Encoder width.
    frontend_channels : tuple of int
        Channels of the two convolutional subsampling blocks.
    pooling : str
        ``"cls"`` or a pooling of ``AttentionSEDHead``.
    **kwargs
        Common ``SEDModel`` arguments.
    """

    def __init__(
        self, d_model=128, frontend_channels=(64, 32), pooling="attention_max", **kwargs
    ):
        use_cls = pooling == "cls"
        super().__init__(pooling=pooling, **kwargs)
        if len(frontend_channels) != 2:
            raise ValueError(
                "frontend_channels must hold 2 channel counts, got "
                f"{frontend_channels!r}"
            )
        n_mels = self.features.n_mels
        self.frontend = ConvolutionFrontEnd(
            input_shape=(None, None, n_mels, self.in_channels),
            num_blocks=2,
            num_layers_per_block=1,
            out_channels=list(frontend_channels),
            kernel_sizes=[3, 3],
            strides=[2, 2],
            residuals=[False, False],
            dropout=self.dropout_rate,
        )
        with torch.no_grad():
            probe = self.frontend(torch.zeros(1, 8, n_mels, self.in_channels))
        self.input_projection = nn.Linear(probe.shape[2] * probe.shape[3], d_model)
        self.d_model = d_model
        self.cls_token = (
            nn.Parameter(torch.randn(1, 1, d_model) * 0.02) if use_cls else None
        )
        self.head = AttentionSEDHead(
            d_model, self.n_classes, pooling="max" if use_cls else pooling
        )

    def run_encoder(self, x, key_padding_mask):
        """(B, T, d_model), (B, T) bool padding mask -> (B, T, d_model)."""
        raise NotImplementedError

    def encode(self, feats, rel_lens):
        """Front end, projection and encoder; see the class docstring."""
        x = self.frontend(feats.permute(0, 2, 3, 1))  # (B, T', F', C)
        x = self.input_projection(x.flatten(start_dim=2))  # (B, T', d_model)
        valid = frame_mask(rel_lens, x.shape[1])
        x = x * valid.unsqueeze(-1).to(x.dtype)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1).to(x.dtype), x], 1)
            valid = torch.cat([valid.new_ones(x.shape[0], 1), valid], dim=1)
        return self.run_encoder(x, ~valid)

    def forward(self, wavs, lens=None):
        """Runs the model; see ``SEDModel.forward``."""
        if self.cls_token is None:
            return super().forward(wavs, lens)
        feats, rel_lens = self.compute_features(wavs, lens)
        encoded = self.encode(feats, rel_lens)
        cls_out, frames = encoded[:, 0], encoded[:, 1:]
        _, frame_logits = self.head(frames, frame_mask(rel_lens, frames.shape[1]))
        clip_logits = self.head.frame_logits(cls_out.unsqueeze(1)).squeeze(1)
        return {
            "clip_logits": clip_logits,
            "frame_logits": frame_logits,
            "embedding": cls_out,
        }
