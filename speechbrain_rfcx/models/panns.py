"""PANNs CNN14 SED model and a loader for the official AudioSet checkpoints.

Parameter names follow the official ``Cnn14`` / ``Cnn14_DecisionLevelAtt``
(Kong et al., 2020, qiuqiangkong/audioset_tagging_cnn) so the conv weights map
one to one; the official ``fc1`` maps to ``neck.fc1`` and ``att_block.att`` /
``att_block.cla`` to ``head.att`` / ``head.cla``.

Authors
 * speechbrain-rfcx contributors
"""

import logging
from pathlib import Path

import torch
from torch import nn

from speechbrain_rfcx.models.base import SEDModel
from speechbrain_rfcx.models.blocks import ConvBlock
from speechbrain_rfcx.models.heads import AttentionSEDHead, SEDNeck
from speechbrain_rfcx.models.registry import register_model

logger = logging.getLogger(__name__)

CNN14_CHANNELS = (64, 128, 256, 512, 1024, 2048)
# Official checkpoint prefix -> prefix in PANNsCNN14 (None: nothing to map to).
_KEY_PREFIXES = (
    ("fc1.", "neck.fc1."),
    ("att_block.att.", "head.att."),
    ("att_block.cla.", "head.cla."),
    ("bn0.", "bn0."),
    ("conv_block", "conv_block"),
)


@register_model("panns_cnn14")
class PANNsCNN14(SEDModel):
    """PANNs CNN14 with the SED neck and attention head.

    Log-mel (B, C_in, T, F) -> per-mel-bin ``bn0`` -> six ``ConvBlock``s
    (64 ... 2048 channels, 2x2 average pooling in the first five, dropout
    ``conv_dropout`` after each) -> ``SEDNeck`` (``fc1`` 2048) -> head. Time
    and frequency are downsampled by 32, so ``n_mels`` must be at least 32 and
    inputs at least 32 frames long. About 80 M parameters.

    Arguments
    ---------
    pretrained_path : str or Path, optional
        Official AudioSet checkpoint (``Cnn14*.pth``), loaded with
        ``load_panns_checkpoint``; its report is kept in ``self.pretrained_report``.
    dropout : float
        Dropout of the neck (PANNs: 0.5).
    conv_dropout : float
        Dropout after each conv block (PANNs: 0.2).
    channels : tuple of int
        Output channels of the conv blocks; CNN14's by default. Fewer or
        narrower blocks give a small CNN that trains from scratch on a CPU
        (time and frequency are downsampled by ``2 ** (len(channels) - 1)``).
    **kwargs
        Common arguments of ``SEDModel`` (n_classes, sample_rate, feature
        options, pooling, feature_augment).

    Example
    -------
    >>> model = PANNsCNN14(n_classes=3, sample_rate=16000, n_fft=256,
    ...     hop_length=128, n_mels=32).eval()
    >>> out = model(torch.randn(1, 4096))
    >>> out["clip_logits"].shape, out["frame_logits"].shape, out["embedding"].shape
    (torch.Size([1, 3]), torch.Size([1, 1, 3]), torch.Size([1, 2048]))
    """

    def __init__(
        self,
        pretrained_path=None,
        dropout=0.5,
        conv_dropout=0.2,
        channels=CNN14_CHANNELS,
        **kwargs,
    ):
        super().__init__(dropout=dropout, **kwargs)
        self.channels = tuple(channels)
        self.downsampling = 2 ** (len(self.channels) - 1)
        self.time_reduction = self.downsampling
        if self.features.n_mels < self.downsampling:
            raise ValueError(
                f"n_mels must be at least {self.downsampling} for "
                f"{len(self.channels)} conv blocks, got {self.features.n_mels}"
            )
        if not 0.0 <= conv_dropout < 1.0:
            raise ValueError(f"conv_dropout must be in [0, 1), got {conv_dropout!r}")
        in_channels = self.in_channels
        for index, out_channels in enumerate(self.channels, start=1):
            setattr(self, f"conv_block{index}", ConvBlock(in_channels, out_channels))
            in_channels = out_channels
        self.conv_dropout = nn.Dropout(conv_dropout)
        self.neck = SEDNeck(in_channels, in_channels, dropout)
        self.head = AttentionSEDHead(in_channels, self.n_classes, self.pooling)
        self.pretrained_report = None
        if pretrained_path is not None:
            self.pretrained_report = load_panns_checkpoint(self, pretrained_path)

    def encode(self, feats, rel_lens):
        """(B, C_in, T, F) -> conv blocks -> neck -> (B, T / 32, 2048)."""
        if feats.shape[2] < self.downsampling:
            raise ValueError(
                f"the conv blocks need at least {self.downsampling} feature frames, "
                f"got {feats.shape[2]}"
            )
        x = feats
        for index in range(1, len(self.channels) + 1):
            block = getattr(self, f"conv_block{index}")
            pool = (2, 2) if index < len(self.channels) else (1, 1)
            x = self.conv_dropout(block(x, pool_size=pool))
        return self.neck(x)


def _map_official_key(key):
    """Name of an official CNN14 checkpoint key in ``PANNsCNN14`` (or None)."""
    for official, ours in _KEY_PREFIXES:
        if key.startswith(official):
            return ours + key[len(official) :]
    return None


def _read_state_dict(path):
    """Reads the state dict of an official checkpoint (``{"model": ...}``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"PANNs checkpoint {str(path)!r} is not a file")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    state = checkpoint
    if isinstance(checkpoint, dict) and "model" in checkpoint:
        state = checkpoint["model"]
    if not isinstance(state, dict) or not all(
        isinstance(value, torch.Tensor) for value in state.values()
    ):
        raise ValueError(
            f"{str(path)!r} holds no state dict (expected a dict with key 'model' "
            "mapping parameter names to tensors)"
        )
    return {key.removeprefix("module."): value for key, value in state.items()}


def load_panns_checkpoint(model, path):
    """Loads an official PANNs CNN14 checkpoint into a ``PANNsCNN14``.

    Tensors whose shapes match are copied. The first convolution is adapted
    when the model has more input channels (the frequency channel): the file's
    weights fill channel 0, the extra channels start at zero, so the loaded
    network computes what the original does. Everything else keeps its fresh
    initialisation: ``bn0`` when ``n_mels`` is not 64 (the official
    features), the head when ``n_classes`` differs from 527 or the checkpoint
    is the plain ``Cnn14`` (its ``fc_audioset`` is a clip classifier). The
    official front-end buffers (``spectrogram_extractor.*``,
    ``logmel_extractor.*``) are ignored: features are computed by the model.

    Arguments
    ---------
    model : PANNsCNN14
        The model to load into (modified in place).
    path : str or Path
        ``torch.save``'d dict whose key ``"model"`` holds the state dict.

    Returns
    -------
    dict
        ``loaded``: model keys copied from the file; ``adapted``: model keys
        filled from a file tensor of another shape; ``replaced``: model keys
        kept at their initialisation; ``ignored``: file keys not used.

    Example
    -------
    >>> import tempfile, os
    >>> model = PANNsCNN14(n_classes=3, sample_rate=16000, n_fft=256,
    ...     hop_length=128, n_mels=32)
    >>> path = os.path.join(tempfile.mkdtemp(), "cnn14.pth")
    >>> torch.save({"model": {"conv_block1.bn1.bias": torch.ones(64),
    ...     "logmel_extractor.melW": torch.ones(129, 64)}}, path)
    >>> report = load_panns_checkpoint(model, path)
    >>> report["loaded"], report["ignored"]
    (['conv_block1.bn1.bias'], ['logmel_extractor.melW'])
    >>> bool(model.conv_block1.bn1.bias.eq(1).all())
    True
    """
    state = _read_state_dict(path)
    own = model.state_dict()
    new_state, loaded, adapted, ignored = {}, [], [], []
    for key, value in state.items():
        target = _map_official_key(key)
        if target is None or target not in own:
            ignored.append(key)
            continue
        expected = own[target]
        if expected.shape == value.shape:
            new_state[target] = value.to(expected.dtype)
            loaded.append(target)
        elif (
            target == "conv_block1.conv1.weight"
            and expected.shape[0] == value.shape[0]
            and expected.shape[2:] == value.shape[2:]
            and expected.shape[1] > value.shape[1]
        ):
            weight = torch.zeros_like(expected)
            weight[:, : value.shape[1]] = value
            new_state[target] = weight
            adapted.append(target)
        else:
            ignored.append(key)
    # A BatchNorm counter is only meaningful with the statistics it counted.
    for target in list(new_state):
        if target.endswith("num_batches_tracked"):
            sibling = target.replace("num_batches_tracked", "running_mean")
            if sibling not in new_state:
                del new_state[target]
                loaded.remove(target)
                ignored.append(next(k for k in state if _map_official_key(k) == target))
    if not any(key.startswith("conv_block") for key in new_state):
        raise ValueError(
            f"{str(path)!r} holds no CNN14 conv weights (expected keys like "
            "'conv_block1.conv1.weight')"
        )
    replaced = [key for key in own if key not in new_state]
    model.load_state_dict(new_state, strict=False)
    logger.info(
        "PANNs checkpoint %s: %d tensors loaded, %d adapted %s, %d replaced %s, "
        "%d ignored %s",
        path,
        len(loaded),
        len(adapted),
        adapted,
        len(replaced),
        replaced,
        len(ignored),
        ignored,
    )
    return {
        "loaded": loaded,
        "adapted": adapted,
        "replaced": replaced,
        "ignored": ignored,
    }
