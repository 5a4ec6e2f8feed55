"""Tests for speechbrain_rfcx.augment: audio and targets must stay consistent."""

import math

import pytest
import soundfile
import torch

from speechbrain_rfcx import augment
from speechbrain_rfcx.augment import (
    BatchAugment,
    SpecAugment,
    mixup,
    random_gain,
    speed_perturb,
    time_shift,
)

N_CLASSES = 10
N_FRAMES = 32


def random_targets(batch_size, n_frames=N_FRAMES, n_classes=N_CLASSES, seed=0):
    """Contract targets with random contents (binary masks, soft targets)."""
    g = torch.Generator().manual_seed(seed)

    def binary(*shape):
        return (torch.rand(*shape, generator=g) > 0.5).float()

    return {
        "clip_target": torch.rand(batch_size, n_classes, generator=g),
        "frame_target": torch.rand(batch_size, n_frames, n_classes, generator=g),
        "frame_mask": binary(batch_size, n_frames),
        "label_mask": binary(batch_size, n_classes),
        "frame_label_mask": binary(batch_size, n_frames, n_classes),
        "lens": torch.rand(batch_size, generator=g) * 0.5 + 0.5,
    }


# ----------------------------------------------------------------------------
# mixup
# ----------------------------------------------------------------------------
def test_mixup_targets_follow_audio_lambda_and_permutation():
    batch_size = 6
    wavs = torch.eye(batch_size, 16)  # example i is the unit vector e_i
    targets = random_targets(batch_size)
    g = torch.Generator().manual_seed(3)
    mixed, out = mixup(wavs, targets, alpha=1.0, generator=g)

    # Recover lambda and the partner of each example from the mixed audio.
    n_mixed = 0
    for i in range(batch_size):
        row = mixed[i, :batch_size]
        assert row.sum().item() == pytest.approx(1.0, abs=1e-6)
        lam = row[i].item()
        others = [j for j in range(batch_size) if j != i and row[j] > 0]
        assert len(others) <= 1
        if not others:  # mixed with itself: the example is unchanged
            j, lam = i, 1.0
        else:
            j = others[0]
            n_mixed += 1
            assert row[j].item() == pytest.approx(1 - lam, abs=1e-6)
        for key in ("clip_target", "frame_target", "frame_mask"):
            expected = lam * targets[key][i] + (1 - lam) * targets[key][j]
            torch.testing.assert_close(out[key][i], expected)
        for key in ("label_mask", "frame_label_mask", "lens"):
            expected = torch.maximum(targets[key][i], targets[key][j])
            torch.testing.assert_close(out[key][i], expected)
    assert n_mixed >= 2


def test_mixup_with_patched_lambda(monkeypatch):
    lam = torch.tensor([0.25, 0.5, 0.9])
    monkeypatch.setattr(augment, "_sample_beta", lambda alpha, size, generator: lam)
    wavs = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]])
    targets = {
        "clip_target": torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]),
        "label_mask": torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]),
    }
    g = torch.Generator().manual_seed(0)
    mixed, out = mixup(wavs, targets, alpha=0.1, generator=g)
    perm = torch.randperm(3, generator=torch.Generator().manual_seed(0))
    for i in range(3):
        j = perm[i]
        torch.testing.assert_close(mixed[i], lam[i] * wavs[i] + (1 - lam[i]) * wavs[j])
        torch.testing.assert_close(
            out["clip_target"][i],
            lam[i] * targets["clip_target"][i]
            + (1 - lam[i]) * targets["clip_target"][j],
        )
        torch.testing.assert_close(
            out["label_mask"][i],
            torch.maximum(targets["label_mask"][i], targets["label_mask"][j]),
        )


def test_mixup_is_deterministic_and_leaves_inputs_alone():
    wavs = torch.randn(5, 40, generator=torch.Generator().manual_seed(1))
    targets = random_targets(5)
    copies = {k: v.clone() for k, v in targets.items()}
    runs = [
        mixup(wavs, targets, 0.4, torch.Generator().manual_seed(7)) for _ in range(2)
    ]
    torch.testing.assert_close(runs[0][0], runs[1][0], rtol=0, atol=0)
    for key in targets:
        torch.testing.assert_close(runs[0][1][key], runs[1][1][key], rtol=0, atol=0)
        torch.testing.assert_close(targets[key], copies[key], rtol=0, atol=0)
    other = mixup(wavs, targets, 0.4, torch.Generator().manual_seed(8))[0]
    assert not torch.equal(other, runs[0][0])


def test_beta_lambda_distribution():
    alpha = 0.4
    lam = augment._sample_beta(alpha, 20000, torch.Generator().manual_seed(0))
    assert lam.min() >= 0 and lam.max() <= 1
    assert lam.mean().item() == pytest.approx(0.5, abs=0.01)
    # Var of Beta(a, a) = 1 / (4 (2a + 1))
    assert lam.var().item() == pytest.approx(1 / (4 * (2 * alpha + 1)), rel=0.05)
    # Small alpha concentrates lambda near 0 and 1 (the seed's alpha=0.1).
    small = augment._sample_beta(0.1, 20000, torch.Generator().manual_seed(0))
    assert ((small < 0.1) | (small > 0.9)).float().mean() > 0.6


def test_beta_sampling_with_generator_keeps_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    augment._sample_beta(0.1, 10, torch.Generator().manual_seed(0))
    torch.testing.assert_close(torch.rand(3), expected, rtol=0, atol=0)


def test_mixup_rejects_bad_input():
    wavs = torch.randn(2, 8)
    with pytest.raises(ValueError, match="alpha"):
        mixup(wavs, {}, alpha=0.0)
    with pytest.raises(ValueError, match="clip_target"):
        mixup(wavs, {"clip_target": torch.zeros(3, 4)})
    with pytest.raises(ValueError, match="frame_mask"):
        mixup(wavs, {"frame_mask": torch.zeros(2, 4, 1)})
    with pytest.raises(ValueError, match="frames"):
        mixup(
            wavs,
            {"frame_mask": torch.zeros(2, 4), "frame_target": torch.zeros(2, 5, 1)},
        )
    with pytest.raises(ValueError, match="wavs"):
        mixup(torch.randn(2, 8, 1), {})


# ----------------------------------------------------------------------------
# speed perturbation (change_speed itself: test_speed.py)
# ----------------------------------------------------------------------------
def test_speed_choice_is_seeded():
    wavs = torch.randn(1, 3200, generator=torch.Generator().manual_seed(0))

    def run(seed):
        g = torch.Generator().manual_seed(seed)
        return speed_perturb(wavs, torch.ones(1), None, (0.9, 1.1), generator=g)[1]

    assert torch.equal(run(5), run(5))
    chosen = {round(run(seed).item(), 4) for seed in range(12)}
    assert chosen == {1.0, round(1 / 1.1, 4)}


def test_speed_perturb_rejects_bad_input():
    wavs = torch.randn(2, 100)
    with pytest.raises(ValueError, match="speeds"):
        speed_perturb(wavs, torch.ones(2), None, speeds=())


# ----------------------------------------------------------------------------
# time shift
# ----------------------------------------------------------------------------
def test_time_shift_rolls_audio_and_frames_together():
    batch_size, n_samples = 8, 3200
    samples_per_frame = n_samples // N_FRAMES
    wavs = torch.arange(n_samples, dtype=torch.float).repeat(batch_size, 1)
    targets = random_targets(batch_size)
    g = torch.Generator().manual_seed(0)
    out, new = time_shift(wavs, targets, max_shift=0.25, generator=g)

    n_shifted = 0
    for i in range(batch_size):
        shift = int(out[i].argmin())  # where sample 0 went
        assert torch.equal(out[i], torch.roll(wavs[i], shift))
        assert shift % samples_per_frame == 0
        frames = shift // samples_per_frame
        assert min(frames, N_FRAMES - frames) <= 0.25 * N_FRAMES
        for key in ("frame_target", "frame_mask", "frame_label_mask"):
            assert torch.equal(new[key][i], torch.roll(targets[key][i], frames, 0))
        expected_len = 1.0 if frames else targets["lens"][i].item()
        assert new["lens"][i].item() == pytest.approx(expected_len)
        n_shifted += frames != 0
    assert n_shifted >= 4
    for key in ("clip_target", "label_mask"):
        assert torch.equal(new[key], targets[key])


def test_time_shift_zero_and_determinism():
    wavs = torch.randn(3, 640, generator=torch.Generator().manual_seed(0))
    targets = random_targets(3)
    out, new = time_shift(wavs, targets, max_shift=0.0)
    assert torch.equal(out, wavs)
    assert torch.equal(new["frame_target"], targets["frame_target"])
    first = time_shift(wavs, targets, 0.5, torch.Generator().manual_seed(4))
    second = time_shift(wavs, targets, 0.5, torch.Generator().manual_seed(4))
    assert torch.equal(first[0], second[0])
    with pytest.raises(ValueError, match="max_shift"):
        time_shift(wavs, targets, max_shift=1.5)


# ----------------------------------------------------------------------------
# gain and noise
# ----------------------------------------------------------------------------
def test_random_gain_range_and_determinism():
    wavs = torch.randn(300, 50, generator=torch.Generator().manual_seed(0))
    out = random_gain(wavs, -6.0, 6.0, torch.Generator().manual_seed(1))
    ratio = out / wavs
    # One gain per example, within [-6, 6] dB, spread over the range.
    torch.testing.assert_close(ratio, ratio[:, :1].expand_as(ratio))
    gain_db = 20 * torch.log10(ratio[:, 0])
    assert gain_db.min() >= -6.0 - 1e-4 and gain_db.max() <= 6.0 + 1e-4
    assert gain_db.min() < -5.0 and gain_db.max() > 5.0
    again = random_gain(wavs, -6.0, 6.0, torch.Generator().manual_seed(1))
    assert torch.equal(out, again)
    with pytest.raises(ValueError, match="min_db"):
        random_gain(wavs, 3.0, -3.0)


def rms(x):
    return x.pow(2).mean(dim=-1).sqrt()


def test_batch_augment_csv_noise(tmp_path):
    sample_rate = 8000
    noise = torch.randn(400, generator=torch.Generator().manual_seed(0)) * 0.1
    soundfile.write(tmp_path / "noise.wav", noise.numpy(), sample_rate)
    csv_file = tmp_path / "noise.csv"
    csv_file.write_text(
        f"ID,duration,wav,wav_format,wav_opts\nn0,0.05,{tmp_path / 'noise.wav'},wav,\n"
    )
    augmenter = BatchAugment(
        mixup_prob=0.0,
        noise_csv=str(csv_file),
        noise_prob=1.0,
        snr_low=10.0,
        snr_high=10.0,
        sample_rate=sample_rate,
    )
    t = torch.arange(2000) / sample_rate
    wavs = torch.sin(2 * math.pi * 440 * t).repeat(2, 1)
    torch.manual_seed(0)
    out, _ = augmenter(wavs, {"lens": torch.ones(2)})
    # SpeechBrain's AddNoise: clean * (1 - a) + noise at a * rms(clean).
    a = 1 / (1 + 10 ** (10 / 20))
    added = out - (1 - a) * wavs
    torch.testing.assert_close(rms(added), a * rms(wavs), rtol=1e-3, atol=0)
    torch.testing.assert_close(added[:, 400:], added[:, :-400])  # tiled file


# ----------------------------------------------------------------------------
# SpecAugment
# ----------------------------------------------------------------------------
def test_spec_augment_masks_rows_and_columns_in_train_mode():
    torch.manual_seed(0)
    features = torch.rand(4, 60, 24) + 5.0
    original = features.clone()
    spec_augment = SpecAugment(time_masks=2, time_width=8, freq_masks=2, freq_width=5)
    out = spec_augment(features)
    assert torch.equal(features, original)  # input untouched
    changed = out != features
    assert changed.any()
    for b in range(4):
        rows = changed[b].all(dim=1)
        cols = changed[b].all(dim=0)
        # Every change belongs to a whole time row or a whole frequency column.
        assert torch.equal(changed[b], rows[:, None] | cols[None, :])
        assert rows.sum() <= 2 * 8 and cols.sum() <= 2 * 5
    # Masked cells hold the batch mean.
    fill = out[changed]
    assert torch.allclose(fill, torch.full_like(fill, features.mean()), atol=0.02)


def test_spec_augment_eval_identity_and_validation():
    spec_augment = SpecAugment().eval()
    features = torch.rand(2, 30, 16)
    assert spec_augment(features) is features
    assert SpecAugment(time_masks=0, freq_masks=0)(features) is features
    with pytest.raises(ValueError, match="time_masks"):
        SpecAugment(time_masks=-1)
    with pytest.raises(ValueError, match="B, T, F"):
        SpecAugment().train()(torch.rand(2, 1, 30, 16))


# ----------------------------------------------------------------------------
# BatchAugment
# ----------------------------------------------------------------------------
def test_batch_augment_identity_when_off_or_eval():
    wavs = torch.randn(3, 3200, generator=torch.Generator().manual_seed(0))
    targets = random_targets(3)
    off = BatchAugment(mixup_prob=0.0, speed_prob=0.0, gain_db=0.0, shift_prob=0.0)
    out, out_targets = off(wavs, targets)
    assert torch.equal(out, wavs)
    for key in targets:
        assert torch.equal(out_targets[key], targets[key])
    on = BatchAugment(speed_prob=1.0, gain_db=6.0, shift_prob=1.0).eval()
    assert on(wavs, targets) == (wavs, targets)
    with pytest.raises(ValueError, match="lens"):
        off(wavs, {"clip_target": targets["clip_target"]})


def test_batch_augment_speed_updates_lens_and_frames():
    wavs = torch.randn(1, 32000, generator=torch.Generator().manual_seed(0))
    frame_target = torch.zeros(1, N_FRAMES, N_CLASSES)
    frame_target[0, 12:14, 3] = 1.0
    targets = {"frame_target": frame_target, "lens": torch.ones(1)}
    augmenter = BatchAugment(mixup_prob=0.0, speeds=[1.1], speed_prob=1.0)
    out, new = augmenter(wavs, targets)
    torch.testing.assert_close(new["lens"], torch.tensor([1 / 1.1]))
    assert new["frame_target"][0, :, 3].nonzero().flatten().tolist() == [10, 11, 12]


def test_batch_augment_all_on_is_seeded_and_consistent():
    wavs = torch.randn(4, 3200, generator=torch.Generator().manual_seed(0))
    targets = random_targets(4)
    augmenter = BatchAugment(
        mixup_alpha=0.4, speed_prob=1.0, gain_db=6.0, shift_prob=1.0
    )
    runs = [
        augmenter(wavs, targets, torch.Generator().manual_seed(9)) for _ in range(2)
    ]
    assert torch.equal(runs[0][0], runs[1][0])
    assert not torch.equal(runs[0][0], wavs)
    _, new = runs[0]
    lens = new["lens"]
    assert torch.all((lens > 0) & (lens <= 1))
    for key in ("label_mask", "frame_label_mask"):
        assert set(new[key].unique().tolist()) <= {0.0, 1.0}
    for key in ("clip_target", "frame_target", "frame_mask"):
        assert new[key].min() >= 0 and new[key].max() <= 1


def test_batch_augment_rejects_bad_hparams():
    with pytest.raises(ValueError, match="speed_prob"):
        BatchAugment(speed_prob=1.5)
    with pytest.raises(ValueError, match="mixup_alpha"):
        BatchAugment(mixup_alpha=0.0, mixup_prob=0.5)
    with pytest.raises(ValueError, match="gain_db"):
        BatchAugment(gain_db=-1.0)
    with pytest.raises(ValueError, match="speed"):
        BatchAugment(speeds=[0.9, -1.0], speed_prob=0.5)
