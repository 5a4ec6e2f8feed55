"""Resampling any rate to the model's: right pitch and length, flat memory."""

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional

from speechbrain_rfcx.data.audio import read_segment, resample_any_ratio

# rates whose reduced ratio to 16 / 48 kHz has large terms (the resampler's
# filter used to grow with them: 2 GB for 3 s at 22,254 Hz)
AWKWARD = [8001, 22254, 44101, 96001, 191999]


def tone(path, rate, seconds=3.0, hz=1000.0):
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, (0.5 * np.sin(2 * np.pi * hz * t)).astype("float32"), rate)


@pytest.mark.parametrize("file_rate, target", [(44100, 16000), (48000, 44100)])
def test_any_ratio_resampler_matches_torchaudio(file_rate, target):
    """Where torchaudio's filter is small, the two give the same samples."""
    wav = torch.randn(3 * file_rate, generator=torch.Generator().manual_seed(0))
    expected = torchaudio.functional.resample(wav, file_rate, target)
    got = resample_any_ratio(wav, file_rate, target)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("file_rate", [22254, 191999])
def test_resampled_tone_keeps_its_pitch_and_length(tmp_path, file_rate):
    path = tmp_path / "tone.wav"
    tone(path, file_rate)
    wav = read_segment(str(path), 0.5, 2.0, sample_rate=16000).numpy()
    assert len(wav) == 32000
    spectrum = np.abs(np.fft.rfft(wav))
    assert np.argmax(spectrum) * 16000 / len(wav) == pytest.approx(1000, abs=1)


def test_memory_stays_flat_for_awkward_rates(tmp_path):
    """Peak memory of reading 3 s files at awkward rates, in a fresh process."""
    paths = []
    for rate in AWKWARD:
        paths.append(str(tmp_path / f"r{rate}.wav"))
        tone(paths[-1], rate)
    probe = (
        "import json, resource, sys\n"
        "from speechbrain_rfcx.data.audio import read_segment\n"
        "import torch\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "for path in sys.argv[1:]:\n"
        "    for rate in (16000, 48000):\n"
        "        read_segment(path, 0.0, None, sample_rate=rate)\n"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(json.dumps({'growth_mib': (peak - base) / 1024}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, *paths], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    growth = json.loads(done.stdout.splitlines()[-1])["growth_mib"]
    assert growth < 300, f"reading 3 s files grew memory by {growth:.0f} MiB"
