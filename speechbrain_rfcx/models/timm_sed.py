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
        **kwargs,
    ):
        super().__init__(dropout=dropout, **kwargs)
        self.channels_last = channels_last
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
        if frequency_pooling not in ("mean", "flatten"):
            raise ValueError(
                f"frequency_pooling must be 'mean' or 'flatten', got {frequency_pooling!r}"
            )
        frequency_bins = None
        if frequency_pooling == "flatten":
            # in eval mode, so the probe leaves the BatchNorm statistics
            # (pretrained ones included) as they are
            self.backbone.eval()
            with torch.no_grad():
                probe = torch.zeros(1, self.in_channels, 64, self.features.n_mels)
                frequency_bins = self.backbone.forward_features(probe).shape[3]
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
        return self.neck(self.backbone.forward_features(feats))
