"""Tests for speechbrain_rfcx.speed: audio, lens and targets move together."""

import math

import pytest
import torch

from speechbrain_rfcx.speed import change_speed

N_CLASSES = 10
N_FRAMES = 32
SAMPLE_RATE = 16000
N_SAMPLES = 32000  # 2 s, 1000 samples per target frame
BURST = (12000, 14000)  # exactly target frames 12 and 13
TONE_HZ = 2000.0


def tone_burst_batch():
    t = torch.arange(N_SAMPLES) / SAMPLE_RATE
    wav = torch.zeros(N_SAMPLES)
    start, stop = BURST
    wav[start:stop] = torch.sin(2 * math.pi * TONE_HZ * t[start:stop])
    frame_target = torch.zeros(1, N_FRAMES, N_CLASSES)
    frame_target[0, 12:14, 3] = 1.0
    targets = {
        "clip_target": frame_target.amax(dim=1),
        "frame_target": frame_target,
        "frame_mask": frame_target.amax(dim=2),
        "label_mask": frame_target.amax(dim=1),
        "frame_label_mask": frame_target.clone(),
        "lens": torch.ones(1),
    }
    return wav.unsqueeze(0), targets


@pytest.mark.parametrize(
    "speed, expected_frames", [(1.1, [10, 11, 12]), (0.9, [13, 14, 15])]
)
def test_speed_moves_events_and_targets_to_t_over_speed(speed, expected_frames):
    wavs, targets = tone_burst_batch()
    out, lens, new = change_speed(wavs, torch.ones(1), targets, speed=speed)
    assert out.shape == wavs.shape

    # Energy centroid of the audio moves from 13000 to 13000 / speed samples.
    energy = out[0].pow(2)
    centroid = (energy * torch.arange(N_SAMPLES)).sum() / energy.sum()
    expected_centre = sum(BURST) / 2 / speed
    frame_len = N_SAMPLES / N_FRAMES
    assert abs(centroid.item() - expected_centre) < frame_len / 4

    # Active target frames: the frames overlapping [12, 14) / speed (by hand).
    active = torch.nonzero(new["frame_target"][0, :, 3]).flatten().tolist()
    assert active == expected_frames
    assert torch.nonzero(new["frame_mask"][0]).flatten().tolist() == expected_frames
    target_centre = (torch.tensor(active, dtype=torch.float) + 0.5).mean() * frame_len
    assert abs(target_centre.item() - expected_centre) < frame_len
    torch.testing.assert_close(new["frame_label_mask"], new["frame_target"])
    assert new["clip_target"][0, 3] == 1 and new["label_mask"][0, 3] == 1

    # The tone's frequency scales by the speed.
    spectrum = torch.fft.rfft(out[0]).abs()
    peak_hz = spectrum.argmax().item() * SAMPLE_RATE / N_SAMPLES
    assert peak_hz == pytest.approx(TONE_HZ * speed, abs=5.0)


def test_speed_lens_convention():
    wavs = torch.randn(2, 11000, generator=torch.Generator().manual_seed(0))
    wavs[1, 5500:] = 0.0
    lens = torch.tensor([1.0, 0.5])
    targets = {"lens": lens.clone()}

    out, fast_lens, fast = change_speed(wavs, lens, targets, speed=1.1)
    torch.testing.assert_close(fast_lens, torch.tensor([1 / 1.1, 0.5 / 1.1]))
    torch.testing.assert_close(fast["lens"], fast_lens)
    # Faster audio is shorter: the tail past 11000 / 1.1 = 10000 samples is zero.
    assert torch.all(out[:, 10000:] == 0)
    assert out[0, :9990].abs().min() < out[0, :9990].abs().max()  # real audio

    _, slow_lens, _ = change_speed(wavs, lens, targets, speed=0.9)
    torch.testing.assert_close(slow_lens, torch.tensor([1.0, 0.5 / 0.9]))


def test_speed_frames_past_the_end_become_zero():
    ones = torch.ones(1, N_FRAMES, N_CLASSES)
    targets = {
        "frame_target": ones.clone(),
        "frame_mask": torch.ones(1, N_FRAMES),
        "frame_label_mask": ones.clone(),
    }
    _, _, new = change_speed(torch.randn(1, 3200), torch.ones(1), targets, 1.1)
    # Output frame j covers input [1.1 j, 1.1 (j + 1)): j = 30, 31 start past 32.
    expected = torch.ones(N_FRAMES)
    expected[30:] = 0
    torch.testing.assert_close(new["frame_mask"][0], expected)
    for key in ("frame_target", "frame_label_mask"):
        torch.testing.assert_close(new[key][0, :, 0], expected)


def test_speed_cropped_species_lose_clip_labels():
    frame_target = torch.zeros(1, N_FRAMES, N_CLASSES)
    frame_label_mask = torch.zeros(1, N_FRAMES, N_CLASSES)
    frame_target[0, 30:, 5] = 1  # TP call only at the end: cropped at 0.9
    frame_label_mask[0, 30:, 5] = 1
    frame_label_mask[0, 29:, 7] = 1  # FP box at the end: cropped at 0.9
    frame_target[0, 27:, 8] = 1  # TP call partly kept (frames 27, 28)
    frame_label_mask[0, 27:, 8] = 1
    targets = {
        "clip_target": frame_target.amax(dim=1),
        "frame_target": frame_target,
        "label_mask": frame_label_mask.amax(dim=1),
        "frame_label_mask": frame_label_mask,
    }
    wavs = torch.randn(1, 3200)
    _, _, slow = change_speed(wavs, torch.ones(1), targets, speed=0.9)
    assert slow["clip_target"][0].nonzero().flatten().tolist() == [8]
    assert slow["label_mask"][0].nonzero().flatten().tolist() == [8]
    # Frame 31 of the output covers input [27.9, 28.8): frames 27 and 28.
    assert slow["frame_target"][0, :, 8].nonzero().flatten().tolist() == [30, 31]

    _, _, fast = change_speed(wavs, torch.ones(1), targets, speed=1.1)
    torch.testing.assert_close(fast["clip_target"], targets["clip_target"])
    torch.testing.assert_close(fast["label_mask"], targets["label_mask"])


def test_speed_one_is_identity():
    wavs, targets = tone_burst_batch()
    out, lens, new = change_speed(wavs, torch.ones(1), targets, speed=1.0)
    assert torch.equal(out, wavs) and torch.equal(lens, torch.ones(1))
    for key in targets:
        assert torch.equal(new[key], targets[key])


def test_speed_rejects_bad_input():
    wavs = torch.randn(2, 100)
    with pytest.raises(ValueError, match="speed"):
        change_speed(wavs, torch.ones(2), None, speed=0.0)
    with pytest.raises(ValueError, match="lens"):
        change_speed(wavs, torch.tensor([1.0, 1.5]), None, speed=1.1)
    with pytest.raises(ValueError, match="lens"):
        change_speed(wavs, torch.ones(3), None, speed=1.1)
