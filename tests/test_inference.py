"""Whole-recording inference: streaming, stitching, TTA, ensembles.

A deterministic stand-in model replaces a trained one: its frame logits are
the amplitude of one DFT bin per class in non-overlapping 0.1 s frames, so
planted tones give exactly known frame probabilities and event times.
"""

import math

import numpy as np
import pytest
import soundfile as sf
import torch

import speechbrain_rfcx.inference as inference
from speechbrain_rfcx.detections.events import frames_to_detections
from speechbrain_rfcx.inference import (
    average_results,
    iter_window_batches,
    score_file,
    score_recordings,
    window_outputs,
)
from speechbrain_rfcx.models.heads import AttentionSEDHead

RATE = 1000  # Hz
FRAME = 100  # samples: 0.1 s frames
FREQS = (100.0, 200.0, 300.0)  # class c <-> DFT bin FREQS[c] / 10 of a frame


class BandEnergy(torch.nn.Module):
    """Frame logit of class c: 20 * (amplitude of its tone in the frame - 0.4)."""

    def forward(self, wavs, lens=None):
        n_frames = wavs.shape[1] // FRAME
        frames = wavs[:, : n_frames * FRAME].reshape(wavs.shape[0], n_frames, FRAME)
        amplitude = torch.fft.rfft(frames).abs() * 2 / FRAME
        bins = [int(f * FRAME / RATE) for f in FREQS]
        logits = 20.0 * (amplitude[..., bins] - 0.4)
        return {
            "clip_logits": logits.amax(1),
            "frame_logits": logits,
            "embedding": logits.mean(1),
        }


class FrameLocalBandEnergy(BandEnergy):
    """``BandEnergy`` declared frame-local (each 0.1 s frame sees only itself),
    with a max-pooling head: whole-recording passes must equal windows."""

    frame_hop = FRAME

    def __init__(self):
        super().__init__()
        self.head = AttentionSEDHead(1, len(FREQS), pooling="max")
        self.samples_seen = 0

    def forward(self, wavs, lens=None):
        self.samples_seen += wavs.numel()
        return super().forward(wavs, lens)


class WindowStart(torch.nn.Module):
    """Every frame of a window gets the logit of the window's first sample."""

    def __init__(self, n_frames=20):
        super().__init__()
        self.n_frames = n_frames

    def forward(self, wavs, lens=None):
        first = wavs[:, :1]
        logits = torch.logit(first.clamp(1e-6, 1 - 1e-6))
        return {
            "clip_logits": logits,
            "frame_logits": logits[:, None, :].expand(-1, self.n_frames, 1),
        }


def write_tones(path, duration, events, amplitude=0.8):
    """A recording with tone ``species`` from ``t0`` to ``t1`` (s) per event."""
    t = np.arange(int(round(duration * RATE))) / RATE
    wav = np.zeros_like(t)
    for species, t0, t1 in events:
        inside = (t >= t0 - 1e-9) & (t < t1 - 1e-9)
        wav += inside * amplitude * np.sin(2 * np.pi * FREQS[species] * t)
    sf.write(path, wav.astype("float32"), RATE, subtype="FLOAT")
    return path


def events_of(result, threshold=0.5):
    return [
        (d.species_id, d.t_min, d.t_max)
        for d in frames_to_detections(
            result["frame_probs"], result["frame_times"], threshold=threshold
        )
    ]


def assert_events(found, expected, tolerance):
    assert len(found) == len(expected), found
    for (s, t0, t1), (es, e0, e1) in zip(found, expected):
        assert s == es
        assert abs(t0 - e0) <= tolerance and abs(t1 - e1) <= tolerance, (
            found,
            expected,
        )


def record_reads(monkeypatch):
    """The (start, duration) of every ``read_segment`` call made by inference."""
    requested = []
    real_read = inference.read_segment

    def recording_read(path, start=0.0, duration=None, sample_rate=None):
        requested.append((start, duration))
        return real_read(path, start, duration, sample_rate)

    monkeypatch.setattr(inference, "read_segment", recording_read)
    return requested


def test_planted_events_recovered_exactly(tmp_path):
    """Frame-aligned tones, 2 s windows every 1 s: events at the planted times."""
    planted = [(0, 1.0, 2.5), (2, 4.2, 4.8), (1, 5.5, 7.0)]
    path = write_tones(tmp_path / "a.wav", 7.0, planted)
    result = score_file(BandEnergy(), str(path), RATE, window=2.0, hop=1.0)
    assert result["frame_probs"].shape == (70, 3)
    np.testing.assert_allclose(result["frame_times"], (np.arange(70) + 0.5) * 0.1)
    assert result["duration"] == pytest.approx(7.0)
    # the frame grid is exact here, so events match to float precision
    assert_events(events_of(result), sorted(planted, key=lambda e: e[1]), 1e-6)
    assert result["clip_probs"].shape == (3,)
    assert (result["clip_probs"] > 0.99).all()


def test_stitching_is_the_mean_of_overlapping_windows(tmp_path):
    """Each frame is the mean over the windows covering it (hand-computed)."""
    n = 5000  # 5 s ramp: sample value = its position in [0, 1)
    sf.write(
        tmp_path / "ramp.wav",
        (np.arange(n) / n).astype("float32"),
        RATE,
        subtype="FLOAT",
    )
    window, hop, n_frames = 2.0, 0.6, 20  # 0.1 s frames, hop of 6 frames
    result = score_file(
        WindowStart(n_frames),
        str(tmp_path / "ramp.wav"),
        RATE,
        window,
        hop,
        batch_size=3,
    )
    starts = [0, 600, 1200, 1800, 2400, 3000]  # last window ends at 5 s
    expected = []
    for frame in range(50):
        values = [s / n for s in starts if s // FRAME <= frame < s // FRAME + n_frames]
        expected.append(np.mean(values))
    np.testing.assert_allclose(result["frame_probs"][:, 0], expected, atol=1e-5)
    assert result["clip_probs"][0] == pytest.approx(3000 / n, abs=1e-5)


def test_short_recording_is_one_padded_window(tmp_path):
    path = write_tones(tmp_path / "short.wav", 1.3, [(1, 0.5, 1.0)])
    windows = list(iter_window_batches(str(path), RATE, 2.0, 1.0))
    assert len(windows) == 1
    starts, batch, lens = windows[0]
    assert starts.tolist() == [0.0] and batch.shape == (1, 2000)
    assert lens.tolist() == pytest.approx([0.65])
    assert float(batch[0, 1300:].abs().max()) == 0.0
    result = score_file(BandEnergy(), str(path), RATE, 2.0, 1.0)
    assert result["frame_probs"].shape == (13, 3)  # centres below 1.3 s
    assert_events(events_of(result), [(1, 0.5, 1.0)], 1e-6)


def test_long_recording_is_streamed_in_small_chunks(tmp_path, monkeypatch):
    """A 10-minute file: reads never exceed one chunk of windows."""
    duration = 600.0
    path = write_tones(tmp_path / "long.wav", duration, [(2, 500.0, 503.0)])
    requested = record_reads(monkeypatch)
    result = score_file(BandEnergy(), str(path), RATE, 2.0, 1.0, batch_size=8)
    n_windows = 599
    assert len(requested) == math.ceil(n_windows / 8)
    assert max(d for _, d in requested) == pytest.approx(2.0 + 7 * 1.0)
    covered = sorted(requested)
    assert covered[0][0] == 0.0
    assert covered[-1][0] + covered[-1][1] == pytest.approx(duration)
    assert_events(events_of(result), [(2, 500.0, 503.0)], 1e-6)
    # chunking does not change the result
    monkeypatch.undo()
    other = score_file(BandEnergy(), str(path), RATE, 2.0, 1.0, batch_size=64)
    np.testing.assert_allclose(other["frame_probs"], result["frame_probs"])


def test_tta_keeps_shapes_and_event_times(tmp_path):
    """Shift and speed 0.9/1.1: same frame grid, events within one frame."""
    planted = [(0, 2.0, 3.0)]
    path = write_tones(tmp_path / "a.wav", 6.0, planted)
    plain = score_file(BandEnergy(), str(path), RATE, 2.0, 1.0)
    shifted = score_file(BandEnergy(), str(path), RATE, 2.0, 1.0, tta=("shift",))
    # the stand-in is shift-invariant on a frame-aligned grid: identical output
    np.testing.assert_allclose(shifted["frame_probs"], plain["frame_probs"], atol=1e-6)

    class Loudness(torch.nn.Module):  # speed-robust: broadband frame energy
        def forward(self, wavs, lens=None):
            frames = wavs[:, : wavs.shape[1] // FRAME * FRAME].reshape(
                wavs.shape[0], -1, FRAME
            )
            logits = 20.0 * (frames.abs().amax(2, keepdim=True) - 0.4)
            return {"clip_logits": logits.amax(1), "frame_logits": logits}

    plain = score_file(Loudness(), str(path), RATE, 2.0, 1.0)
    augmented = score_file(
        Loudness(), str(path), RATE, 2.0, 1.0, tta=("shift", 0.9, 1.1)
    )
    assert augmented["frame_probs"].shape == plain["frame_probs"].shape
    np.testing.assert_allclose(augmented["frame_times"], plain["frame_times"])
    assert_events(events_of(plain), [(0, 2.0, 3.0)], 1e-6)
    assert_events(events_of(augmented), [(0, 2.0, 3.0)], 0.1 + 1e-6)
    assert augmented["clip_probs"][0] == pytest.approx(plain["clip_probs"][0], abs=0.01)


def test_speed_tta_maps_frames_back_to_original_time():
    """A loud frame k, played at speed s, is mapped back to frame k."""

    class FrameLoudness(torch.nn.Module):
        def forward(self, wavs, lens=None):
            frames = wavs.reshape(wavs.shape[0], -1, FRAME).abs().amax(2, keepdim=True)
            return {"clip_logits": frames.amax(1), "frame_logits": 20 * (frames - 0.4)}

    wav = torch.zeros(1, 2000)
    wav[0, 1000:1100] = torch.sin(torch.arange(100) * 2 * math.pi * 0.1)  # frame 10
    for speed in (0.9, 1.1):
        out = window_outputs(FrameLoudness(), wav, torch.ones(1), speed=speed)
        probs = out["frame_probs"][0, :, 0]
        assert int(probs.argmax()) == 10, (speed, probs)
    out = window_outputs(FrameLoudness(), wav, torch.ones(1), speed=0.9)
    # at 0.9 the last 10 % of the window is cropped: frames 18, 19 are invalid
    assert out["frame_valid"][0].tolist() == [True] * 18 + [False] * 2


def test_bad_tta_and_window_are_rejected(tmp_path):
    path = write_tones(tmp_path / "a.wav", 3.0, [])
    with pytest.raises(ValueError, match="tta item 'reverse'"):
        score_file(BandEnergy(), str(path), RATE, 2.0, 1.0, tta=("reverse",))
    with pytest.raises(ValueError, match="window"):
        next(iter_window_batches(str(path), RATE, 0.0, 1.0))


def test_ensemble_is_the_mean(tmp_path):
    path = write_tones(tmp_path / "a.wav", 5.0, [(0, 1.0, 2.0)])

    class Scaled(BandEnergy):
        def __init__(self, scale):
            super().__init__()
            self.scale = scale

        def forward(self, wavs, lens=None):
            out = super().forward(wavs, lens)
            return {k: v * self.scale for k, v in out.items()}

    results = [score_file(Scaled(s), str(path), RATE, 2.0, 1.0) for s in (0.05, 1.0)]
    mean = average_results(results)
    np.testing.assert_allclose(
        mean["clip_probs"], (results[0]["clip_probs"] + results[1]["clip_probs"]) / 2
    )
    np.testing.assert_allclose(
        mean["frame_probs"], (results[0]["frame_probs"] + results[1]["frame_probs"]) / 2
    )
    # a coarser model (0.2 s frames) is interpolated onto the first grid
    coarse = dict(
        results[1],
        frame_probs=results[1]["frame_probs"][::2],
        frame_times=results[1]["frame_times"][::2] + 0.05,
    )
    mixed = average_results([results[0], coarse])
    assert mixed["frame_probs"].shape == results[0]["frame_probs"].shape
    with pytest.raises(ValueError, match="empty"):
        average_results([])


@pytest.mark.parametrize("tta", [(), ("shift",)])
def test_full_pass_equals_windows_and_computes_each_sample_once(tmp_path, tta):
    planted = [(0, 1.0, 2.5), (2, 4.2, 4.8), (1, 5.5, 7.0), (0, 9.1, 9.6)]
    path = str(write_tones(tmp_path / "a.wav", 10.0, planted))
    windowed_model, full_model = FrameLocalBandEnergy(), FrameLocalBandEnergy()
    windowed = score_file(windowed_model, path, RATE, 2.0, 0.6, tta=tta, windowed=True)
    full = score_file(full_model, path, RATE, 2.0, 0.6, tta=tta)
    np.testing.assert_allclose(full["clip_probs"], windowed["clip_probs"], atol=1e-6)
    np.testing.assert_allclose(full["frame_probs"], windowed["frame_probs"], atol=1e-6)
    np.testing.assert_allclose(full["frame_times"], windowed["frame_times"])
    assert_events(events_of(full), sorted(planted, key=lambda e: e[1]), 1e-6)
    # one pass over the 10 s: a time shift only moves the pooled windows
    assert full_model.samples_seen == 10 * RATE
    assert windowed_model.samples_seen >= 3 * full_model.samples_seen


def test_full_pass_streams_long_files_in_chunks_with_context(tmp_path, monkeypatch):
    duration = 100.0
    path = str(write_tones(tmp_path / "long.wav", duration, [(1, 61.0, 64.0)]))
    requested = record_reads(monkeypatch)
    chunked = score_file(
        FrameLocalBandEnergy(), path, RATE, 2.0, 1.0, chunk_seconds=30.0
    )
    # chunks of 30 s plus half a window of context on each inner side
    assert [(round(a, 6), round(b, 6)) for a, b in requested] == [
        (0.0, 31.0),
        (29.0, 32.0),
        (59.0, 32.0),
        (89.0, 11.0),
    ]
    monkeypatch.undo()
    whole = score_file(
        FrameLocalBandEnergy(), path, RATE, 2.0, 1.0, chunk_seconds=duration
    )
    np.testing.assert_allclose(chunked["frame_probs"], whole["frame_probs"])
    np.testing.assert_allclose(chunked["clip_probs"], whole["clip_probs"])
    assert_events(events_of(chunked), [(1, 61.0, 64.0)], 1e-6)
    with pytest.raises(ValueError, match="chunk_seconds"):
        score_file(FrameLocalBandEnergy(), path, RATE, 2.0, 1.0, chunk_seconds=1.0)


def test_full_pass_of_a_short_recording_is_one_padded_window(tmp_path):
    path = str(write_tones(tmp_path / "short.wav", 1.3, [(1, 0.5, 1.0)]))
    full = score_file(FrameLocalBandEnergy(), path, RATE, 2.0, 1.0)
    windowed = score_file(FrameLocalBandEnergy(), path, RATE, 2.0, 1.0, windowed=True)
    assert full["frame_probs"].shape == (13, 3)
    np.testing.assert_allclose(full["frame_probs"], windowed["frame_probs"])
    np.testing.assert_allclose(full["clip_probs"], windowed["clip_probs"])


def test_validation_scores_of_a_frame_local_model_equal_windows():
    gen = torch.Generator().manual_seed(0)
    wavs = torch.randn(3, 5000, generator=gen)
    lens = torch.tensor([1.0, 0.64, 0.3])  # 5 s, 3.2 s and 1.5 s recordings
    model = FrameLocalBandEnergy()
    full = score_recordings(model, wavs, lens, window=2000, hop=600)
    windowed = score_recordings(model, wavs, lens, 2000, 600, windowed=True)
    torch.testing.assert_close(full["clip_logits"], windowed["clip_logits"])
    assert [w.shape[0] for w in full["window_logits"]] == [6, 3, 1]
    for a, b in zip(full["window_logits"], windowed["window_logits"]):
        torch.testing.assert_close(a, b)


def tiny_cnn():
    """A frame-local CNN whose pooling rounds frame counts down (CNN14-like)."""
    from speechbrain_rfcx.models import create_model

    torch.manual_seed(0)
    return create_model(
        "panns_cnn14",
        n_classes=3,
        sample_rate=RATE * 16,
        n_fft=256,
        hop_length=128,
        n_mels=32,
        channels=(4, 8, 8, 8),  # frames of 8 x 128 samples
    ).eval()


@pytest.mark.parametrize("seconds", [3.0, 4.37, 9.71])
def test_one_pass_gives_every_frame_an_estimate(tmp_path, seconds):
    """The last, partial frame too, and with a slowed-down pass no audio is
    cropped away (the chunk is padded first)."""
    model = tiny_cnn()
    rate = RATE * 16
    path = str(tmp_path / "a.wav")
    noise = np.random.default_rng(0).normal(0, 0.1, int(seconds * rate))
    sf.write(path, noise.astype("float32"), rate)
    result = score_file(model, path, rate, 1.0, 0.5, chunk_seconds=2.0)
    assert result["frame_times"][-1] < seconds < result["frame_times"][-1] + 0.064
    assert (result["frame_probs"].sum(1) > 0).all()  # no frame left at zero
    for speed in (1.0, 0.8, 1.25):
        ((_, _, valid),) = inference._one_pass_frames(
            model, [inference.AudioFile(path, rate)], rate, 2 * rate, speed, "cpu"
        )
        assert valid.all(), speed


def test_validation_one_pass_pads_recordings_shorter_than_a_window():
    model = tiny_cnn()
    wavs = 0.1 * torch.randn(2, 3000, generator=torch.Generator().manual_seed(0))
    lens = torch.tensor([1.0, 0.5])
    full = score_recordings(model, wavs, lens, window=8000, hop=4000)
    windowed = score_recordings(model, wavs, lens, 8000, 4000, windowed=True)
    torch.testing.assert_close(full["clip_logits"], windowed["clip_logits"])
