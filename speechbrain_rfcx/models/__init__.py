"""SED models with one contract, and their registry.

``create_model(name, **kwargs)`` builds any registered model; every model maps
``(wavs (B, samples), lens (B,))`` to ``{"clip_logits": (B, C),
"frame_logits": (B, T', C), "embedding": (B, D)}``.

Registered: ``timm_sed``, ``panns_cnn14``, ``conformer_sed``, ``transformer_sed``,
``crnn_sed``.

Modules: ``registry`` (``register_model``, ``create_model``, ``list_models``),
``base`` (``SEDModel``, the base class keeping the contract), ``sequence``
(``SequenceEncoderSED``, the base of the SpeechBrain-encoder models),
``blocks`` (input checks, masked mean, ``ConvBlock``), ``heads`` (SED neck and
head), and one module per family.
"""

from speechbrain_rfcx.frames import frame_mask
from speechbrain_rfcx.models.base import SEDModel
from speechbrain_rfcx.models.blocks import ConvBlock, masked_mean
from speechbrain_rfcx.models.conformer import ConformerSED
from speechbrain_rfcx.models.crnn import CRNNSED
from speechbrain_rfcx.models.heads import AttentionSEDHead, SEDNeck
from speechbrain_rfcx.models.panns import PANNsCNN14, load_panns_checkpoint
from speechbrain_rfcx.models.registry import create_model, list_models, register_model
from speechbrain_rfcx.models.sequence import SequenceEncoderSED
from speechbrain_rfcx.models.timm_sed import TimmSED
from speechbrain_rfcx.models.transformer import TransformerSED

__all__ = [
    "AttentionSEDHead",
    "CRNNSED",
    "ConvBlock",
    "ConformerSED",
    "PANNsCNN14",
    "SEDModel",
    "SEDNeck",
    "SequenceEncoderSED",
    "TimmSED",
    "TransformerSED",
    "create_model",
    "frame_mask",
    "list_models",
    "load_panns_checkpoint",
    "masked_mean",
    "register_model",
]
