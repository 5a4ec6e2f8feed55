"""Crops: window placement, seeked reads, targets, SpeechBrain pipeline items."""

import random

import numpy as np
import pytest
import soundfile as sf
import speechbrain as sb
import torch
from speechbrain.dataio.dataio import load_data_json

from speechbrain_rfcx.data.annotations import Box
from speechbrain_rfcx.data.audio import AudioError, read_segment
from speechbrain_rfcx.data.crops import choose_crop_start, crop_targets, load_crop
from speechbrain_rfcx.data.pipelines import CROP_ITEMS, crop_pipeline
from speechbrain_rfcx.data.sampling import anchored_entries


def _box(species, t_min, t_max, songtype=1):
    return Box(species, songtype, t_min=t_min, f_min=100.0, t_max=t_max, f_max=900.0)


@pytest.mark.parametrize("t_min,t_max", [(0.0, 1.0), (25.0, 27.0), (58.5, 60.0)])
def test_short_box_lies_inside_the_crop(t_min, t_max):
    rng = random.Random(0)
    box = _box(0, t_min, t_max)
    starts = [choose_crop_start(60.0, 10.0, box, rng) for _ in range(300)]
    assert all(0.0 <= s <= 50.0 for s in starts)
    assert all(s <= t_min and t_max <= s + 10.0 for s in starts)
    # the offset is random, not always the same placement
    assert np.std(starts) > 0.5 or t_min in (0.0, 58.5)


def test_long_box_covers_the_whole_crop():
    rng = random.Random(1)
    box = _box(0, 10.0, 30.0)
    starts = [choose_crop_start(60.0, 5.0, box, rng) for _ in range(200)]
    assert all(10.0 <= s <= 25.0 for s in starts)


def test_random_crops_stay_inside_the_recording():
    rng = random.Random(2)
    starts = [choose_crop_start(60.0, 10.0, None, rng) for _ in range(500)]
    assert min(starts) >= 0 and max(starts) <= 50.0
    assert max(starts) - min(starts) > 40  # spread over the recording


def test_targets_by_hand():
    # crop [10, 18) s in 8 frames of 1 s; species 2 TP at 11.5-13.0, FP for
    # species 0 at 16.2-20, FP for species 2 at 15-16 (TP of 2 wins at clip level)
    tp = [_box(2, 11.5, 13.0), _box(1, 30.0, 31.0)]
    fp = [_box(0, 16.2, 20.0), _box(2, 15.0, 16.0)]
    t = crop_targets(tp, fp, start=10.0, crop_seconds=8.0, n_frames=8, n_classes=3)
    assert t["clip_target"].tolist() == [0, 0, 1]
    assert t["label_mask"].tolist() == [1, 0, 1]
    assert t["frame_target"][:, 2].tolist() == [0, 1, 1, 0, 0, 0, 0, 0]
    assert t["frame_target"][:, :2].sum() == 0
    assert t["frame_mask"].tolist() == [0, 1, 1, 0, 0, 0, 0, 0]
    assert t["frame_label_mask"][:, 2].tolist() == [0, 1, 1, 0, 0, 1, 0, 0]
    assert t["frame_label_mask"][:, 0].tolist() == [0, 0, 0, 0, 0, 0, 1, 1]
    assert t["frame_label_mask"][:, 1].sum() == 0


def test_min_overlap_drops_boxes_that_barely_touch():
    tp = [_box(0, 9.9, 12.0)]
    assert crop_targets(tp, [], 0.0, 10.0, 4, 1)["clip_target"].item() == 1
    assert crop_targets(tp, [], 0.0, 10.0, 4, 1, min_overlap=0.2)["clip_target"] == 0


@pytest.fixture
def noise_file(tmp_path):
    path = tmp_path / "noise.flac"
    data = np.random.default_rng(0).uniform(-0.5, 0.5, 16000 * 20).astype("float32")
    sf.write(path, data, 16000, subtype="PCM_16")
    return path, sf.read(path, dtype="float32")[0]


def test_segment_read_equals_slice_of_the_whole_file(noise_file):
    path, full = noise_file
    seg = read_segment(path, start=7.25, duration=3.0)
    np.testing.assert_array_equal(
        seg.numpy(), full[16000 * 7 + 4000 : 16000 * 10 + 4000]
    )
    tail = read_segment(path, start=19.0, duration=3.0)
    assert tail.numel() == 16000  # not padded past the end


def test_crop_decodes_only_its_own_samples(noise_file, monkeypatch):
    path, full = noise_file
    asked = []
    original = sf.SoundFile.read

    def counting_read(self, frames=-1, *args, **kwargs):
        asked.append(frames)
        return original(self, frames, *args, **kwargs)

    monkeypatch.setattr(sf.SoundFile, "read", counting_read)
    crop = load_crop(path, 20.0, [], [], None, 2.0, 8, 3, 16000)
    assert asked == [32000]
    first = int(round(crop["crop_start"] * 16000))
    np.testing.assert_array_equal(crop["signal"].numpy(), full[first : first + 32000])


def test_stereo_is_downmixed_and_other_rates_resampled(tmp_path):
    path = tmp_path / "stereo.wav"
    t = np.arange(8000) / 8000
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    stereo = np.stack([left, np.zeros_like(left)], 1).astype("float32")
    sf.write(path, stereo, 8000, subtype="FLOAT")
    mono = read_segment(path)
    np.testing.assert_allclose(mono.numpy(), left / 2, atol=1e-6)
    up = read_segment(path, sample_rate=16000)
    assert up.numel() == 16000
    spectrum = np.abs(np.fft.rfft(up.numpy()))
    assert abs(np.argmax(spectrum) * 16000 / up.numel() - 440) < 2


def test_unreadable_audio_names_the_file(tmp_path):
    path = tmp_path / "broken.flac"
    path.write_bytes(b"fLaC but not really")
    with pytest.raises(AudioError, match="broken.flac"):
        read_segment(path, 0.0, 1.0)


def test_crops_of_the_synthetic_data_hear_their_tp_box(tiny_rfcx, tiny_prepared):
    manifest = load_data_json(
        tiny_prepared["train_json"], replacements={"data_root": str(tiny_rfcx)}
    )
    entries = anchored_entries(manifest, ("tp",))
    dataset = sb.dataio.dataset.DynamicItemDataset(entries)
    dataset.add_dynamic_item(crop_pipeline(2.0, 16, 16000, rng=random.Random(0)))
    dataset.set_output_keys(["id", *CROP_ITEMS])
    assert len(dataset) > 5
    for item in dataset:
        anchor = entries[item["id"]]["anchor"]
        assert item["clip_target"][anchor["species_id"]] == 1, item["id"]
        start = item["crop_start"]
        if anchor["t_max"] - anchor["t_min"] <= 2.0:  # the box lies in the crop
            assert start <= anchor["t_min"] and anchor["t_max"] <= start + 2.0
        else:  # the crop lies in the box
            assert anchor["t_min"] <= start and start + 2.0 <= anchor["t_max"]
        assert item["signal"].shape == (32000,)
        assert item["signal"].abs().max() > 0
        assert item["frame_mask"].max() == 1
        assert torch.equal(item["frame_mask"], item["frame_target"].amax(1))
