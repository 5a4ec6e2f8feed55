"""``SEDModel``: the base class of every model, and the model contract.

Every model computes its features inside ``forward`` and keeps one contract::

    forward(wavs (B, samples), lens (B,) relative lengths)
        -> {"clip_logits": (B, C), "frame_logits": (B, T', C), "embedding": (B, D)}

plus ``attention_logits`` (B, T', C) when the head pools with attention.

Authors
 * speechbrain-rfcx contributors
"""

import torch
from speechbrain.dataio.dataio import length_to_mask
from torch import nn

from speechbrain_rfcx.features import LogMelFeatures
from speechbrain_rfcx.frames import frame_mask
from speechbrain_rfcx.models.blocks import check_inputs, masked_mean


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
        >>> from speechbrain_rfcx.models import create_model
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
