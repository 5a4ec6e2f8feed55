"""SED model on any timm CNN backbone (EfficientNet-B0 by default).

Authors
 * speechbrain-rfcx contributors
"""

from pathlib import Path

import torch

from speechbrain_rfcx.models.base import SEDModel
from speechbrain_rfcx.models.heads import AttentionSEDHead, SEDNeck
from speechbrain_rfcx.models.registry import register_model


@register_model("timm_sed")
class TimmSED(SEDModel):
    """Log-mel image (B, C_in, T, F) -> timm CNN -> ``SEDNeck`` -> SED head.

    The architecture of the original RFCX research's best model with the
    defaults: EfficientNet-B0 feature map, mean over frequency, max + avg
    pooling over time, FC 1280 + ReLU + dropout, attention head with max
    pooling. Time is downsampled by the backbone's reduction (32 for most).
    The model is frame-local (see ``SEDModel``); backbones with
    squeeze-and-excitation (EfficientNet, MobileNetV3) are so only
    approximately, as their channel gates average over the whole input.

    Arguments
    ---------
    backbone : str
        Any timm model name with a convolutional feature map.
    pretrained_path : str or Path, optional
        Local weights file of the same timm architecture (e.g. ImageNet
        weights); loaded by timm, which adapts the first convolution to the
        1 or 2 input channels and drops the classifier. No network access.
    neck_features : int, optional
        Output size of the neck's FC (defaults to the backbone's width).
    frequency_pooling : str
        ``"mean"``: the neck averages the feature map over frequency (the
        original research, PANNs); ``"flatten"``: it keeps the frequency rows
        and flattens them into each frame's features (frequency-aware, see
        ``SEDNeck``).
    backbone_kwargs : dict, optional
        Extra arguments of ``timm.create_model`` (e.g. ``drop_path_rate``).
    dropout : float
        Dropout of the neck.
    channels_last : bool
        Run the backbone in channels-last memory format (same results; about
        1.5x faster for EfficientNet-B0 on a 2-core CPU, and the layout GPUs
        prefer for mixed precision).
    torchscript_backbone : str or Path, optional
        A frozen TorchScript backbone written by
        :mod:`~speechbrain_rfcx.models.torchscript` from this architecture,
        used instead of building ``backbone`` with timm (inference on the
        CPU only; timm is not imported). Load the checkpoint it was frozen
        from: its backbone weights are checked against the frozen ones and
        kept for ``state_dict``, so export and fingerprints are unchanged.
    **kwargs
        Common arguments of ``SEDModel`` (n_classes, sample_rate, feature
        options, pooling, feature_augment).

    Example
    -------
    >>> import torch
    >>> model = TimmSED(backbone="test_efficientnet", n_classes=3,
    ...     sample_rate=16000, n_fft=256, hop_length=128, n_mels=32)
    >>> out = model(torch.randn(2, 8000))
    >>> out["clip_logits"].shape, out["frame_logits"].shape, out["embedding"].shape
    (torch.Size([2, 3]), torch.Size([2, 2, 3]), torch.Size([2, 256]))
    """

    def __init__(
        self,
        backbone="efficientnet_b0",
        pretrained_path=None,
        neck_features=None,
        frequency_pooling="mean",
        backbone_kwargs=None,
        dropout=0.5,
        channels_last=True,
        torchscript_backbone=None,
        **kwargs,
    ):
        super().__init__(dropout=dropout, **kwargs)
        self.channels_last = channels_last
        self._frozen_state = None  # the frozen backbone's weights, by name
        self.register_load_state_dict_pre_hook(_check_frozen_weights)
        self.register_state_dict_post_hook(_add_frozen_weights)
        if torchscript_backbone is not None:
            from speechbrain_rfcx.models.torchscript import load_frozen

            self.backbone = load_frozen(torchscript_backbone)
            self.time_reduction = int(self.backbone.reduction)
            self._frozen_state = {}  # filled when the checkpoint is loaded
            self._finish(frequency_pooling, neck_features, dropout)
            return
        options = dict(backbone_kwargs or {})
        if pretrained_path is not None:
            pretrained_path = Path(pretrained_path)
            if not pretrained_path.is_file():
                raise FileNotFoundError(
                    f"pretrained_path {str(pretrained_path)!r} is not a file"
                )
            options.update(
                pretrained=True,
                pretrained_cfg_overlay=dict(file=str(pretrained_path)),
            )
        import timm  # here: the other models load without timm's import time

        self.backbone = timm.create_model(
            backbone,
            num_classes=0,
            global_pool="",
            in_chans=self.in_channels,
            **options,
        )
        if channels_last:
            self.backbone.to(memory_format=torch.channels_last)
        self.time_reduction = self.backbone.feature_info[-1]["reduction"]
        self._finish(frequency_pooling, neck_features, dropout)

    @property
    def backbone_is_frozen(self):
        """True when the backbone is a frozen TorchScript module."""
        return self._frozen_state is not None

    def _features(self, feats):
        if self.backbone_is_frozen:  # its precision is fixed: no autocast casts
            with torch.autocast(feats.device.type, enabled=False):
                return self.backbone(feats)
        return self.backbone.forward_features(feats)

    def _finish(self, frequency_pooling, neck_features, dropout):
        if frequency_pooling not in ("mean", "flatten"):
            raise ValueError(
                f"frequency_pooling must be 'mean' or 'flatten', got {frequency_pooling!r}"
            )
        frequency_bins = None
        if frequency_pooling == "flatten":
            # in eval mode, so the probe leaves the BatchNorm statistics
            # (pretrained ones included) as they are; a frozen one has none
            eager = not self.backbone_is_frozen
            if eager:
                self.backbone.eval()
            with torch.no_grad():
                probe = torch.zeros(1, self.in_channels, 64, self.features.n_mels)
                frequency_bins = self._features(probe).shape[3]
            if eager:
                self.backbone.train()
        self.neck = SEDNeck(
            self.backbone.num_features, neck_features, dropout, frequency_bins
        )
        self.head = AttentionSEDHead(
            self.neck.out_features, self.n_classes, self.pooling
        )

    def encode(self, feats, rel_lens):
        """(B, C_in, T, F) -> backbone feature map -> neck -> (B, T', D)."""
        if self.channels_last:
            feats = feats.contiguous(memory_format=torch.channels_last)
        return self.neck(self._features(feats))

    def freeze_backbone(self, bf16=False):
        """Replace the timm backbone by a frozen TorchScript copy, for
        inference on the CPU (see :mod:`~speechbrain_rfcx.models.torchscript`;
        ``bf16``: in bfloat16); returns the frozen module, e.g. to save it.
        The weights stay in ``state_dict``. The model can no longer train.
        """
        from speechbrain_rfcx.models.torchscript import freeze_backbone

        if self.backbone_is_frozen:
            return self.backbone
        state = dict(self.backbone.state_dict())
        frozen = freeze_backbone(
            self.backbone, self.backbone.num_features, self.time_reduction, bf16
        )
        probe = torch.randn(
            1, self.in_channels, 64, self.features.n_mels,
            generator=torch.Generator().manual_seed(0),
        )  # fmt: skip
        if self.channels_last:
            probe = probe.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            expected, got = self.backbone.forward_features(probe), frozen(probe)
        error = float((expected - got).abs().max())
        tolerance = 0.05 if bf16 else 1e-3  # of the largest feature
        if not error <= tolerance * (float(expected.abs().max()) or 1.0):
            raise RuntimeError(f"the frozen backbone's outputs differ by {error:.3g}")
        self.backbone = frozen
        self._frozen_state = state
        return frozen

    def train(self, mode=True):
        """As ``Module.train``; a frozen backbone cannot train."""
        if mode and self.backbone_is_frozen:
            raise RuntimeError("this TimmSED runs a frozen TorchScript backbone: "
                               "build it with timm to train")  # fmt: skip
        return super().train(mode)


def _check_frozen_weights(model, state, prefix, *args):
    """Load hook: a frozen backbone takes no weights; the checkpoint's must
    be those it was frozen from, and are kept for ``state_dict``."""
    if not model.backbone_is_frozen:
        return
    from speechbrain_rfcx.models.torchscript import state_sha1

    start = prefix + "backbone."
    given = {k[len(start) :]: state.pop(k) for k in list(state) if k.startswith(start)}
    if given and state_sha1(given) != model.backbone.weights_sha1:
        raise ValueError(
            "the checkpoint's backbone weights are not those of the frozen "
            "TorchScript backbone (a stale torchscript_backbone file?)"
        )
    model._frozen_state = given


def _add_frozen_weights(model, state, prefix, local_metadata):
    """State dict hook: a frozen backbone's weights, under their names."""
    for name, tensor in (model._frozen_state or {}).items():
        state[f"{prefix}backbone.{name}"] = tensor
