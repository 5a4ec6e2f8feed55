"""Shared model plumbing: the model registry and the ``SEDModel`` base class.

Every model computes its features inside ``forward`` and keeps one contract::

    forward(wavs (B, samples), lens (B,) relative lengths)
        -> {"clip_logits": (B, C), "frame_logits": (B, T', C), "embedding": (B, D)}

plus ``attention_logits`` (B, T', C) when the head pools with attention.

Authors
 * speechbrain-rfcx contributors
"""

import torch
from speechbrain.dataio.dataio import length_to_mask
from speechbrain.lobes.models.convolution import ConvolutionFrontEnd
from torch import nn

from speechbrain_rfcx.features import LogMelFeatures
from speechbrain_rfcx.frames import frame_mask
from speechbrain_rfcx.models.heads import AttentionSEDHead

_MODEL_REGISTRY = {}


def register_model(name):
    """Class decorator adding a model class to the registry under ``name``.

    Arguments
    ---------
    name : str
        Registry name, used by ``create_model``.

    Returns
    -------
    Callable
        The decorator (returns the class unchanged).

    Example
    -------
    >>> @register_model("doc_example_model")
    ... class DocExample(nn.Module):
    ...     pass
    >>> "doc_example_model" in list_models()
    True
    >>> _ = _MODEL_REGISTRY.pop("doc_example_model")
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"model name must be a non-empty string, got {name!r}")

    def decorator(cls):
        known = _MODEL_REGISTRY.get(name)
        if known is not None and _class_id(known) != _class_id(cls):
            raise ValueError(
                f"model name {name!r} is already registered to {_class_id(known)}"
            )
        _MODEL_REGISTRY[name] = cls
        return cls

    return decorator


def _class_id(cls):
    """File stem and qualified name: stable when a module is imported twice
    (e.g. pytest's importlib mode, notebook reloads)."""
    return f"{cls.__module__.rsplit('.', 1)[-1]}.{cls.__qualname__}"


def create_model(name, **kwargs):
    """Builds the registered model ``name`` with keyword arguments ``kwargs``.

    Arguments
    ---------
    name : str
        A name from ``list_models()``.
    **kwargs
        Passed to the model class.

    Returns
    -------
    torch.nn.Module
        The model.

    Example
    -------
    >>> model = create_model("transformer_sed", n_classes=3, sample_rate=16000,
    ...     n_mels=16, n_fft=256, hop_length=128, d_model=16, nhead=2,
    ...     num_layers=1, d_ffn=32)
    >>> model(torch.randn(1, 4000))["clip_logits"].shape
    torch.Size([1, 3])
    """
    if name not in _MODEL_REGISTRY:
        raise ValueError(f"unknown model {name!r}; available: {list_models()}")
    return _MODEL_REGISTRY[name](**kwargs)


def list_models():
    """Sorted names of the registered models.

    Returns
    -------
    list of str
        The names.

    Example
    -------
    >>> "timm_sed" in list_models()
    True
    """
    return sorted(_MODEL_REGISTRY)


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


class SEDModel(nn.Module):
    """Base class: features, input normalisation, masking and the SED head.

    ``forward`` computes log-mel features, normalises each mel bin with a
    BatchNorm (``bn0``, as PANNs; batch-independent in eval mode), applies
    ``feature_augment`` in training mode, zeroes the padded waveform samples
    and feature frames (so what the padding contains never changes the output),
    adds the frequency channel if asked, and calls ``encode`` (subclasses) to
    get frame features (B, T', D). The head pools them over the valid frames.

    Subclasses set ``self.head`` (an ``AttentionSEDHead``) and implement
    ``encode(feats, rel_lens) -> (B, T', D)`` where ``feats`` is (B, C_in, T, F).
    Convolutional subclasses set ``time_reduction`` (feature frames per
    output frame), declaring that each output frame depends on nearby audio
    only, so ``speechbrain_rfcx.inference`` may score a whole recording in one
    pass and pool windows on its frames instead of running overlapping
    windows.

    Arguments
    ---------
    n_classes : int
        Number of classes C.
    sample_rate, n_fft, hop_length, n_mels, f_min, f_max, frequency_channel, top_db
        Feature options, see ``speechbrain_rfcx.features.LogMelFeatures``.
    pooling : str
        Clip pooling of the head (see ``AttentionSEDHead``).
    dropout : float
        Main dropout rate of the model.
    feature_augment : torch.nn.Module, optional
        Applied to the normalised (B, T, F) log-mel in training mode only; must
        keep the shape (e.g. SpeechBrain's ``SpectrogramDrop``).
    """

    def __init__(
        self,
        n_classes=24,
        sample_rate=48000,
        n_fft=2048,
        hop_length=512,
        n_mels=128,
        f_min=50.0,
        f_max=16000.0,
        frequency_channel=False,
        top_db=None,
        pooling="attention_max",
        dropout=0.5,
        feature_augment=None,
    ):
        super().__init__()
        if int(n_classes) != n_classes or n_classes <= 0:
            raise ValueError(f"n_classes must be a positive integer, got {n_classes!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        if feature_augment is not None and not callable(feature_augment):
            raise ValueError(
                f"feature_augment must be a module or callable, got {feature_augment!r}"
            )
        self.n_classes = int(n_classes)
        self.pooling = pooling
        self.dropout_rate = dropout
        self.features = LogMelFeatures(
            sample_rate=sample_rate,
            n_fft=n_fft,
            hop_length=hop_length,
            n_mels=n_mels,
            f_min=f_min,
            f_max=f_max,
            frequency_channel=frequency_channel,
            top_db=top_db,
        )
        self.bn0 = nn.BatchNorm1d(self.features.n_mels)
        self.feature_augment = feature_augment

    time_reduction = None  # set by frame-local (convolutional) subclasses

    @property
    def frame_hop(self):
        """Samples per output frame of a frame-local model (None otherwise).

        Example
        -------
        >>> model = create_model("panns_cnn14", n_classes=2, sample_rate=16000,
        ...     n_fft=256, hop_length=128, n_mels=32, channels=(4, 8))
        >>> model.frame_hop  # hop_length * 2 (one 2x2 pooling)
        256
        """
        if self.time_reduction is None or self.features.top_db is not None:
            return None  # top_db floors each input at its own maximum
        return self.features.hop_length * self.time_reduction

    @property
    def embedding_dim(self):
        """Size D of the ``embedding`` output (the head's input width)."""
        return self.head.cla.in_channels

    @property
    def in_channels(self):
        """Channels of the features given to ``encode`` (1, or 2 with frequency)."""
        return self.features.in_channels

    def compute_features(self, wavs, lens=None):
        """Waveforms -> normalised features (B, C_in, T, F) and relative lengths.

        Arguments
        ---------
        wavs : torch.Tensor
            (B, samples) waveforms.
        lens : torch.Tensor, optional
            (B,) relative lengths in (0, 1].

        Returns
        -------
        feats : torch.Tensor
            (B, C_in, T, F) features, padded frames set to zero.
        lens : torch.Tensor
            (B,) the checked relative lengths (all ones for None): every
            downsampled sequence of the model takes its valid frames from
            them with ``speechbrain_rfcx.frames.frame_mask``, as the losses do.
        """
        lens = check_inputs(wavs, lens)
        n_samples = wavs.shape[1]
        valid_samples = torch.round(lens.float() * n_samples).long()
        if bool((valid_samples < n_samples).any()):
            mask = length_to_mask(valid_samples, max_len=n_samples).to(wavs.dtype)
            wavs = wavs * mask
        feats = self.features.log_mel(wavs)  # (B, T, F)
        n_frames = feats.shape[1]
        frame_lens = self.features.frame_lengths(lens, n_samples)
        feats = self.bn0(feats.transpose(1, 2)).transpose(1, 2)
        if self.training and self.feature_augment is not None:
            augmented = self.feature_augment(feats)
            if augmented.shape != feats.shape:
                raise ValueError(
                    "feature_augment must keep the (batch, time, freq) shape "
                    f"{tuple(feats.shape)}, got {tuple(augmented.shape)}"
                )
            feats = augmented
        valid = length_to_mask(frame_lens, max_len=n_frames, dtype=feats.dtype)
        feats = feats * valid.unsqueeze(-1)
        if self.features.frequency_channel:
            feats = self.features.add_frequency_channel(feats)
        else:
            feats = feats.unsqueeze(1)
        return feats, lens

    def encode(self, feats, rel_lens):
        """(B, C_in, T, F) features -> (B, T', D) frame features (subclasses)."""
        raise NotImplementedError

    def forward(self, wavs, lens=None):
        """Runs the model.

        Arguments
        ---------
        wavs : torch.Tensor
            (B, samples) waveforms at ``sample_rate``.
        lens : torch.Tensor, optional
            (B,) relative lengths in (0, 1]; None means all full length.

        Returns
        -------
        dict
            ``clip_logits`` (B, C), ``frame_logits`` (B, T', C),
            ``embedding`` (B, D): the mean of the head input over valid
            frames, and ``attention_logits`` (B, T', C) with attention pooling.
        """
        feats, rel_lens = self.compute_features(wavs, lens)
        frames = self.encode(feats, rel_lens)
        mask = frame_mask(rel_lens, frames.shape[1])
        frame_logits, attention_logits = self.head.frame_outputs(frames)
        outputs = {
            "clip_logits": self.head.pool(frame_logits, attention_logits, mask),
            "frame_logits": frame_logits,
            "embedding": masked_mean(frames, mask),
        }
        if attention_logits is not None:
            outputs["attention_logits"] = attention_logits
        return outputs


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
