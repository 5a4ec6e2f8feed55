"""Tests of the log-mel front end."""

import math

import pytest
import torch

from speechbrain_rfcx.features import LogMelFeatures

SR = 16000


def small_features(**kwargs):
    options = dict(sample_rate=SR, n_fft=1024, hop_length=256, n_mels=40)
    options.update(kwargs)
    return LogMelFeatures(**options)


def slaney_hz_to_mel(hz):
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    if hz < 1000.0:
        return hz / (200.0 / 3.0)
    return 15.0 + math.log(hz / 1000.0) / (math.log(6.4) / 27.0)


def slaney_mel_to_hz(mel):
    if mel < 15.0:
        return mel * (200.0 / 3.0)
    return 1000.0 * math.exp((mel - 15.0) * math.log(6.4) / 27.0)


def mel_centre_hz(k, n_mels, f_min, f_max):
    """Centre frequency of mel bin k: n_mels + 2 points evenly spaced in mel."""
    low, high = slaney_hz_to_mel(f_min), slaney_hz_to_mel(f_max)
    return slaney_mel_to_hz(low + (high - low) * (k + 1) / (n_mels + 1))


def test_default_frame_count_of_one_minute_is_5626():
    feats = LogMelFeatures()
    assert feats.n_frames(60 * 48000) == 5626
    assert (feats.sample_rate, feats.n_fft, feats.hop_length, feats.n_mels) == (
        48000,
        2048,
        512,
        128,
    )
    assert (feats.f_min, feats.f_max) == (50.0, 16000.0)


@pytest.mark.parametrize("n_samples", [48000, 48001, 48511, 48512, 50000])
def test_n_frames_matches_computed_features(n_samples):
    feats = LogMelFeatures()
    out = feats(torch.randn(1, n_samples))
    # centred frames: one frame per full hop plus the one at t = 0
    assert out.shape == (1, n_samples // 512 + 1, 128)
    assert out.shape[1] == feats.n_frames(n_samples)


@pytest.mark.parametrize("k", [3, 20, 35])
def test_pure_tone_peaks_at_its_mel_bin(k):
    feats = small_features(f_min=50.0, f_max=8000.0)
    freq = mel_centre_hz(k, 40, 50.0, 8000.0)
    t = torch.arange(SR) / SR
    tone = 0.5 * torch.sin(2 * math.pi * freq * t)
    spectrum = feats(tone.unsqueeze(0))[0].mean(0)
    assert int(spectrum.argmax()) == k


def test_louder_input_adds_exactly_20_db_per_factor_10():
    feats = small_features()
    wav = torch.randn(1, 8000)
    quiet, loud = feats(wav), feats(10.0 * wav)
    assert torch.allclose(loud - quiet, torch.full_like(quiet, 20.0), atol=1e-3)


def test_silence_sits_at_the_power_floor():
    feats = small_features(amin=1e-8)
    assert torch.equal(feats(torch.zeros(2, 4000)), torch.full((2, 16, 40), -80.0))


def test_frequency_channel_holds_scaled_bin_index():
    feats = small_features(frequency_channel=True)
    wav = torch.randn(3, 4000)
    out = feats(wav)
    assert out.shape == (3, 2, 16, 40)
    assert feats.in_channels == 2
    expected = torch.arange(40, dtype=torch.float32) / 39
    assert torch.allclose(out[:, 1], expected.expand(3, 16, 40))
    assert out[:, 1].min() == 0.0 and out[:, 1].max() == 1.0
    assert torch.equal(out[:, 0], feats.log_mel(wav))


def test_batch_equals_single_items():
    feats = small_features(top_db=60.0)
    torch.manual_seed(0)
    wavs = torch.randn(3, 6000) * torch.tensor([[1.0], [0.01], [30.0]])
    batch = feats(wavs)
    for i in range(3):
        assert torch.allclose(batch[i], feats(wavs[i : i + 1])[0], atol=1e-3)


def test_top_db_floors_each_item_at_its_own_peak():
    feats = small_features(top_db=30.0)
    wavs = torch.zeros(2, 4000)
    wavs[0, 1000:1100] = 1.0  # a click: most frames are silent
    wavs[1] = 1e-3 * torch.randn(4000)
    out = feats(wavs)
    plain = small_features()(wavs)
    for i in range(2):
        peak = plain[i].max()
        assert torch.isclose(out[i].max(), peak)
        assert out[i].min() >= peak - 30.0 - 1e-4
        kept = plain[i] >= peak - 30.0
        assert torch.equal(out[i][kept], plain[i][kept])
    # the click's silent frames sit exactly at the floor
    assert torch.isclose(out[0].min(), plain[0].max() - 30.0)


def test_frame_lengths_of_relative_lengths():
    feats = LogMelFeatures(sample_rate=SR, n_fft=400, hop_length=160, n_mels=40)
    lens = torch.tensor([1.0, 0.5, 0.2, 1e-6])
    # valid samples 16000, 8000, 3200, 0 -> floor(samples / 160) + 1
    assert feats.frame_lengths(lens, 16000).tolist() == [101, 51, 21, 1]


def test_f_max_is_clipped_to_nyquist():
    assert LogMelFeatures(sample_rate=SR, n_fft=512, f_max=16000.0).f_max == 8000.0


def test_works_under_inference_mode():
    feats = small_features()
    wav = torch.randn(2, 4000)
    with torch.inference_mode():
        inferred = feats(wav)
    # the inference path (scipy's FFT) and the training one (torch.stft)
    torch.testing.assert_close(inferred, feats(wav), atol=1e-3, rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(n_fft=0), "n_fft"),
        (dict(hop_length=1.5), "hop_length"),
        (dict(n_mels=-2), "n_mels"),
        (dict(f_min=9000.0), "f_min"),
        (dict(top_db=-1.0), "top_db"),
    ],
)
def test_bad_options_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        small_features(**kwargs)


def test_bad_waveforms_raise():
    feats = small_features()
    with pytest.raises(ValueError, match="wavs"):
        feats(torch.zeros(1, 1, 4000))
    with pytest.raises(ValueError, match="samples"):
        feats(torch.zeros(1, 100))


@pytest.mark.parametrize("f_max", [8000.0, 3000.0])
def test_equals_torchaudio_mel_spectrogram_in_db(f_max):
    """Same features as torchaudio's MelSpectrogram (Slaney, power 2, centred,
    reflect padding), although unused high STFT bins are skipped."""
    import torchaudio

    features = small_features(f_max=f_max)
    reference = torchaudio.transforms.MelSpectrogram(
        sample_rate=SR,
        n_fft=1024,
        hop_length=256,
        f_min=50.0,
        f_max=f_max,
        n_mels=40,
        norm="slaney",
        mel_scale="slaney",
    )
    wavs = torch.randn(2, SR, generator=torch.Generator().manual_seed(0))
    expected = 10 * torch.log10(reference(wavs).clamp(min=1e-10)).transpose(1, 2)
    torch.testing.assert_close(features.log_mel(wavs), expected, atol=1e-3, rtol=1e-4)
    if f_max < SR / 2:
        assert features.filterbank.shape[0] < 1024 // 2 + 1


@pytest.mark.parametrize("n_samples", [1025, 48000 * 3 + 7])
def test_cpu_fft_path_equals_torch_stft(n_samples):
    """At inference on the CPU (no gradients) the STFT runs in scipy blocks;
    with gradients enabled it is ``torch.stft``: the same features."""
    feats = LogMelFeatures()  # 48 kHz, n_fft 2048, hop 512
    wavs = torch.randn(2, n_samples, generator=torch.Generator().manual_seed(3))
    wavs[1] *= 1e-3
    with torch.no_grad():
        fast = feats.log_mel(wavs)
    needs_grad = wavs.clone().requires_grad_()
    reference = feats.log_mel(needs_grad)
    assert reference.requires_grad and not fast.requires_grad
    torch.testing.assert_close(fast, reference.detach(), atol=1e-3, rtol=1e-5)
    reference.sum().backward()  # gradients still reach the waveforms
    assert needs_grad.grad is not None and torch.isfinite(needs_grad.grad).all()
