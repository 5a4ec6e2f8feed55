"""Bad audio through the data entry points: prepare_rfcx and training crops.

Every broken file gets an error naming it, and nothing already prepared is
touched; odd but valid audio (channels, rates, short, silent, NaN) is read.
"""

import os
import shutil

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from speechbrain_rfcx.data.audio import AudioError, read_segment
from speechbrain_rfcx.data.crops import load_crop
from speechbrain_rfcx.data.prepare import prepare_rfcx


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _zero_length(path):
    path.write_bytes(b"")


def _not_audio(path):
    path.write_text("recording_id,species_id\nthis is a CSV, not a FLAC\n")


def _garbage_header(path):
    data = bytearray(path.read_bytes())
    data[:64] = os.urandom(64)
    path.write_bytes(bytes(data))


BROKEN = {
    "truncated": _truncate,
    "zero-length": _zero_length,
    "not audio": _not_audio,
    "garbage header": _garbage_header,
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_prepare_names_a_broken_file_and_keeps_the_last_preparation(
    case, tiny_rfcx, tiny_prepared, tmp_path
):
    data = tmp_path / "data"
    shutil.copytree(tiny_rfcx, data)
    save = tmp_path / "prep"
    shutil.copytree(os.path.dirname(tiny_prepared["train_json"]), save)
    before = {name: (save / name).read_bytes() for name in os.listdir(save)}
    victim = data / "train" / sorted(os.listdir(data / "train"))[3]
    BROKEN[case](victim)
    with pytest.raises(AudioError, match=victim.name):
        prepare_rfcx(data, save, n_folds=4, seed=1)
    assert {name: (save / name).read_bytes() for name in os.listdir(save)} == before


def test_prepare_refuses_an_empty_train_folder(tmp_path):
    (tmp_path / "train").mkdir()
    header = "recording_id,species_id,songtype_id,t_min,f_min,t_max,f_max\n"
    (tmp_path / "train_tp.csv").write_text(header)
    with pytest.raises(AudioError, match="no audio files"):
        prepare_rfcx(tmp_path, tmp_path / "prep")


def test_prepare_refuses_an_output_folder_it_cannot_write(tiny_rfcx, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError, match="a_file"):
        prepare_rfcx(tiny_rfcx, blocker / "prep", n_folds=4)


def _write(path, data, rate, subtype="FLOAT"):
    sf.write(path, data, rate, subtype=subtype)
    return path


def _tone(rate, seconds, freq=1000.0, channels=1):
    t = np.arange(int(rate * seconds)) / rate
    wave = (0.5 * np.sin(2 * np.pi * freq * t)).astype("float32")
    return np.stack([wave] * channels, 1) if channels > 1 else wave


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 96000])
def test_crops_from_any_sample_rate_are_resampled_to_the_model_rate(rate, tmp_path):
    path = _write(tmp_path / "tone.wav", _tone(rate, 3.0), rate)
    box = {
        "species_id": 1,
        "songtype_id": 1,
        "t_min": 1.0,
        "f_min": 500.0,
        "t_max": 1.5,
        "f_max": 1500.0,
    }
    crop = load_crop(path, 3.0, [box], [], box, 2.0, 8, 3, sample_rate=16000)
    assert crop["signal"].shape == (32000,)
    spectrum = np.abs(np.fft.rfft(crop["signal"].numpy()))
    assert abs(np.argmax(spectrum) * 16000 / 32000 - 1000) <= 1
    assert crop["clip_target"].tolist() == [0, 1, 0]


@pytest.mark.parametrize("channels", [2, 4])
def test_multichannel_audio_is_averaged_to_mono(channels, tmp_path):
    data = _tone(16000, 1.0, channels=channels)
    data[:, 1:] = 0  # only the first channel has the tone
    path = _write(tmp_path / "multi.wav", data, 16000)
    mono = read_segment(path)
    np.testing.assert_allclose(mono.numpy(), data[:, 0] / channels, atol=1e-6)


def test_nan_and_inf_samples_become_silence(tmp_path):
    data = _tone(8000, 1.0)
    data[100:200] = np.nan
    data[300] = np.inf
    path = _write(tmp_path / "nan.wav", data, 8000)
    wav = read_segment(path)
    assert np.isfinite(wav.numpy()).all()
    assert (wav[100:200] == 0).all() and wav[300] == 0
    assert wav[400] == pytest.approx(data[400])


def test_a_recording_shorter_than_the_crop_is_zero_padded(tmp_path):
    path = _write(tmp_path / "short.flac", _tone(8000, 0.5), 8000, "PCM_16")
    box = {
        "species_id": 0,
        "songtype_id": 1,
        "t_min": 0.1,
        "f_min": 500.0,
        "t_max": 0.4,
        "f_max": 1500.0,
    }
    crop = load_crop(path, 0.5, [box], [], box, 2.0, 8, 1, sample_rate=8000)
    assert crop["crop_start"] == 0.0
    assert crop["signal"].shape == (16000,)
    assert crop["signal"][4000:].abs().max() == 0
    assert crop["frame_target"][:, 0].tolist() == [
        1,
        1,
        0,
        0,
        0,
        0,
        0,
        0,
    ]  # 0.25 s frames


def test_silence_is_valid_audio(tmp_path):
    path = _write(tmp_path / "silence.flac", np.zeros(8000, "float32"), 8000, "PCM_16")
    assert read_segment(path).abs().max() == 0


def test_prepare_accepts_mixed_rates_and_channels(tiny_rfcx, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_rfcx, data)
    tp = pd.read_csv(data / "train_tp.csv", dtype={"recording_id": str})
    rid = tp.recording_id.iloc[0]
    wav, rate = sf.read(data / "train" / f"{rid}.flac", dtype="float32")
    os.remove(data / "train" / f"{rid}.flac")
    _write(data / "train" / f"{rid}.wav", np.stack([wav, wav], 1), rate)
    out = prepare_rfcx(data, tmp_path / "prep", n_folds=4)
    import json

    entry = json.loads(open(out["train_json"]).read())[rid]
    assert entry["channels"] == 2 and entry["wav"].endswith(f"{rid}.wav")
