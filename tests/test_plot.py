"""Tests of speechbrain_rfcx.plot: a real, non-blank PNG with boxes where they belong."""

import struct

import numpy as np
import pytest
import soundfile as sf
from matplotlib.image import imread

from speechbrain_rfcx.detections.events import Detection
from speechbrain_rfcx.plot import plot_detections

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SPECIES_0_RGB = np.array([31, 119, 180]) / 255  # tab10's first colour
SAMPLE_RATE = 8000


def png_size(path):
    """(width, height) from the PNG's IHDR chunk."""
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == PNG_SIGNATURE
    assert head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def noise(seconds=4.0, seed=0):
    return np.random.default_rng(seed).normal(0, 0.1, int(seconds * SAMPLE_RATE))


@pytest.mark.parametrize("n_mels", [32, None])
def test_png_is_real_sized_and_not_blank(tmp_path, n_mels):
    path = tmp_path / "plot.png"
    probs = np.random.default_rng(1).random((40, 5))
    returned = plot_detections(
        path,
        noise(),
        SAMPLE_RATE,
        [Detection(2, 0.5, 1.5, 0.9, 300.0, 1200.0), Detection(4, 2.0, 3.0, 0.6)],
        frame_probs=probs,
        species_names={2: "coqui"},
        top_k=3,
        n_mels=n_mels,
        title="test",
        figsize=(6, 3),
        dpi=50,
    )
    assert returned == path
    assert png_size(path) == (300, 150)
    pixels = imread(path)
    assert pixels.shape[:2] == (150, 300)
    assert pixels[..., :3].var() > 0
    assert [p.name for p in tmp_path.iterdir()] == ["plot.png"]  # no temp file left


def test_default_size_and_audio_file_input(tmp_path):
    audio = tmp_path / "rec.flac"
    sf.write(audio, noise(2.0).astype("float32"), SAMPLE_RATE)
    path = tmp_path / "plot.png"
    plot_detections(path, str(audio), detections=[Detection(0, 0.2, 0.8, 0.7)])
    assert png_size(path) == (1200, 600)
    assert imread(path)[..., :3].var() > 0


def box_pixels(tmp_path, name, detection, n_mels=32):
    """Boolean image of the pixels drawn in species 0's colour."""
    path = tmp_path / name
    plot_detections(
        path,
        np.zeros(4 * SAMPLE_RATE),  # a uniform spectrogram: only the box is blue
        SAMPLE_RATE,
        [detection],
        n_mels=n_mels,
        figsize=(8, 4),
        dpi=100,
    )
    rgb = imread(path)[..., :3]
    return np.abs(rgb - SPECIES_0_RGB).max(axis=-1) < 0.02


def extent(mask, axis):
    hits = np.flatnonzero(mask.any(axis=axis))
    return hits.min(), hits.max()


@pytest.mark.parametrize("n_mels", [32, None])
def test_boxes_follow_time_and_frequency(tmp_path, n_mels):
    short = box_pixels(
        tmp_path, "a.png", Detection(0, 1.0, 2.0, 0.9, 500.0, 800.0), n_mels
    )
    long = box_pixels(
        tmp_path, "b.png", Detection(0, 1.0, 3.0, 0.9, 500.0, 800.0), n_mels
    )
    high = box_pixels(
        tmp_path, "c.png", Detection(0, 1.0, 2.0, 0.9, 2000.0, 3000.0), n_mels
    )
    left_a, right_a = extent(short, axis=0)
    left_b, right_b = extent(long, axis=0)
    assert left_a == pytest.approx(left_b, abs=1)
    # time is linear: twice the duration, twice the width
    assert (right_b - left_b) == pytest.approx(2 * (right_a - left_a), abs=3)
    # a higher band is drawn higher (smaller row index) and at the same time
    top_a, bottom_a = extent(short, axis=1)
    top_c, bottom_c = extent(high, axis=1)
    assert bottom_c < top_a
    assert extent(high, axis=0) == pytest.approx(extent(short, axis=0), abs=1)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(wav=np.zeros((2, 100))), r"\(samples,\)"),
        (dict(wav=np.zeros(800), sample_rate=None), "sample_rate"),
        (dict(wav=np.zeros(800), fmax=9000.0), "fmax"),
        (
            dict(wav=np.zeros(800), frame_probs=np.zeros((4, 2)), frame_times=[0.0]),
            r"shape \(4,\)",
        ),
        (dict(wav=np.zeros(800), top_k=-1), "top_k"),
    ],
)
def test_bad_input_is_named(tmp_path, kwargs, message):
    kwargs.setdefault("sample_rate", SAMPLE_RATE)
    with pytest.raises(ValueError, match=message):
        plot_detections(tmp_path / "x.png", detections=[], **kwargs)


def test_a_long_recording_is_plotted_with_flat_memory(tmp_path):
    """30 min at 16 kHz: read a minute at a time, the image pooled in time."""
    import json
    import subprocess
    import sys

    rate, minutes = 16000, 30
    path = tmp_path / "long.wav"
    with sf.SoundFile(path, "w", rate, 1, subtype="PCM_16") as f:
        rng = np.random.default_rng(0)
        for _ in range(minutes):
            f.write(0.1 * rng.standard_normal(60 * rate).astype("float32"))
    probe = (
        "import json, resource, sys\n"
        "from speechbrain_rfcx.plot import plot_detections\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "plot_detections(sys.argv[2], sys.argv[1], figsize=(6, 3))\n"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(json.dumps({'growth_mib': (peak - base) / 1024}))\n"
    )
    png = tmp_path / "long.png"
    done = subprocess.run(
        [sys.executable, "-c", probe, str(path), str(png)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    growth = json.loads(done.stdout.splitlines()[-1])["growth_mib"]
    assert growth < 400, f"plotting 30 min grew memory by {growth:.0f} MiB"
    assert imread(png).shape[:2] == (300, 600)
