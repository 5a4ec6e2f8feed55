"""Synthetic soundscapes in the RFCX (Kaggle) layout.

The real RFCX recordings cannot be downloaded everywhere, so this module writes a
stand-in with exactly the competition layout, plus the complete truth that the
competition hides::

    <out_dir>/
      train/<recording_id>.flac   mono FLAC (PCM_16)
      test/<recording_id>.flac
      train_tp.csv                 verified calls (very incomplete, as in RFCX)
      train_fp.csv                 verified hard negatives
      sample_submission.csv        recording_id,s0,...,s{C-1} (all zeros)
      test_ground_truth.csv        complete 0/1 species labels of the test files
      test_boxes.csv               every call rendered in the test files
      train_all_calls.csv          every call rendered in the train files
      synthetic_info.json          arguments and counts, written last

Each of the 24 species (:data:`SPECIES`) has its own call family and frequency
band. Bands are given at 48 kHz and scaled by :func:`frequency_scale` for lower
sample rates; every box describes what was actually rendered. Generation is
deterministic: the same arguments give byte-identical CSVs and identical audio.

Example
-------
>>> import tempfile
>>> out = tempfile.mkdtemp()
>>> summary = generate_rfcx_dataset(
...     out, n_train=2, n_test=1, duration=3.0, sample_rate=8000, seed=3
... )
>>> summary["n_train"], summary["n_test"], summary["generated"]
(2, 1, True)
>>> generate_rfcx_dataset(
...     out, n_train=2, n_test=1, duration=3.0, sample_rate=8000, seed=3
... )["generated"]
False
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from speechbrain_rfcx import __version__
from speechbrain_rfcx._io import read_record, write_atomically, write_record
from speechbrain_rfcx.data.annotations import (
    N_SPECIES,
    RFCX_COLUMNS,
    Box,
    species_columns,
)

logger = logging.getLogger(__name__)

REFERENCE_SAMPLE_RATE = 48000
INFO_FILENAME = "synthetic_info.json"
FORMAT_VERSION = 1
CALL_FAMILIES = (
    "fm_up",
    "fm_down",
    "whistle",
    "trill",
    "harmonic_stack",
    "pulse_train",
    "croak",
)
_SONGTYPE4_CHANGES = ("", "tempo", "reverse", "band")
_CSV_NAMES = {
    "train_tp": "train_tp.csv",
    "train_fp": "train_fp.csv",
    "sample_submission": "sample_submission.csv",
    "test_ground_truth": "test_ground_truth.csv",
    "test_boxes": "test_boxes.csv",
    "train_all_calls": "train_all_calls.csv",
}
_PINK_LOWEST_HZ = 20.0


class SyntheticDatasetError(FileExistsError):
    """The output folder holds something other than the requested dataset."""


@dataclass(frozen=True)
class SpeciesSpec:
    """How one synthetic species calls.

    Arguments
    ---------
    species_id : int
        Column index of the species (``s{species_id}`` in submissions).
    name : str
        Readable name, ``<family>_<letter>``.
    kind : str
        ``"bird"`` or ``"frog"``.
    family : str
        Call family, one of :data:`CALL_FAMILIES`.
    f_min, f_max : float
        Band of all its calls in Hz, at 48 kHz.
    songtypes : tuple of int
        ``(1,)`` or ``(1, 4)``.
    duration : tuple of float
        Range of one call's length in seconds (songtype 1).
    calls_per_minute : float
        Mean call rate while the species is present in a recording.
    tempo : float
        Notes (trill), pulses (pulse train), glottal pulses (croak) or vibrato
        cycles (whistle) per second; unused by the other families.
    harmonics : int
        Number of harmonics of a harmonic stack.
    songtype4 : str
        How songtype 4 differs from songtype 1: ``"tempo"`` (faster, shorter),
        ``"reverse"`` (sweep direction) or ``"band"`` (upper part of the band
        instead of the lower part); empty if the species has one songtype.
    confusable_with : tuple of int
        Species that a template detector easily mistakes for this one.

    Example
    -------
    >>> spec = SPECIES[12]
    >>> spec.name, spec.kind, spec.songtypes
    ('trill_a', 'bird', (1, 4))
    >>> spec.band(sample_rate=24000, songtype_id=1)
    (2250.0, 3000.0)
    """

    species_id: int
    name: str
    kind: str
    family: str
    f_min: float
    f_max: float
    songtypes: tuple = (1,)
    duration: tuple = (0.3, 1.0)
    calls_per_minute: float = 5.0
    tempo: float = 0.0
    harmonics: int = 1
    songtype4: str = ""
    confusable_with: tuple = ()

    def __post_init__(self):
        if self.kind not in ("bird", "frog"):
            raise ValueError(f"kind must be 'bird' or 'frog', got {self.kind!r}")
        if self.family not in CALL_FAMILIES:
            raise ValueError(f"family must be one of {CALL_FAMILIES}: {self.family!r}")
        if not 0 < self.f_min < self.f_max:
            raise ValueError(f"need 0 < f_min < f_max, got {self.f_min}, {self.f_max}")
        if self.songtype4 not in _SONGTYPE4_CHANGES:
            raise ValueError(f"songtype4 must be one of {_SONGTYPE4_CHANGES}")
        if (4 in self.songtypes) != bool(self.songtype4):
            raise ValueError("songtype4 must be set exactly when songtype 4 exists")

    def band(self, sample_rate=REFERENCE_SAMPLE_RATE, songtype_id=1):
        """Band (low, high) in Hz of a songtype, scaled to ``sample_rate``.

        Example
        -------
        >>> SPECIES[10].band(48000, songtype_id=4)  # upper part of 3500-4300
        (3820.0, 4300.0)
        """
        if songtype_id not in self.songtypes:
            raise ValueError(
                f"species {self.species_id} has no songtype_id {songtype_id}"
            )
        scale = frequency_scale(sample_rate)
        low, high = self.f_min * scale, self.f_max * scale
        if self.songtype4 == "band":
            width = high - low
            if songtype_id == 1:
                high = low + 0.6 * width
            else:
                low = low + 0.4 * width
        return low, high


# species_id, family, kind, f_min, f_max (Hz at 48 kHz), duration (s),
# calls per minute, tempo (1/s), harmonics, songtype-4 change, confusable with
_SPECIES_TABLE = (
    # Frogs: croaks and pulse trains in the low bands.
    (0, "croak", "frog", 500, 1300, (0.2, 0.45), 10, 90, 1, "", (1,)),
    (1, "croak", "frog", 700, 1700, (0.25, 0.6), 8, 130, 1, "", (0, 4)),
    (2, "pulse_train", "frog", 1350, 1850, (0.6, 1.6), 6, 16, 1, "tempo", (3,)),
    (3, "pulse_train", "frog", 1700, 2300, (0.8, 2.2), 5, 9, 1, "", (2,)),
    (4, "croak", "frog", 1100, 2600, (0.2, 0.4), 9, 200, 1, "", (1,)),
    (5, "pulse_train", "frog", 2600, 3300, (0.3, 1.0), 8, 30, 1, "", (6,)),
    (6, "pulse_train", "frog", 3100, 3800, (0.5, 1.4), 6, 20, 1, "tempo", (5, 7)),
    (7, "pulse_train", "frog", 4000, 4800, (0.2, 0.6), 10, 45, 1, "", (6,)),
    # Birds: sweeps, whistles, trills and harmonic stacks up to 15 kHz.
    (8, "fm_up", "bird", 2000, 3600, (0.3, 0.8), 6, 0, 1, "", (9,)),
    (9, "fm_down", "bird", 2200, 3800, (0.3, 0.8), 6, 0, 1, "", (8,)),
    (10, "whistle", "bird", 3500, 4300, (0.5, 1.5), 5, 6, 1, "band", (11,)),
    (11, "whistle", "bird", 4100, 4900, (0.6, 2.0), 4, 9, 1, "", (10,)),
    (12, "trill", "bird", 4500, 6000, (1.0, 3.0), 3, 10, 1, "tempo", (13,)),
    (13, "trill", "bird", 5200, 6800, (0.8, 2.5), 3, 18, 1, "", (12,)),
    (14, "harmonic_stack", "bird", 900, 4200, (0.4, 1.0), 5, 0, 4, "", (15,)),
    (15, "harmonic_stack", "bird", 1100, 5100, (0.3, 0.8), 6, 0, 4, "", (14, 20)),
    (16, "fm_up", "bird", 6000, 8000, (0.2, 0.5), 8, 0, 1, "reverse", (17,)),
    (17, "fm_down", "bird", 6500, 8600, (0.2, 0.5), 8, 0, 1, "", (16,)),
    (18, "whistle", "bird", 8000, 8900, (0.8, 2.5), 4, 4, 1, "", (19,)),
    (19, "trill", "bird", 8600, 10400, (1.0, 2.8), 3, 14, 1, "", (18,)),
    (20, "harmonic_stack", "bird", 2400, 8300, (0.3, 0.9), 5, 0, 3, "", (15,)),
    (21, "whistle", "bird", 10300, 11500, (0.4, 1.2), 6, 8, 1, "band", (22,)),
    (22, "trill", "bird", 11000, 13600, (0.6, 2.0), 4, 24, 1, "", (21, 23)),
    (23, "fm_down", "bird", 12800, 15000, (0.2, 0.5), 10, 0, 1, "", (22,)),
)


def _build_species(table):
    specs, per_family = [], {}
    for row in table:
        sid, family, kind, f_min, f_max, duration, rate, tempo, harmonics = row[:9]
        songtype4, confusable = row[9:]
        letter = "abcdefgh"[per_family.get(family, 0)]
        per_family[family] = per_family.get(family, 0) + 1
        specs.append(
            SpeciesSpec(
                species_id=sid,
                name=f"{family}_{letter}",
                kind=kind,
                family=family,
                f_min=float(f_min),
                f_max=float(f_max),
                songtypes=(1, 4) if songtype4 else (1,),
                duration=duration,
                calls_per_minute=float(rate),
                tempo=float(tempo),
                harmonics=harmonics,
                songtype4=songtype4,
                confusable_with=confusable,
            )
        )
    return tuple(specs)


#: The 24 synthetic species, indexed by ``species_id``.
SPECIES = _build_species(_SPECIES_TABLE)


def frequency_scale(sample_rate):
    """Factor applied to the 48 kHz species bands at ``sample_rate``.

    Arguments
    ---------
    sample_rate : int
        Sample rate of the rendered audio in Hz.

    Returns
    -------
    float
        ``min(1, sample_rate / 48000)``, so that every band stays below Nyquist.

    Example
    -------
    >>> frequency_scale(16000), frequency_scale(96000)
    (0.3333333333333333, 1.0)
    """
    return min(1.0, sample_rate / REFERENCE_SAMPLE_RATE)


# ----------------------------------------------------------------------------
# Call synthesis. Every renderer returns an unnormalised float64 signal of
# ``n`` samples whose energy lies inside the call's band (f_lo, f_hi).
# ----------------------------------------------------------------------------


@dataclass
class _Call:
    species_id: int
    songtype_id: int
    start: int
    n: int
    f_lo: float
    f_hi: float
    bout: int
    params: dict


def _fades(n, fade):
    """Window of ``n`` ones with raised-cosine fade-in/out of ``fade`` samples."""
    env = np.ones(n)
    k = max(1, min(int(fade), n // 2))
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(k) / k)
    env[:k] = ramp
    env[n - k :] = ramp[::-1]
    return env


def _phase(freq, sample_rate):
    return 2.0 * np.pi * np.cumsum(freq) / sample_rate


def _render_sweep(call, sr, rng):
    u = np.arange(call.n) / call.n
    p = call.params
    freq = p["f_start"] + (p["f_end"] - p["f_start"]) * u ** p["curvature"]
    return np.sin(_phase(freq, sr)) * _fades(call.n, 0.25 * call.n)


def _render_whistle(call, sr, rng):
    p = call.params
    t = np.arange(call.n) / sr
    freq = p["centre"] + p["depth"] * np.sin(2 * np.pi * p["rate"] * t)
    return np.sin(_phase(freq, sr)) * _fades(call.n, 0.15 * call.n)


def _render_trill(call, sr, rng):
    p = call.params
    period = sr / p["rate"]
    tau = (np.arange(call.n) % period) / (0.6 * period)  # notes fill 60 %
    note = tau < 1.0
    freq = p["f_hi"] - (p["f_hi"] - p["f_lo"]) * np.minimum(tau, 1.0)
    env = np.where(note, np.sin(np.pi * np.minimum(tau, 1.0)) ** 2, 0.0)
    return np.sin(_phase(freq, sr)) * env * _fades(call.n, 0.005 * sr)


def _render_harmonic_stack(call, sr, rng):
    p = call.params
    f0 = np.linspace(p["f0_start"], p["f0_end"], call.n)
    phase = _phase(f0, sr)
    signal = np.zeros(call.n)
    for h in range(1, p["harmonics"] + 1):
        signal += np.sin(h * phase + rng.uniform(0, 2 * np.pi)) / h
    return signal * _fades(call.n, 0.2 * call.n)


def _render_pulse_train(call, sr, rng):
    p = call.params
    t = np.arange(call.n) / sr
    # sin^4 pulses put energy at the carrier and +-1, +-2 pulse rates only.
    pulses = np.sin(np.pi * p["rate"] * t) ** 4
    carrier = np.sin(2 * np.pi * p["carrier"] * t + rng.uniform(0, 2 * np.pi))
    return carrier * pulses * _fades(call.n, 0.05 * call.n)


def _render_croak(call, sr, rng):
    p = call.params
    t = np.arange(call.n) / sr
    orders = np.arange(
        math.ceil(call.f_lo / p["f0"]), math.floor(call.f_hi / p["f0"]) + 1
    )
    freqs = orders * p["f0"] if orders.size else np.array([p["centre"]])
    offsets = rng.uniform(0, 2 * np.pi, size=(freqs.size, 1))
    voiced = np.sin(2 * np.pi * freqs[:, None] * t + offsets).sum(axis=0)
    spectrum = np.fft.rfft(rng.standard_normal(call.n))
    bins = np.fft.rfftfreq(call.n, 1.0 / sr)
    spectrum[(bins < call.f_lo) | (bins > call.f_hi)] = 0.0
    noise = np.fft.irfft(spectrum, call.n)
    mix = voiced / (_rms(voiced) + 1e-12) + 0.7 * noise / (_rms(noise) + 1e-12)
    decay = np.exp(-t / (0.4 * t[-1] + 1e-9))
    return mix * decay * _fades(call.n, 0.008 * sr)


_RENDERERS = {
    "fm_up": _render_sweep,
    "fm_down": _render_sweep,
    "whistle": _render_whistle,
    "trill": _render_trill,
    "harmonic_stack": _render_harmonic_stack,
    "pulse_train": _render_pulse_train,
    "croak": _render_croak,
}


def _call_shape(spec, songtype_id, sample_rate, max_seconds, rng):
    """Draw one call's length, band and family parameters."""
    low, high = spec.band(sample_rate, songtype_id)
    width = high - low
    fast = songtype_id == 4 and spec.songtype4 == "tempo"
    seconds = rng.uniform(*spec.duration) * (0.6 if fast else 1.0)
    n = max(16, int(round(min(seconds, max_seconds) * sample_rate)))
    rate = spec.tempo * (1.8 if fast else 1.0) * rng.uniform(0.9, 1.1)
    family = spec.family
    if family in ("fm_up", "fm_down", "trill", "croak"):
        f_lo = low + rng.uniform(0.0, 0.1) * width
        f_hi = high - rng.uniform(0.0, 0.1) * width
        if family == "trill":
            params = {"f_lo": f_lo, "f_hi": f_hi, "rate": rate}
        elif family == "croak":
            params = {"f0": rate, "centre": 0.5 * (f_lo + f_hi)}
        else:
            reverse = songtype_id == 4 and spec.songtype4 == "reverse"
            rising = (family == "fm_up") != reverse
            ends = (f_lo, f_hi) if rising else (f_hi, f_lo)
            params = {
                "f_start": ends[0],
                "f_end": ends[1],
                "curvature": rng.uniform(0.7, 1.4),
            }
    elif family == "whistle":
        depth = rng.uniform(0.15, 0.3) * width
        centre = rng.uniform(low + depth, high - depth)
        f_lo, f_hi = centre - depth, centre + depth
        params = {"centre": centre, "depth": depth, "rate": rate}
    elif family == "harmonic_stack":
        k, glide = spec.harmonics, rng.uniform(1.0, 1.12)
        f0 = rng.uniform(low, max(low, high / (k * glide)))
        start, end = (f0, f0 * glide) if rng.random() < 0.5 else (f0 * glide, f0)
        f_lo, f_hi = f0, k * f0 * glide
        params = {"f0_start": start, "f0_end": end, "harmonics": k}
    else:  # pulse_train: carrier +- 2 pulse rates
        spread = 2.0 * rate
        lo, hi = low + spread, high - spread
        carrier = rng.uniform(lo, hi) if lo < hi else 0.5 * (low + high)
        f_lo, f_hi = carrier - spread, carrier + spread
        params = {"carrier": carrier, "rate": rate}
    return n, max(f_lo, 1.0), f_hi, params


def _rms(x):
    return float(np.sqrt(np.mean(np.square(x), dtype=np.float64)))


def _pink_band_fraction(f_lo, f_hi, sample_rate):
    """Share of a 1/f noise's power between ``f_lo`` and ``f_hi``."""
    lowest, nyquist = _PINK_LOWEST_HZ, sample_rate / 2
    f_lo, f_hi = max(f_lo, lowest), min(max(f_hi, f_lo + 1.0), nyquist)
    return math.log(f_hi / f_lo) / math.log(nyquist / lowest)


def _box_margin(f_lo, f_hi):
    """Margin in Hz added around a rendered band to make its box."""
    return 0.04 * (f_hi - f_lo) + 30.0


# ----------------------------------------------------------------------------
# Backgrounds (float32 over the whole recording, for speed).
# ----------------------------------------------------------------------------


def _pink_noise(n, sample_rate, rng):
    """Unit-RMS noise with a 1/f power spectrum above 20 Hz."""
    bins = np.fft.rfftfreq(n, 1.0 / sample_rate).astype(np.float32)
    gain = np.zeros_like(bins)
    keep = bins >= _PINK_LOWEST_HZ
    gain[keep] = 1.0 / np.sqrt(bins[keep])
    spectrum = np.empty(bins.size, dtype=np.complex64)
    parts = rng.standard_normal((2, bins.size), dtype=np.float32)
    spectrum.real, spectrum.imag = parts[0] * gain, parts[1] * gain
    noise = np.fft.irfft(spectrum, n)
    return noise / np.float32(_rms(noise) + 1e-12)


def _insect_chorus(n, sample_rate, rng):
    """Narrowband high buzz, amplitude-modulated; returns (signal, band)."""
    scale = frequency_scale(sample_rate)
    centre = rng.uniform(4500.0, 9500.0) * scale
    half_width = rng.uniform(100.0, 300.0) * scale
    bins = np.fft.rfftfreq(n, 1.0 / sample_rate)
    inside = np.flatnonzero(np.abs(bins - centre) <= half_width)
    spectrum = np.zeros(bins.size, dtype=np.complex64)
    parts = rng.standard_normal((2, inside.size), dtype=np.float32)
    spectrum.real[inside], spectrum.imag[inside] = parts[0], parts[1]
    buzz = np.fft.irfft(spectrum, n)
    step = 2.0 * np.pi * rng.uniform(8.0, 40.0) / sample_rate
    phase = (np.arange(n, dtype=np.float64) * step).astype(np.float32)
    depth = np.float32(rng.uniform(0.5, 1.0))
    buzz *= 1.0 - depth + depth * (0.5 + 0.5 * np.sin(phase))
    band = (centre - half_width, centre + half_width)
    return buzz / np.float32(_rms(buzz) + 1e-12), band


def _rain(n, sample_rate, rng):
    """Random decaying broadband drops; returns (signal, drop positions)."""
    length = max(8, int(0.008 * sample_rate))
    count = max(1, int(rng.uniform(3.0, 25.0) * n / sample_rate))
    starts = np.sort(rng.integers(0, max(1, n - length), size=count))
    gains = rng.pareto(2.5, size=count).astype(np.float32) + 0.2
    decay = np.exp(-np.arange(length) / (0.0015 * sample_rate)).astype(np.float32)
    drops = rng.standard_normal((count, length), dtype=np.float32) * decay
    drops *= gains[:, None]
    rain = np.zeros(n, dtype=np.float32)
    np.add.at(rain, starts[:, None] + np.arange(length), drops)
    return rain / np.float32(_rms(rain) + 1e-12), starts, gains


# ----------------------------------------------------------------------------
# One recording: content, audio and labels.
# ----------------------------------------------------------------------------


@dataclass
class _Recording:
    audio: np.ndarray
    calls: list
    rain: tuple | None
    insect_band: tuple | None


def _place_calls(spec, songtype_id, duration, sample_rate, rng, first_bout):
    """Calls of one species, in bouts of 1-3, not overlapping each other."""
    wanted = max(1, rng.poisson(spec.calls_per_minute * duration / 60.0))
    edge, guard = 0.05, 0.1
    calls, bout, spans = [], first_bout, []
    for _ in range(20 * wanted):
        if len(calls) >= wanted:
            break
        size = int(min(wanted - len(calls), rng.choice([1, 1, 2, 3])))
        shapes = [
            _call_shape(spec, songtype_id, sample_rate, duration - 4 * edge, rng)
            for _ in range(size)
        ]
        gaps = [int(rng.uniform(0.1, 0.6) * sample_rate) for _ in range(size - 1)]
        total = sum(s[0] for s in shapes) + sum(gaps)
        room = int((duration - edge) * sample_rate) - total
        if room <= int(edge * sample_rate):
            if size == 1:
                continue
            shapes, gaps = shapes[:1], []
            total = shapes[0][0]
            room = int((duration - edge) * sample_rate) - total
            if room <= int(edge * sample_rate):
                continue
        start = int(rng.integers(int(edge * sample_rate), room))
        span = (start - guard * sample_rate, start + total + guard * sample_rate)
        if any(span[0] < b and a < span[1] for a, b in spans):
            continue
        spans.append((start, start + total))
        for i, (n, f_lo, f_hi, params) in enumerate(shapes):
            calls.append(
                _Call(spec.species_id, songtype_id, start, n, f_lo, f_hi, bout, params)
            )
            start += n + (gaps[i] if i < len(gaps) else 0)
        bout += 1
    return calls


def _synthesise_recording(
    rng, species, present, duration, sample_rate, force_noise=False
):
    """Render one recording with the given species calling."""
    n = int(round(duration * sample_rate))
    calls, bout = [], 0
    for species_id in present:
        spec = species[species_id]
        songtype_id = int(rng.choice(spec.songtypes))
        new = _place_calls(spec, songtype_id, duration, sample_rate, rng, bout)
        bout += len(new)
        calls.extend(new)
    has_rain = rng.random() < 0.3
    has_insect = rng.random() < 0.35
    if force_noise and not (has_rain or has_insect):
        has_rain, has_insect = (True, False) if rng.random() < 0.5 else (False, True)

    audio = _pink_noise(n, sample_rate, rng)
    rain = insect_band = None
    if has_rain:
        drops, starts, gains = _rain(n, sample_rate, rng)
        audio += drops * np.float32(10 ** (rng.uniform(-10.0, 3.0) / 20))
        rain = (starts, gains)
    if has_insect:
        buzz, insect_band = _insect_chorus(n, sample_rate, rng)
        audio += buzz * np.float32(10 ** (rng.uniform(-12.0, 0.0) / 20))

    # Calls at an in-band SNR (against the unit-power pink background).
    snr_db = rng.uniform(0.0, 20.0)
    for call in calls:
        signal = _RENDERERS[species[call.species_id].family](call, sample_rate, rng)
        call_snr = snr_db + rng.uniform(-2.0, 3.0)
        band_power = _pink_band_fraction(call.f_lo, call.f_hi, sample_rate)
        target = math.sqrt(band_power * 10 ** (call_snr / 10))
        signal *= target / (_rms(signal) + 1e-12)
        audio[call.start : call.start + call.n] += signal.astype(np.float32)

    peak = float(np.max(np.abs(audio)))
    audio *= np.float32(rng.uniform(0.3, 0.9) / peak)
    calls.sort(key=lambda c: (c.start, c.species_id))
    return _Recording(audio, calls, rain, insect_band)


def _call_box(call, sample_rate, nyquist_guard=0.98):
    """The ``Box`` of one rendered call."""
    margin = _box_margin(call.f_lo, call.f_hi)
    return Box(
        call.species_id,
        call.songtype_id,
        call.start / sample_rate,
        max(0.0, call.f_lo - margin),
        (call.start + call.n) / sample_rate,
        min(nyquist_guard * sample_rate / 2, call.f_hi + margin),
    )


def _template_box(spec, songtype_id, t_min, t_max, sample_rate):
    """Box of a detector template of ``spec``: its whole band, given times."""
    low, high = spec.band(sample_rate, songtype_id)
    margin = _box_margin(low, high)
    top = min(0.98 * sample_rate / 2, high + margin)
    return Box(spec.species_id, songtype_id, t_min, max(0.0, low - margin), t_max, top)


def _tp_boxes(recording, species_id, sample_rate, rng):
    """One or two TP boxes on calls (or whole bouts) of ``species_id``."""
    calls = [c for c in recording.calls if c.species_id == species_id]
    bouts = sorted({c.bout for c in calls})
    picked = rng.permutation(bouts)[: 2 if rng.random() < 0.2 else 1]
    boxes = []
    for bout in sorted(picked):
        members = [c for c in calls if c.bout == bout]
        if len(members) > 1 and rng.random() < 0.5:
            members = [members[int(rng.integers(len(members)))]]
        parts = [_call_box(c, sample_rate) for c in members]
        boxes.append(
            Box(
                species_id,
                members[0].songtype_id,
                min(p.t_min for p in parts),
                min(p.f_min for p in parts),
                max(p.t_max for p in parts),
                max(p.f_max for p in parts),
            )
        )
    return boxes


def _calls_overlap(recording, species_id, t_min, t_max, sample_rate, slack=0.05):
    return any(
        c.species_id == species_id
        and c.start / sample_rate < t_max + slack
        and t_min - slack < (c.start + c.n) / sample_rate
        for c in recording.calls
    )


def _fp_boxes(recording, species, partners, n_rows, duration, sample_rate, rng):
    """Up to ``n_rows`` verified false positives (hard negatives).

    A box sits on a call of a confusable species, or on rain or the insect
    chorus, and names a species that does not call at that time.
    """
    candidates = []
    for call in recording.calls:
        t_min, t_max = call.start / sample_rate, (call.start + call.n) / sample_rate
        for other in partners[call.species_id]:
            if not _calls_overlap(recording, other, t_min, t_max, sample_rate):
                candidates.append((other, t_min, t_max))
    boxes = []
    for _ in range(4 * n_rows):
        if len(boxes) >= n_rows:
            break
        noise_sources = [s for s in ("rain", "insect") if _noise(recording, s)]
        use_call = candidates and (not noise_sources or rng.random() < 0.75)
        if use_call:
            named, t_min, t_max = candidates[int(rng.integers(len(candidates)))]
        else:
            if not noise_sources:
                break
            source = noise_sources[int(rng.integers(len(noise_sources)))]
            named, t_min, t_max = _noise_event(
                recording, source, species, duration, sample_rate, rng
            )
            if _calls_overlap(recording, named, t_min, t_max, sample_rate):
                continue
        spec = species[named]
        songtype_id = int(rng.choice(spec.songtypes))
        box = _template_box(spec, songtype_id, t_min, t_max, sample_rate)
        if box not in boxes:
            boxes.append(box)
    return boxes


def _noise(recording, source):
    return recording.rain if source == "rain" else recording.insect_band


def _noise_event(recording, source, species, duration, sample_rate, rng):
    """(named species, t_min, t_max) of a detector firing on rain or insects."""
    if source == "rain":
        starts, gains = recording.rain
        loud = starts[int(np.argmax(gains * rng.uniform(0.5, 1.0, gains.size)))]
        length = min(rng.uniform(0.2, 1.0), duration - 0.2)
        t_min = min(max(0.05, loud / sample_rate - length / 2), duration - length)
        named = int(rng.integers(len(species)))
    else:
        centre = 0.5 * sum(recording.insect_band)
        distance = [
            abs(0.5 * sum(s.band(sample_rate, s.songtypes[0])) - centre)
            for s in species
        ]
        named = int(np.argmin(distance))
        length = min(rng.uniform(0.5, 2.0), duration - 0.2)
        t_min = rng.uniform(0.05, duration - length - 0.05)
    return named, t_min, t_min + length


def _confusable_partners(species):
    """Listed confusable species, or the nearest band if none is active."""
    active = {s.species_id for s in species}
    partners = {}
    for spec in species:
        listed = [i for i in spec.confusable_with if i in active]
        if not listed and len(species) > 1:
            centre = 0.5 * (spec.f_min + spec.f_max)
            others = [s for s in species if s.species_id != spec.species_id]
            nearest = min(others, key=lambda s: abs(0.5 * (s.f_min + s.f_max) - centre))
            listed = [nearest.species_id]
        partners[spec.species_id] = listed
    return partners


# ----------------------------------------------------------------------------
# The dataset.
# ----------------------------------------------------------------------------


def _recording_ids(seed, n_train, n_test):
    """Unique 9-hex-digit ids; the train ids do not depend on ``n_test``."""
    ids, seen = {}, set()
    for split, count in (("train", n_train), ("test", n_test)):
        rng = np.random.default_rng([seed, 0, 1 if split == "train" else 2])
        ids[split] = []
        while len(ids[split]) < count:
            value = f"{int(rng.integers(0, 16**9)):09x}"
            if value not in seen:
                seen.add(value)
                ids[split].append(value)
    return ids["train"], ids["test"]


def _balanced_species(rng, n_species, count):
    """``count`` species ids cycling through shuffled orders of all species."""
    cycles = -(-count // n_species) if count else 0
    order = np.concatenate(
        [rng.permutation(n_species) for _ in range(cycles)] or [np.array([], int)]
    )
    return [int(i) for i in order[:count]]


def _species_present(rng, forced, n_species, counts, weights):
    """Forced species (if any) plus others up to a random count."""
    count = int(rng.choice(counts, p=weights))
    count = min(max(count, 1 if forced is not None else 0), n_species)
    others = [i for i in rng.permutation(n_species) if i != forced]
    chosen = ([forced] if forced is not None else []) + others
    return sorted(int(i) for i in chosen[:count])


def _seconds(value):
    return f"{value:.4f}"


def _hertz(value):
    return repr(round(float(value), 3))


def _write_flac(path, audio, sample_rate):
    buffer = io.BytesIO()
    sf.write(buffer, audio, sample_rate, format="FLAC", subtype="PCM_16")
    write_atomically(path, buffer.getvalue())


def _write_csv(path, header, rows):
    stream = io.StringIO()
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_atomically(path, stream.getvalue())


def _box_rows(boxes):
    """Sorted CSV rows from (recording_id, Box) pairs."""
    ordered = sorted(
        boxes, key=lambda r: (r[0], r[1].t_min, r[1].species_id, r[1].f_min)
    )
    return [
        (
            rid,
            b.species_id,
            b.songtype_id,
            _seconds(b.t_min),
            _hertz(b.f_min),
            _seconds(b.t_max),
            _hertz(b.f_max),
        )
        for rid, b in ordered
    ]


def _generate_train(folder, ids, species, seed, duration, sample_rate, tp_fraction):
    """Write the train audio; return TP, FP and all-call (recording_id, Box)
    pairs."""
    n_train, n_species = len(ids), len(species)
    partners = _confusable_partners(species)
    plan_rng = np.random.default_rng([seed, 0, 3])
    n_tp = min(n_train, max(round(tp_fraction * n_train), n_species))
    labelled = plan_rng.permutation(n_train)[:n_tp].tolist()
    tp_species = dict(zip(labelled, _balanced_species(plan_rng, n_species, n_tp)))
    tp, fp, calls = [], [], []
    for k, rid in enumerate(ids):
        rng = np.random.default_rng([seed, 1, k])
        forced = tp_species.get(k)
        present = _species_present(
            rng, forced, n_species, [0, 1, 2, 3, 4], [0.1, 0.35, 0.3, 0.15, 0.1]
        )
        want_fp = rng.random() < 0.8
        n_fp = int(rng.choice([1, 2, 3], p=[0.5, 0.3, 0.2]))
        # A detector needs something to fire on: noise if no species calls.
        force_noise = want_fp and not present
        rec = _synthesise_recording(
            rng, species, present, duration, sample_rate, force_noise
        )
        _write_flac(folder / f"{rid}.flac", rec.audio, sample_rate)
        calls += [(rid, _call_box(c, sample_rate)) for c in rec.calls]
        if forced is not None:
            tp += [(rid, b) for b in _tp_boxes(rec, forced, sample_rate, rng)]
        if want_fp:
            boxes = _fp_boxes(rec, species, partners, n_fp, duration, sample_rate, rng)
            fp += [(rid, b) for b in boxes]
    return tp, fp, calls


def _generate_test(folder, ids, species, seed, duration, sample_rate):
    """Write the test audio; return all-call (recording_id, Box) pairs and the
    species per id."""
    plan_rng = np.random.default_rng([seed, 0, 4])
    forced = _balanced_species(plan_rng, len(species), len(ids))
    calls, truth = [], {}
    for k, rid in enumerate(ids):
        rng = np.random.default_rng([seed, 2, k])
        present = _species_present(
            rng, forced[k], len(species), [1, 2, 3, 4], [0.35, 0.35, 0.2, 0.1]
        )
        rec = _synthesise_recording(rng, species, present, duration, sample_rate)
        _write_flac(folder / f"{rid}.flac", rec.audio, sample_rate)
        calls += [(rid, _call_box(c, sample_rate)) for c in rec.calls]
        truth[rid] = set(present)
    return calls, truth


def _validate(out_dir, n_train, n_test, seed, duration, sample_rate, n_species):
    for name, value, lowest in (
        ("n_train", n_train, 0),
        ("n_test", n_test, 0),
        ("seed", seed, 0),
        ("sample_rate", sample_rate, 8000),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        if value < lowest:
            raise ValueError(f"{name} must be >= {lowest}, got {value}")
    if isinstance(n_species, bool) or not isinstance(n_species, (int, np.integer)):
        raise ValueError(f"n_species must be an integer, got {n_species!r}")
    if not 1 <= n_species <= len(SPECIES):
        raise ValueError(f"n_species must be in 1..{len(SPECIES)}, got {n_species}")
    if not isinstance(duration, (int, float)) or not 2.0 <= duration <= 3600.0:
        raise ValueError(f"duration must be 2..3600 seconds, got {duration!r}")
    if n_train + n_test == 0:
        raise ValueError("n_train + n_test must be > 0")
    if out_dir is None or str(out_dir) == "":
        raise ValueError("out_dir must be a folder path")


def _is_complete(out_dir, summary):
    """Whether every table and the recorded number of FLAC files exist."""
    tables = all((out_dir / name).exists() for name in _CSV_NAMES.values())
    return tables and all(
        len(list((out_dir / split).glob("*.flac"))) == summary[f"n_{split}"]
        for split in ("train", "test")
    )


def _existing_dataset(out_dir, arguments, overwrite):
    """Summary of a matching complete dataset in ``out_dir``, else None.

    Clears our files when ``overwrite``; raises if ``out_dir`` holds anything
    else.
    """
    info_path = out_dir / INFO_FILENAME
    if not out_dir.exists() or not any(out_dir.iterdir()):
        return None
    ours = ("train", "test", INFO_FILENAME, *_CSV_NAMES.values())
    info = None if overwrite else read_record(info_path)
    if info is not None:
        complete = _is_complete(out_dir, info["summary"])
        if info.get("arguments") == arguments and complete:
            return info["summary"]
        problem = (
            f"was generated with other arguments {info.get('arguments')}"
            if complete
            else "is incomplete"
        )
        raise SyntheticDatasetError(
            f"{out_dir} {problem}; pass overwrite=True to regenerate it"
        )
    if not overwrite:
        interrupted = any((out_dir / name).exists() for name in ours)
        what = "an interrupted synthetic run" if interrupted else "other files"
        raise SyntheticDatasetError(
            f"{out_dir} holds {what} (no {INFO_FILENAME}); pass overwrite=True "
            "to regenerate it or choose an empty folder"
        )
    info_path.unlink(missing_ok=True)
    for split in ("train", "test"):
        shutil.rmtree(out_dir / split, ignore_errors=True)
    for name in _CSV_NAMES.values():
        (out_dir / name).unlink(missing_ok=True)
    return None


def generate_rfcx_dataset(
    out_dir,
    n_train=200,
    n_test=50,
    seed=1,
    duration=60.0,
    sample_rate=48000,
    n_species=N_SPECIES,
    overwrite=False,
    tp_fraction=0.25,
):
    """Write a synthetic RFCX-layout dataset (audio, labels and full truth).

    Train recordings hold 0-4 calling species, test recordings 1-4. Train
    labels are incomplete as in RFCX: a ``tp_fraction`` of the train
    recordings (a quarter by default, as in RFCX; at least ``n_species`` of them, so that every species is labelled when
    ``n_train >= n_species``) have TP boxes of exactly one species (1-2 boxes,
    each on one call or a bout); about 80 % have 1-3 FP rows, each on a call
    of a confusable species or on rain / insect noise and naming a species that
    does not call there. TP times and bands are tight to the rendered call
    (band plus a small margin); an FP box spans the event in time and the
    named species' template band in frequency. ``train_all_calls.csv`` and
    ``test_boxes.csv`` list every rendered call.

    Arguments
    ---------
    out_dir : str or path
        Output folder; created if missing.
    n_train, n_test : int
        Number of train and test recordings.
    seed : int
        Seed; the same arguments always give the same files.
    duration : float
        Length of each recording in seconds (2 or more).
    sample_rate : int
        Sample rate in Hz; bands are scaled by :func:`frequency_scale`.
    n_species : int
        Use the first ``n_species`` entries of :data:`SPECIES`.
    overwrite : bool
        Replace what ``out_dir`` holds (our files only) instead of raising.
    tp_fraction : float
        Share of train recordings with TP boxes (0..1). Small demos raise it
        to get enough labelled calls per species from few recordings.

    Returns
    -------
    dict
        ``generated`` (False if a matching dataset was already there), the
        paths, and counts: ``n_train``, ``n_test``, ``n_species``,
        ``n_tp_rows``, ``n_fp_rows``, ``n_tp_recordings``,
        ``n_fp_recordings``, ``n_train_calls``, ``n_test_calls``, and
        ``seconds_per_recording``.

    Raises
    ------
    ValueError
        An argument is out of range.
    SyntheticDatasetError
        ``out_dir`` holds something else and ``overwrite`` is False.

    Example
    -------
    >>> import tempfile, pandas as pd
    >>> out = tempfile.mkdtemp()
    >>> summary = generate_rfcx_dataset(
    ...     out, n_train=3, n_test=2, duration=3.0, sample_rate=8000, n_species=4
    ... )
    >>> truth = pd.read_csv(summary["test_ground_truth"])
    >>> list(truth.columns)
    ['recording_id', 's0', 's1', 's2', 's3']
    >>> bool((truth.iloc[:, 1:].sum(axis=1) >= 1).all())
    True
    """
    _validate(out_dir, n_train, n_test, seed, duration, sample_rate, n_species)
    if not 0.0 <= tp_fraction <= 1.0:
        raise ValueError(f"tp_fraction must be in 0..1, got {tp_fraction!r}")
    n_train, n_test, seed = int(n_train), int(n_test), int(seed)
    sample_rate, n_species, duration = int(sample_rate), int(n_species), float(duration)
    out_dir = Path(out_dir)
    arguments = {
        "format_version": FORMAT_VERSION,
        "n_train": n_train,
        "n_test": n_test,
        "seed": seed,
        "duration": duration,
        "sample_rate": sample_rate,
        "n_species": n_species,
        "tp_fraction": float(tp_fraction),
    }
    paths = {"out_dir": str(out_dir)}
    paths.update({k: str(out_dir / v) for k, v in _CSV_NAMES.items()})
    paths.update(
        {"train_dir": str(out_dir / "train"), "test_dir": str(out_dir / "test")}
    )
    found = _existing_dataset(out_dir, arguments, overwrite)
    if found is not None:
        logger.info("Synthetic RFCX data already complete in %s; skipping", out_dir)
        return {**found, **paths, "generated": False}

    began = time.perf_counter()
    species = SPECIES[:n_species]
    train_ids, test_ids = _recording_ids(seed, n_train, n_test)
    for split in ("train", "test"):
        (out_dir / split).mkdir(parents=True, exist_ok=True)
    tp, fp, train_calls = _generate_train(
        out_dir / "train", train_ids, species, seed, duration, sample_rate, tp_fraction
    )
    test_calls, truth = _generate_test(
        out_dir / "test", test_ids, species, seed, duration, sample_rate
    )
    _write_csv(paths["train_tp"], RFCX_COLUMNS, _box_rows(tp))
    _write_csv(paths["train_fp"], RFCX_COLUMNS, _box_rows(fp))
    _write_csv(paths["train_all_calls"], RFCX_COLUMNS, _box_rows(train_calls))
    _write_csv(paths["test_boxes"], RFCX_COLUMNS, _box_rows(test_calls))
    score_header = ["recording_id"] + species_columns(n_species)
    _write_csv(
        paths["sample_submission"],
        score_header,
        [[rid] + [0] * n_species for rid in sorted(truth)],
    )
    _write_csv(
        paths["test_ground_truth"],
        score_header,
        [
            [rid] + [int(i in truth[rid]) for i in range(n_species)]
            for rid in sorted(truth)
        ],
    )
    seconds = time.perf_counter() - began
    summary = {
        "n_train": n_train,
        "n_test": n_test,
        "n_species": n_species,
        "n_tp_rows": len(tp),
        "n_fp_rows": len(fp),
        "n_tp_recordings": len({row[0] for row in tp}),
        "n_fp_recordings": len({row[0] for row in fp}),
        "n_train_calls": len(train_calls),
        "n_test_calls": len(test_calls),
        "seconds_per_recording": round(seconds / (n_train + n_test), 4),
    }
    info = {"arguments": arguments, "summary": summary}
    write_record(out_dir / INFO_FILENAME, info)
    logger.info(
        "Wrote %d train and %d test synthetic recordings to %s (%.3f s each)",
        n_train,
        n_test,
        out_dir,
        summary["seconds_per_recording"],
    )
    return {**summary, **paths, "generated": True}


def main(argv=None):
    """Command line: ``python -m speechbrain_rfcx.data.synthetic --out DIR``.

    Arguments
    ---------
    argv : list of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Example
    -------
    >>> import tempfile
    >>> main(["--out", tempfile.mkdtemp(), "--n-train", "1", "--n-test", "1",
    ...       "--duration", "3", "--sample-rate", "8000"])  # doctest: +ELLIPSIS
    generated 1 train / 1 test recordings in ...
    """
    parser = argparse.ArgumentParser(
        description="Write a synthetic RFCX-format soundscape dataset."
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    parser.add_argument("--n-train", type=int, default=200)
    parser.add_argument("--n-test", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds")
    parser.add_argument("--sample-rate", type=int, default=48000, help="Hz")
    parser.add_argument("--n-species", type=int, default=len(SPECIES))
    parser.add_argument(
        "--tp-fraction", type=float, default=0.25, help="share of TP-labelled files"
    )
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    summary = generate_rfcx_dataset(
        args.out,
        n_train=args.n_train,
        n_test=args.n_test,
        seed=args.seed,
        duration=args.duration,
        sample_rate=args.sample_rate,
        n_species=args.n_species,
        overwrite=args.overwrite,
        tp_fraction=args.tp_fraction,
    )
    verb = "generated" if summary["generated"] else "already complete:"
    print(
        f"{verb} {summary['n_train']} train / {summary['n_test']} test recordings "
        f"in {summary['out_dir']}\n"
        f"  TP rows {summary['n_tp_rows']} in {summary['n_tp_recordings']} "
        f"recordings, FP rows {summary['n_fp_rows']} in "
        f"{summary['n_fp_recordings']} recordings, calls rendered "
        f"{summary['n_train_calls']} train / {summary['n_test_calls']} test"
    )


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
