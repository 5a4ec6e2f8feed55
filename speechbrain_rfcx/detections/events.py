"""Framewise probabilities to timed events: :class:`Detection`, thresholds.

A trained model gives, per recording, framewise probabilities ``(T, C)``;
:func:`frames_to_detections` turns them into timed events: runs of frames at
or above a threshold, merged across short gaps, with the species' frequency
band (:func:`~speechbrain_rfcx.data.annotations.species_bands`). Per-species
thresholds can be read from a CSV (:func:`read_thresholds`).

Everything here is a pure function of numpy arrays; no model is involved.
"""

import math
import numbers
from dataclasses import dataclass

import numpy as np

from speechbrain_rfcx.data.annotations import read_species_values


@dataclass(frozen=True)
class Detection:
    """One timed (and optionally band-limited) detection of one species.

    Arguments
    ---------
    species_id : int
        Species index (non-negative).
    t_min, t_max : float
        Start and end in seconds from the start of the recording.
    score : float
        Confidence, usually the highest frame probability of the event.
    f_min, f_max : float, optional
        Frequency band in Hz; both None when unknown.

    Example
    -------
    >>> d = Detection(species_id=3, t_min=1.0, t_max=2.5, score=0.9,
    ...               f_min=500.0, f_max=2000.0)
    >>> d.duration
    1.5
    >>> Detection(3, 2.0, 1.0, 0.9)
    Traceback (most recent call last):
    ...
    ValueError: Detection t_min 2.0 is after t_max 1.0
    """

    species_id: int
    t_min: float
    t_max: float
    score: float
    f_min: float = None
    f_max: float = None

    def __post_init__(self):
        if int(self.species_id) != self.species_id or self.species_id < 0:
            raise ValueError(
                f"Detection species_id must be a non-negative integer, "
                f"got {self.species_id!r}"
            )
        object.__setattr__(self, "species_id", int(self.species_id))
        for field in ("t_min", "t_max", "score"):
            value = float(getattr(self, field))
            if not math.isfinite(value):
                raise ValueError(f"Detection {field} must be finite, got {value}")
            object.__setattr__(self, field, value)
        if self.t_min > self.t_max:
            raise ValueError(
                f"Detection t_min {self.t_min} is after t_max {self.t_max}"
            )
        if (self.f_min is None) != (self.f_max is None):
            raise ValueError(
                "Detection f_min and f_max must both be given or both be None, "
                f"got f_min={self.f_min!r}, f_max={self.f_max!r}"
            )
        if self.f_min is not None:
            for field in ("f_min", "f_max"):
                value = float(getattr(self, field))
                if not math.isfinite(value) or value < 0:
                    raise ValueError(
                        f"Detection {field} must be a non-negative number, got {value}"
                    )
                object.__setattr__(self, field, value)
            if self.f_min > self.f_max:
                raise ValueError(
                    f"Detection f_min {self.f_min} is above f_max {self.f_max}"
                )

    @property
    def duration(self):
        """Length of the detection in seconds."""
        return self.t_max - self.t_min

    @property
    def has_band(self):
        """Whether the frequency band is known."""
        return self.f_min is not None


def _frame_edges(n_frames, frame_times, frame_hop, frame_offset):
    """``(T + 1,)`` frame boundaries in seconds from frame-centre times."""
    if (frame_times is None) == (frame_hop is None):
        raise ValueError("give exactly one of frame_times and frame_hop")
    if frame_hop is not None:
        if not (math.isfinite(frame_hop) and frame_hop > 0):
            raise ValueError(f"frame_hop must be a positive number, got {frame_hop!r}")
        if not math.isfinite(frame_offset):
            raise ValueError(f"frame_offset must be finite, got {frame_offset!r}")
        centres = frame_offset + frame_hop * np.arange(n_frames, dtype=float)
        edges = frame_offset + frame_hop * (np.arange(n_frames + 1) - 0.5)
    else:
        centres = np.asarray(frame_times, dtype=float)
        if centres.shape != (n_frames,):
            raise ValueError(
                f"frame_times must have shape ({n_frames},) to match frame_probs, "
                f"got {centres.shape}"
            )
        if not np.isfinite(centres).all():
            raise ValueError("frame_times must be finite")
        if n_frames < 2:
            raise ValueError("a single frame has no spacing: give frame_hop instead")
        if not (np.diff(centres) > 0).all():
            raise ValueError("frame_times must be strictly increasing")
        middles = (centres[1:] + centres[:-1]) / 2
        first = centres[0] - (centres[1] - centres[0]) / 2
        last = centres[-1] + (centres[-1] - centres[-2]) / 2
        edges = np.concatenate([[first], middles, [last]])
    if n_frames and centres[0] >= 0:
        edges[0] = max(edges[0], 0.0)  # nothing happens before the recording
    return edges


def _thresholds(threshold, n_classes, default_threshold):
    """Per-species thresholds ``(C,)`` from a float, a ``(C,)`` array or a dict."""
    if isinstance(threshold, dict):
        values = np.full(n_classes, float(default_threshold))
        for species, value in threshold.items():
            if not isinstance(species, (int, np.integer)) or not (
                0 <= species < n_classes
            ):
                raise ValueError(
                    f"threshold species_id {species!r} is outside 0..{n_classes - 1}"
                )
            values[int(species)] = value
    else:
        values = np.asarray(threshold, dtype=float)
        if values.ndim == 0:
            values = np.full(n_classes, float(values))
        elif values.shape != (n_classes,):
            raise ValueError(
                f"threshold must be a float or have shape ({n_classes},), "
                f"got {values.shape}"
            )
    if not np.isfinite(values).all():
        bad = int(np.flatnonzero(~np.isfinite(values))[0])
        raise ValueError(f"threshold of species {bad} is not finite ({values[bad]})")
    return values


def _runs(mask):
    """``(starts, stops)`` of the runs of True in a 1-D boolean array."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    change = np.diff(padded)
    return np.flatnonzero(change == 1), np.flatnonzero(change == -1)


def check_event_options(min_duration=0.0, merge_gap=0.0):
    """Raise unless ``min_duration`` and ``merge_gap`` are non-negative, finite
    seconds (the check of :func:`frames_to_detections` and ``rfcx-detect``).

    Example
    -------
    >>> check_event_options(0.3, 0.5)
    >>> check_event_options(merge_gap=float("inf"))
    Traceback (most recent call last):
    ...
    ValueError: merge_gap must be a non-negative, finite number of seconds, got inf
    """
    for field, value in (("min_duration", min_duration), ("merge_gap", merge_gap)):
        number = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if not (number and math.isfinite(value) and value >= 0):
            raise ValueError(
                f"{field} must be a non-negative, finite number of seconds, got {value!r}"
            )


def frames_to_detections(
    frame_probs,
    frame_times=None,
    threshold=0.5,
    min_duration=0.0,
    merge_gap=0.0,
    species_bands=None,
    frame_hop=None,
    frame_offset=0.0,
    default_threshold=0.5,
    duration=None,
):
    """Framewise probabilities to timed detections, species by species.

    Frames are described by their **centre** times, either listed
    (``frame_times``) or regular (centre of frame ``i`` at
    ``frame_offset + i * frame_hop``; ``frame_offset=0`` for centred STFT
    frames, ``frame_hop / 2`` for frames tiling the recording from 0). A frame
    spans half-way to its neighbours (the first and last frames as far as
    their neighbour's spacing); a start before 0 s is clipped to 0 s, an end
    past ``duration`` (the recording's length, when given) to ``duration``.

    For each species: frames with a probability at or above its threshold form
    runs; runs separated by a gap of at most ``merge_gap`` seconds are merged;
    merged events shorter than ``min_duration`` seconds are dropped. An
    event's score is its highest frame probability.

    Arguments
    ---------
    frame_probs : array_like
        ``(T, C)`` framewise probabilities.
    frame_times : array_like, optional
        ``(T,)`` strictly increasing frame-centre times in seconds.
    threshold : float, array_like or dict
        One threshold, one per species ``(C,)``, or ``{species_id: threshold}``
        (species not listed use ``default_threshold``).
    min_duration : float
        Shortest event kept, in seconds.
    merge_gap : float
        Runs whose gap is at most this many seconds become one event.
    species_bands : dict, optional
        ``species_id -> (f_min, f_max)`` in Hz (see
        :func:`~speechbrain_rfcx.data.annotations.species_bands`);
        species without a band get ``f_min = f_max = None``.
    frame_hop : float, optional
        Frame spacing in seconds, instead of ``frame_times``.
    frame_offset : float
        Centre of the first frame in seconds when ``frame_hop`` is given.
    default_threshold : float
        Threshold of species missing from a ``threshold`` dict.
    duration : float, optional
        Length of the recording in seconds: no event ends after it.

    Returns
    -------
    list of Detection
        Sorted by start time, then species.

    Example
    -------
    >>> probs = np.zeros((10, 2))
    >>> probs[2:5, 1] = [0.6, 0.9, 0.7]
    >>> frames_to_detections(probs, frame_hop=0.5, frame_offset=0.25)
    [Detection(species_id=1, t_min=1.0, t_max=2.5, score=0.9, f_min=None, f_max=None)]
    >>> frames_to_detections(probs, frame_hop=0.5, threshold={1: 0.8},
    ...                      species_bands={1: (500.0, 900.0)})
    [Detection(species_id=1, t_min=1.25, t_max=1.75, score=0.9, f_min=500.0, f_max=900.0)]
    """
    probs = np.asarray(frame_probs, dtype=float)
    if probs.ndim != 2:
        raise ValueError(f"frame_probs must have shape (T, C), got {probs.shape}")
    if not np.isfinite(probs).all():
        raise ValueError("frame_probs holds non-finite values")
    check_event_options(min_duration, merge_gap)
    n_frames, n_classes = probs.shape
    edges = _frame_edges(n_frames, frame_times, frame_hop, frame_offset)
    if duration is not None:
        edges = np.minimum(edges, float(duration))
    thresholds = _thresholds(threshold, n_classes, default_threshold)
    bands = species_bands or {}
    tolerance = 1e-9  # frame edges come from float arithmetic
    detections = []
    for species in range(n_classes):
        starts, stops = _runs(probs[:, species] >= thresholds[species])
        if len(starts) == 0:
            continue
        gaps = edges[starts[1:]] - edges[stops[:-1]]
        new_event = np.concatenate([[True], gaps > merge_gap + tolerance])
        first_runs = np.flatnonzero(new_event)
        last_runs = np.concatenate([first_runs[1:] - 1, [len(starts) - 1]])
        f_min, f_max = bands.get(species, (None, None))
        for first, last in zip(first_runs, last_runs):
            start, stop = starts[first], stops[last]
            t_min, t_max = float(edges[start]), float(edges[stop])
            if t_max <= t_min or t_max - t_min < min_duration - tolerance:
                continue  # (empty: an event wholly past ``duration``)
            detections.append(
                Detection(
                    species_id=species,
                    t_min=t_min,
                    t_max=t_max,
                    score=float(probs[start:stop, species].max()),
                    f_min=f_min,
                    f_max=f_max,
                )
            )
    detections.sort(key=lambda d: (d.t_min, d.species_id))
    return detections


def read_thresholds(path, n_classes):
    """Per-species thresholds from a CSV with ``species_id,threshold`` columns.

    Species not listed keep the default threshold (``--threshold`` of
    ``rfcx-detect``).

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "t.csv")
    >>> _ = open(path, "w").write("species_id,threshold\\n3,0.8\\n")
    >>> read_thresholds(path, 24)
    {3: 0.8}
    """
    return read_species_values(
        path, "threshold", n_classes, lambda v: 0.0 <= v <= 1.0, "[0, 1]"
    )


def full_bands(bands, n_classes, sample_rate):
    """Every species' band: the known ones, the full band (0 to Nyquist) else.

    Example
    -------
    >>> full_bands({1: (500.0, 900.0)}, 2, 16000)
    {0: (0.0, 8000.0), 1: (500.0, 900.0)}
    """
    known = bands or {}
    nyquist = sample_rate / 2
    return {c: known.get(c, (0.0, float(nyquist))) for c in range(n_classes)}
