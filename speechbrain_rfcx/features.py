"""Log-mel front end shared by every model (computed inside the model).

The defaults reproduce the features of the original RFCX research: 48 kHz audio,
2048-point Hann STFT with hop 512 (centred frames), 128 mel bins between 50 Hz and
16 kHz, i.e. 5,626 frames for a 60 s recording. The mel filterbank comes from
torchaudio (Slaney mel scale and area normalisation, as librosa and PANNs use).
Power is converted to decibels, ``10 * log10(max(power, amin))``, a fixed
transform: one file gives the same features alone or inside a batch.

Authors
 * speechbrain-rfcx contributors
"""

import numpy as np
import torch
import torchaudio
from torch import nn

_FFT_BLOCK = 64  # frames per FFT call on the CPU: a block stays in cache


class LogMelFeatures(nn.Module):
    """Waveforms (B, samples) to log-mel features (B, T, F) in decibels.

    Arguments
    ---------
    sample_rate : int
        Sampling rate of the input waveforms (Hz).
    n_fft : int
        STFT size (also the Hann window length).
    hop_length : int
        STFT hop in samples. Frames are centred, so ``n_frames(n) = n // hop + 1``.
    n_mels : int
        Number of mel bins F.
    f_min : float
        Lowest filterbank frequency (Hz).
    f_max : float
        Highest filterbank frequency (Hz); clipped to the Nyquist frequency.
    frequency_channel : bool
        If True, ``forward`` returns (B, 2, T, F): the log-mel and, as a second
        channel, the mel-bin index scaled to 0..1 (frequency awareness).
    top_db : float, optional
        If given, each item is floored at its own maximum minus ``top_db`` dB
        (per item, never across the batch).
    amin : float
        Power floor before the logarithm.

    Example
    -------
    >>> feats = LogMelFeatures(sample_rate=16000, n_fft=512, hop_length=160, n_mels=40)
    >>> feats(torch.randn(2, 16000)).shape
    torch.Size([2, 101, 40])
    >>> feats.n_frames(16000)
    101
    >>> LogMelFeatures(16000, 512, 160, 40, frequency_channel=True)(
    ...     torch.randn(2, 1600)
    ... ).shape
    torch.Size([2, 2, 11, 40])
    """

    def __init__(
        self,
        sample_rate=48000,
        n_fft=2048,
        hop_length=512,
        n_mels=128,
        f_min=50.0,
        f_max=16000.0,
        frequency_channel=False,
        top_db=None,
        amin=1e-10,
    ):
        super().__init__()
        for field, value in (
            ("sample_rate", sample_rate),
            ("n_fft", n_fft),
            ("hop_length", hop_length),
            ("n_mels", n_mels),
        ):
            if int(value) != value or value <= 0:
                raise ValueError(f"{field} must be a positive integer, got {value!r}")
        nyquist = sample_rate / 2
        f_max = min(float(f_max), nyquist)
        if not 0 <= f_min < f_max:
            raise ValueError(
                f"f_min must satisfy 0 <= f_min < f_max (= {f_max} Hz after "
                f"clipping to Nyquist), got f_min={f_min!r}"
            )
        if top_db is not None and top_db <= 0:
            raise ValueError(f"top_db must be positive or None, got {top_db!r}")
        if amin <= 0:
            raise ValueError(f"amin must be positive, got {amin!r}")
        self.sample_rate = int(sample_rate)
        self.n_fft = int(n_fft)
        self.hop_length = int(hop_length)
        self.n_mels = int(n_mels)
        self.f_min = float(f_min)
        self.f_max = f_max
        self.frequency_channel = bool(frequency_channel)
        self.top_db = top_db
        self.amin = amin
        filterbank = torchaudio.functional.melscale_fbanks(
            n_freqs=self.n_fft // 2 + 1,
            f_min=self.f_min,
            f_max=self.f_max,
            n_mels=self.n_mels,
            sample_rate=self.sample_rate,
            norm="slaney",
            mel_scale="slaney",
        )  # (n_freqs, n_mels)
        # STFT bins above the last filter's edge are never used: skip them.
        used = int(filterbank.abs().sum(1).nonzero().max()) + 1
        # Both follow from the options: kept out of checkpoints.
        self.register_buffer("filterbank", filterbank[:used], persistent=False)
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)

    @property
    def in_channels(self):
        """Number of channels of ``forward``'s output (1 or 2)."""
        return 2 if self.frequency_channel else 1

    def forward(self, wavs):
        """Computes the features.

        Arguments
        ---------
        wavs : torch.Tensor
            (B, samples) waveforms.

        Returns
        -------
        torch.Tensor
            (B, T, F) log-mel, or (B, 2, T, F) with ``frequency_channel=True``.
        """
        feats = self.log_mel(wavs)
        if self.frequency_channel:
            feats = self.add_frequency_channel(feats)
        return feats

    def log_mel(self, wavs):
        """(B, samples) waveforms -> (B, T, F) log-mel in dB (float32).

        Arguments
        ---------
        wavs : torch.Tensor
            (B, samples) waveforms.

        Returns
        -------
        torch.Tensor
            (B, T, F) log-mel features.

        Example
        -------
        >>> feats = LogMelFeatures(16000, 512, 256, 32)
        >>> feats.log_mel(torch.zeros(1, 2560)).unique()
        tensor([-100.])
        """
        if wavs.dim() != 2:
            raise ValueError(
                f"wavs must have shape (batch, samples), got {tuple(wavs.shape)}"
            )
        if wavs.shape[1] <= self.n_fft // 2:
            raise ValueError(
                f"wavs has {wavs.shape[1]} samples; at least n_fft // 2 + 1 = "
                f"{self.n_fft // 2 + 1} are needed"
            )
        # STFTs in half precision are inaccurate: always compute in float32.
        with torch.autocast(device_type=wavs.device.type, enabled=False):
            # inference on the CPU: scipy's FFT (a training step's short
            # crops are as fast through torch.stft, which spreads the batch
            # over torch's threads)
            if wavs.device.type == "cpu" and not torch.is_grad_enabled():
                mel = self._mel_power_on_cpu(wavs.float())
            else:
                spectrum = torch.stft(
                    wavs.float(),
                    self.n_fft,
                    hop_length=self.hop_length,
                    window=self.window,
                    center=True,
                    pad_mode="reflect",
                    return_complex=True,
                )[:, : self.filterbank.shape[0]]  # (B, used bins, T)
                power = spectrum.real.square() + spectrum.imag.square()  # no sqrt
                mel = torch.matmul(power.transpose(1, 2), self.filterbank)
            feats = 10.0 * torch.log10(torch.clamp(mel, min=self.amin))
            if self.top_db is not None:
                floor = feats.amax(dim=(1, 2), keepdim=True) - self.top_db
                feats = torch.maximum(feats, floor)
        return feats

    def _mel_power_on_cpu(self, wavs):
        """(B, samples) float32 CPU waveforms -> (B, T, F) mel power: the same
        centred, reflect-padded Hann STFT as ``torch.stft`` and the same
        filterbank, computed with scipy's FFT a block of frames at a time
        (about 3x faster than ``torch.stft`` on a CPU core; equal to it
        within float rounding)."""
        import scipy.fft  # here: its import is only paid on the CPU path

        pad = self.n_fft // 2  # < samples, checked by log_mel
        padded = np.pad(wavs.numpy(), ((0, 0), (pad, pad)), mode="reflect")
        frames = np.lib.stride_tricks.sliding_window_view(padded, self.n_fft, axis=1)
        frames = frames[:, :: self.hop_length]  # (B, T, n_fft), a view
        window = self.window.float().numpy()
        used = self.filterbank.shape[0]
        power = np.empty(frames.shape[:2] + (used,), dtype=np.float32)
        for item, item_frames in enumerate(frames):
            for start in range(0, item_frames.shape[0], _FFT_BLOCK):
                block = slice(start, start + _FFT_BLOCK)
                spectrum = scipy.fft.rfft(item_frames[block] * window)[:, :used]
                np.add(spectrum.real**2, spectrum.imag**2, out=power[item, block])
        # torch's matmul, whose threads are torch's: numpy's BLAS would start
        # its own in every scoring thread
        return torch.matmul(torch.from_numpy(power), self.filterbank.float())

    def add_frequency_channel(self, feats):
        """(B, T, F) -> (B, 2, T, F): appends the mel-bin index scaled to 0..1.

        Arguments
        ---------
        feats : torch.Tensor
            (B, T, F) features.

        Returns
        -------
        torch.Tensor
            (B, 2, T, F): channel 0 is ``feats``, channel 1 is ``f / (F - 1)``.

        Example
        -------
        >>> feats = LogMelFeatures(n_mels=3)
        >>> feats.add_frequency_channel(torch.zeros(1, 2, 3))[0, 1]
        tensor([[0.0000, 0.5000, 1.0000],
                [0.0000, 0.5000, 1.0000]])
        """
        batch, n_frames, n_bins = feats.shape
        coordinate = torch.linspace(
            0.0, 1.0, n_bins, device=feats.device, dtype=feats.dtype
        )
        coordinate = coordinate.expand(batch, n_frames, n_bins)
        return torch.stack([feats, coordinate], dim=1)

    def n_frames(self, n_samples):
        """Number of feature frames for ``n_samples`` input samples.

        Arguments
        ---------
        n_samples : int
            Number of samples.

        Returns
        -------
        int
            ``n_samples // hop_length + 1`` (centred frames).

        Example
        -------
        >>> LogMelFeatures().n_frames(60 * 48000)
        5626
        """
        return int(n_samples) // self.hop_length + 1

    def frame_lengths(self, lens, n_samples):
        """Maps relative lengths to numbers of valid feature frames.

        A frame is valid when its centre lies within the valid samples, so a
        full-length item (``lens == 1``) has ``n_frames(n_samples)`` valid frames.

        Arguments
        ---------
        lens : torch.Tensor
            (B,) relative lengths in (0, 1] (SpeechBrain convention).
        n_samples : int
            Padded number of samples of the batch.

        Returns
        -------
        torch.Tensor
            (B,) long tensor of valid frame counts in [1, n_frames(n_samples)].

        Example
        -------
        >>> feats = LogMelFeatures(16000, 512, 160, 40)
        >>> feats.frame_lengths(torch.tensor([1.0, 0.5]), 16000)
        tensor([101,  51])
        """
        valid_samples = torch.round(lens.float() * n_samples).long()
        frames = torch.div(valid_samples, self.hop_length, rounding_mode="floor") + 1
        return frames.clamp(1, self.n_frames(n_samples))

    def extra_repr(self):
        """Summary shown by ``print(module)``."""
        return (
            f"sample_rate={self.sample_rate}, n_fft={self.n_fft}, "
            f"hop_length={self.hop_length}, n_mels={self.n_mels}, "
            f"f_min={self.f_min}, f_max={self.f_max}, "
            f"frequency_channel={self.frequency_channel}, top_db={self.top_db}"
        )
