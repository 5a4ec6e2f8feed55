"""From model scores to what users open: timed detections, tables, submissions.

A trained model gives, per recording, clip probabilities ``(C,)`` and
framewise probabilities ``(T, C)``. This module turns them into

* timed events (:func:`frames_to_detections`): runs of frames at or above a
  threshold, merged across short gaps, with the species' frequency band;
* files for listening tools: Raven selection tables, Audacity label tracks,
  and a CSV in RFCX-like columns;
* Kaggle submissions (:func:`write_submission`) and the class-prior
  post-processing of the best RFCX solutions (:func:`rescale_to_priors`).

Everything here is a pure function of numpy arrays or pandas frames; no model
is involved. Every file is written atomically (temporary file, then rename), so
an interrupted run never leaves half a table behind.

Authors
 * speechbrain-rfcx contributors
"""

import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from speechbrain_rfcx._io import write_atomically
from speechbrain_rfcx.data.annotations import AnnotationError

RAVEN_COLUMNS = (
    "Selection",
    "View",
    "Channel",
    "Begin Time (s)",
    "End Time (s)",
    "Low Freq (Hz)",
    "High Freq (Hz)",
    "Species ID",
    "Species",
    "Score",
)
DETECTION_CSV_COLUMNS = (
    "recording_id",
    "species_id",
    "t_min",
    "f_min",
    "t_max",
    "f_max",
    "score",
)
_SPECIES_COLUMN = re.compile(r"s(\d+)")


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


# ---------------------------------------------------------------------------
# Frames to events
# ---------------------------------------------------------------------------


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
):
    """Framewise probabilities to timed detections, species by species.

    Frames are described by their **centre** times, either listed
    (``frame_times``) or regular (centre of frame ``i`` at
    ``frame_offset + i * frame_hop``; ``frame_offset=0`` for centred STFT
    frames, ``frame_hop / 2`` for frames tiling the recording from 0). A frame
    spans half-way to its neighbours (the first and last frames as far as
    their neighbour's spacing); a start before 0 s is clipped to 0 s.

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
        ``species_id -> (f_min, f_max)`` in Hz (see :func:`species_bands`);
        species without a band get ``f_min = f_max = None``.
    frame_hop : float, optional
        Frame spacing in seconds, instead of ``frame_times``.
    frame_offset : float
        Centre of the first frame in seconds when ``frame_hop`` is given.
    default_threshold : float
        Threshold of species missing from a ``threshold`` dict.

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
    for field, value in (("min_duration", min_duration), ("merge_gap", merge_gap)):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{field} must be a non-negative number, got {value!r}")
    n_frames, n_classes = probs.shape
    edges = _frame_edges(n_frames, frame_times, frame_hop, frame_offset)
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
            if t_max - t_min < min_duration - tolerance:
                continue
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


def species_bands(boxes, quantiles=(0.05, 0.95)):
    """The frequency band of each species in a set of annotation boxes.

    The band runs from the ``quantiles[0]`` quantile of the boxes' ``f_min``
    to the ``quantiles[1]`` quantile of their ``f_max`` (linear
    interpolation, as :meth:`pandas.Series.quantile`), so a few badly drawn
    boxes do not widen it. ``(0, 1)`` gives the full extent.

    Arguments
    ---------
    boxes : pandas.DataFrame or list
        A frame with ``species_id``, ``f_min``, ``f_max`` columns (as
        :func:`~speechbrain_rfcx.data.annotations.read_rfcx_csv` returns), or
        a list of :class:`~speechbrain_rfcx.data.annotations.Box`.
    quantiles : tuple of float
        Lower and upper quantile, ``0 <= low < high <= 1``.

    Returns
    -------
    dict
        ``species_id -> (f_min, f_max)`` in Hz, species in increasing order.

    Example
    -------
    >>> from speechbrain_rfcx.data.annotations import Box
    >>> boxes = [Box(3, 1, 0.0, 1000.0, 1.0, 2000.0),
    ...          Box(3, 1, 5.0, 1200.0, 6.0, 3000.0)]
    >>> species_bands(boxes, quantiles=(0.0, 1.0))
    {3: (1000.0, 3000.0)}
    """
    low, high = quantiles
    if not 0 <= low < high <= 1:
        raise ValueError(
            f"quantiles must satisfy 0 <= low < high <= 1, got {quantiles}"
        )
    if isinstance(boxes, pd.DataFrame):
        missing = [c for c in ("species_id", "f_min", "f_max") if c not in boxes]
        if missing:
            raise ValueError(f"boxes lacks column(s) {', '.join(missing)}")
        frame = boxes[["species_id", "f_min", "f_max"]]
    else:
        frame = pd.DataFrame(
            {
                "species_id": [b.species_id for b in boxes],
                "f_min": [b.f_min for b in boxes],
                "f_max": [b.f_max for b in boxes],
            }
        )
    bands = {}
    for species, group in frame.groupby("species_id", sort=True):
        bands[int(species)] = (
            float(group["f_min"].astype(float).quantile(low)),
            float(group["f_max"].astype(float).quantile(high)),
        )
    return bands


# ---------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------


def _species_name(species_id, species_names):
    """The display name of a species: from ``species_names`` or ``s<id>``."""
    name = None
    if species_names is not None:
        if isinstance(species_names, dict):
            name = species_names.get(species_id)
        elif species_id < len(species_names):
            name = species_names[species_id]
    name = f"s{species_id}" if name is None else str(name)
    if any(c in name for c in "\t\r\n") or not name.strip():
        raise ValueError(f"species name {name!r} of species {species_id} is not usable")
    return name


def _name_to_id(species_names):
    """``name -> species_id`` for the names of ``species_names``."""
    if species_names is None:
        return {}
    items = (
        species_names.items()
        if isinstance(species_names, dict)
        else enumerate(species_names)
    )
    return {str(name): int(species) for species, name in items}


def _number(text, path, line, field):
    """Parse one numeric cell, or raise naming the file, line and field."""
    try:
        value = float(text)
    except ValueError:
        raise AnnotationError(
            f"{path} line {line}: {field} {text!r} is not a number"
        ) from None
    if not math.isfinite(value):
        raise AnnotationError(f"{path} line {line}: {field} {text!r} is not finite")
    return value


def _detection(path, line, **fields):
    """Build a Detection, reporting a bad value with the file and line."""
    try:
        return Detection(**fields)
    except ValueError as e:
        raise AnnotationError(f"{path} line {line}: {e}") from None


def _band_cells(detection, decimals):
    if not detection.has_band:
        return "", ""
    return f"{detection.f_min:.{decimals}f}", f"{detection.f_max:.{decimals}f}"


def write_raven_table(path, detections, species_names=None):
    """Write a Raven selection table (tab separated, one row per detection).

    Columns: the standard ``Selection, View ("Spectrogram 1"), Channel (1),
    Begin Time (s), End Time (s), Low Freq (Hz), High Freq (Hz)``, then
    ``Species ID``, ``Species`` and ``Score``. Selections are numbered from 1
    in the order given. A detection without a band gets empty frequency cells;
    Raven Pro wants numbers there, so give it detections with bands.

    Arguments
    ---------
    path : str
        Output file (usually ``<recording>.Table.1.selections.txt``).
    detections : list of Detection
        The detections of one recording.
    species_names : list or dict, optional
        ``species_id -> name`` for the ``Species`` column (default ``s<id>``).

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "a.txt")
    >>> write_raven_table(path, [Detection(2, 1.0, 2.0, 0.75, 100.0, 900.0)])
    >>> print(open(path).read().replace("\\t", "|"))
    Selection|View|Channel|Begin Time (s)|End Time (s)|Low Freq (Hz)|High Freq (Hz)|Species ID|Species|Score
    1|Spectrogram 1|1|1.000000|2.000000|100.000|900.000|2|s2|0.750000
    <BLANKLINE>
    """
    lines = ["\t".join(RAVEN_COLUMNS)]
    for number, d in enumerate(detections, start=1):
        low, high = _band_cells(d, 3)
        cells = [
            str(number),
            "Spectrogram 1",
            "1",
            f"{d.t_min:.6f}",
            f"{d.t_max:.6f}",
            low,
            high,
            str(d.species_id),
            _species_name(d.species_id, species_names),
            f"{d.score:.6f}",
        ]
        lines.append("\t".join(cells))
    write_atomically(path, "\n".join(lines) + "\n")


def read_raven_table(path):
    """Read the detections of a Raven selection table.

    Reads what :func:`write_raven_table` writes, and tables Raven saved again:
    columns are found by name (extra measurement columns are ignored), and a
    selection listed once per view (Raven repeats rows for every view) is
    read once. Empty ``Low/High Freq`` cells, or no such columns, give
    detections without a band.

    Arguments
    ---------
    path : str
        The tab-separated table.

    Returns
    -------
    list of Detection
        In the order of the file.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "a.txt")
    >>> write_raven_table(path, [Detection(2, 1.0, 2.0, 0.75, 100.0, 900.0)])
    >>> read_raven_table(path)
    [Detection(species_id=2, t_min=1.0, t_max=2.0, score=0.75, f_min=100.0, f_max=900.0)]
    """
    with open(path, encoding="utf-8-sig") as f:
        lines = f.read().splitlines()
    if not lines or not lines[0].strip():
        raise AnnotationError(f"{path} line 1: no header (empty file)")
    header = lines[0].split("\t")
    required = ("Begin Time (s)", "End Time (s)", "Species ID", "Score")
    missing = [c for c in required if c not in header]
    if missing:
        raise AnnotationError(
            f"{path} line 1: missing column(s) {', '.join(missing)} in the header"
        )
    has_band = "Low Freq (Hz)" in header and "High Freq (Hz)" in header
    column = {name: i for i, name in reversed(list(enumerate(header)))}
    seen_selections = set()
    detections = []
    for line_number, text in enumerate(lines[1:], start=2):
        if not text.strip():
            continue
        cells = text.split("\t")
        if len(cells) != len(header):
            raise AnnotationError(
                f"{path} line {line_number}: {len(cells)} fields, the header has "
                f"{len(header)}"
            )
        if "Selection" in column:
            selection = cells[column["Selection"]].strip()
            if selection in seen_selections:
                continue
            seen_selections.add(selection)
        fields = {}
        for name, key in (
            ("Begin Time (s)", "t_min"),
            ("End Time (s)", "t_max"),
            ("Species ID", "species_id"),
            ("Score", "score"),
        ):
            fields[key] = _number(cells[column[name]], path, line_number, name)
        if not fields["species_id"].is_integer():
            raise AnnotationError(
                f"{path} line {line_number}: Species ID "
                f"{cells[column['Species ID']]!r} is not an integer"
            )
        if has_band:
            low = cells[column["Low Freq (Hz)"]].strip()
            high = cells[column["High Freq (Hz)"]].strip()
            if low or high:
                fields["f_min"] = _number(low, path, line_number, "Low Freq (Hz)")
                fields["f_max"] = _number(high, path, line_number, "High Freq (Hz)")
        detections.append(_detection(path, line_number, **fields))
    return detections


def write_audacity_labels(path, detections, species_names=None):
    """Write an Audacity label track (File > Import > Labels).

    One ``start<TAB>end<TAB>label`` line per detection; the label is the
    species name (default ``s<id>``) and the score to three decimals, e.g.
    ``s3 0.870``. When the band is known, Audacity's spectral-selection line
    ``\\<TAB>f_min<TAB>f_max`` follows the label line.

    Arguments
    ---------
    path : str
        Output ``.txt`` file.
    detections : list of Detection
        The detections of one recording.
    species_names : list or dict, optional
        ``species_id -> name`` for the labels.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "labels.txt")
    >>> write_audacity_labels(path, [Detection(3, 1.0, 2.0, 0.87, 500.0, 900.0),
    ...                              Detection(0, 4.0, 5.5, 0.6)])
    >>> print(open(path).read().replace("\\t", "|"))
    1.000000|2.000000|s3 0.870
    \\|500.000000|900.000000
    4.000000|5.500000|s0 0.600
    <BLANKLINE>
    """
    lines = []
    for d in detections:
        name = _species_name(d.species_id, species_names)
        lines.append(f"{d.t_min:.6f}\t{d.t_max:.6f}\t{name} {d.score:.3f}")
        if d.has_band:
            low, high = _band_cells(d, 6)
            lines.append(f"\\\t{low}\t{high}")
    write_atomically(path, "".join(line + "\n" for line in lines))


def read_audacity_labels(path, species_names=None):
    """Read an Audacity label track written by :func:`write_audacity_labels`.

    Labels must read ``<species> <score>``, the species being a name of
    ``species_names`` or ``s<id>``. A spectral-selection line (``\\`` first)
    gives the band of the label above it; negative frequencies (Audacity's
    "undefined") leave the band unknown.

    Arguments
    ---------
    path : str
        The label file.
    species_names : list or dict, optional
        ``species_id -> name``, as given to the writer.

    Returns
    -------
    list of Detection
        In the order of the file.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "labels.txt")
    >>> write_audacity_labels(path, [Detection(1, 1.0, 2.0, 0.5, 500.0, 900.0)],
    ...                       species_names=["coqui", "tink frog"])
    >>> read_audacity_labels(path, species_names=["coqui", "tink frog"])
    [Detection(species_id=1, t_min=1.0, t_max=2.0, score=0.5, f_min=500.0, f_max=900.0)]
    """
    ids_by_name = _name_to_id(species_names)
    with open(path, encoding="utf-8-sig") as f:
        lines = f.read().splitlines()
    detections = []  # (line number, fields) until the band is known
    band_line_allowed = False
    for line_number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        cells = text.split("\t")
        if cells[0] == "\\":
            if len(cells) != 3:
                raise AnnotationError(
                    f"{path} line {line_number}: a frequency line needs "
                    f"'\\<TAB>f_min<TAB>f_max', got {len(cells)} fields"
                )
            if not band_line_allowed:
                raise AnnotationError(
                    f"{path} line {line_number}: frequency line without a label "
                    "line above it"
                )
            low = _number(cells[1], path, line_number, "f_min")
            high = _number(cells[2], path, line_number, "f_max")
            if low >= 0 and high >= 0:
                detections[-1][1].update(f_min=low, f_max=high)
            band_line_allowed = False
            continue
        if len(cells) != 3:
            raise AnnotationError(
                f"{path} line {line_number}: a label line needs "
                f"'start<TAB>end<TAB>label', got {len(cells)} fields"
            )
        t_min = _number(cells[0], path, line_number, "start")
        t_max = _number(cells[1], path, line_number, "end")
        species_text, _, score_text = cells[2].strip().rpartition(" ")
        if species_text in ids_by_name:
            species = ids_by_name[species_text]
        elif re.fullmatch(r"s\d+", species_text):
            species = int(species_text[1:])
        else:
            raise AnnotationError(
                f"{path} line {line_number}: label {cells[2]!r} is not "
                "'<species> <score>' with a known species name or s<id>"
            )
        score = _number(score_text, path, line_number, "score")
        detections.append(
            (
                line_number,
                dict(species_id=species, t_min=t_min, t_max=t_max, score=score),
            )
        )
        band_line_allowed = True
    return [_detection(path, line, **fields) for line, fields in detections]


def write_detections_csv(path, detections, recording_id=None):
    """Write detections as CSV in RFCX-like columns plus the score.

    Columns ``recording_id,species_id,t_min,f_min,t_max,f_max,score``; an
    unknown band leaves ``f_min`` and ``f_max`` empty.

    Arguments
    ---------
    path : str
        Output CSV file.
    detections : list of Detection or dict
        The detections of one recording, or ``{recording_id: detections}``
        for many (then ``recording_id`` must be None).
    recording_id : str, optional
        The recording of a list of detections; without it, the
        ``recording_id`` column is left out.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "d.csv")
    >>> write_detections_csv(path, {"rec1": [Detection(3, 1.0, 2.0, 0.5)]})
    >>> print(open(path).read())
    recording_id,species_id,t_min,f_min,t_max,f_max,score
    rec1,3,1.0,,2.0,,0.5
    <BLANKLINE>
    """
    if isinstance(detections, dict):
        if recording_id is not None:
            raise ValueError("recording_id must be None when detections is a dict")
        by_recording = detections
    else:
        by_recording = {recording_id: detections}
    rows = [
        (rid, d.species_id, d.t_min, d.f_min, d.t_max, d.f_max, d.score)
        for rid, recording_detections in by_recording.items()
        for d in recording_detections
    ]
    frame = pd.DataFrame(rows, columns=list(DETECTION_CSV_COLUMNS))
    frame["species_id"] = frame["species_id"].astype(int)
    if recording_id is None and not isinstance(detections, dict):
        frame = frame.drop(columns="recording_id")
    write_atomically(path, frame.to_csv(index=False, lineterminator="\n"))


# ---------------------------------------------------------------------------
# Submissions and post-processing
# ---------------------------------------------------------------------------


def _species_columns(n_classes):
    return [f"s{c}" for c in range(n_classes)]


def _check_ids(ids, what):
    seen = set()
    for rid in ids:
        if rid in seen:
            raise ValueError(f"recording {rid!r} appears twice in {what}")
        seen.add(rid)


def write_submission(path, recording_ids, clip_scores, sample_submission=None):
    """Write a Kaggle submission: ``recording_id,s0,...,s{C-1}``.

    With ``sample_submission``, the file has exactly its rows, in its order,
    and its columns, in their order; a recording missing from either side, or
    a species column that does not match the scores, is an error naming it.

    Arguments
    ---------
    path : str
        Output CSV file.
    recording_ids : list of str
        ``N`` recording ids, the rows of ``clip_scores``.
    clip_scores : array_like
        ``(N, C)`` finite scores.
    sample_submission : str, optional
        The competition's ``sample_submission.csv``.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "submission.csv")
    >>> write_submission(path, ["b", "a"], [[0.25, 0.5], [1.0, 0.0]])
    >>> print(open(path).read())
    recording_id,s0,s1
    b,0.25,0.5
    a,1.0,0.0
    <BLANKLINE>
    """
    scores = np.asarray(clip_scores, dtype=float)
    ids = [str(rid) for rid in recording_ids]
    if scores.ndim != 2 or scores.shape[0] != len(ids):
        raise ValueError(
            f"clip_scores must have shape ({len(ids)}, C) for {len(ids)} "
            f"recording_ids, got {scores.shape}"
        )
    if not np.isfinite(scores).all():
        row = int(np.flatnonzero(~np.isfinite(scores).all(axis=1))[0])
        raise ValueError(f"clip_scores of recording {ids[row]!r} are not finite")
    _check_ids(ids, "recording_ids")
    columns = _species_columns(scores.shape[1])
    frame = pd.DataFrame(scores, columns=columns)
    frame.insert(0, "recording_id", ids)
    if sample_submission is not None:
        sample = pd.read_csv(sample_submission, dtype={"recording_id": str})
        if "recording_id" not in sample.columns:
            raise ValueError(f"{sample_submission}: no recording_id column")
        sample_columns = [c for c in sample.columns if c != "recording_id"]
        unknown = [c for c in sample_columns if c not in columns]
        if unknown:
            raise ValueError(
                f"{sample_submission}: column(s) {', '.join(unknown)} have no scores "
                f"(clip_scores has {len(columns)} species)"
            )
        unused = [c for c in columns if c not in sample_columns]
        if unused:
            raise ValueError(
                f"{sample_submission}: lacks column(s) {', '.join(unused)} of the "
                "scores"
            )
        order = list(sample["recording_id"])
        _check_ids(order, str(sample_submission))
        scored, wanted = set(ids), set(order)
        missing = [rid for rid in order if rid not in scored]
        if missing:
            raise ValueError(
                f"no scores for {len(missing)} recording(s) of {sample_submission}, "
                f"first {missing[0]!r}"
            )
        extra = [rid for rid in ids if rid not in wanted]
        if extra:
            raise ValueError(
                f"{len(extra)} scored recording(s) are not in {sample_submission}, "
                f"first {extra[0]!r}"
            )
        frame = frame.set_index("recording_id").loc[order, sample_columns]
        frame = frame.reset_index()[list(sample.columns)]
    write_atomically(path, frame.to_csv(index=False, lineterminator="\n"))


def _sigmoid(x):
    """Logistic function, exact at +-inf and free of overflow."""
    decay = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + decay), decay / (1.0 + decay))


def rescale_to_priors(scores, priors, strength=1.0, n_iterations=80):
    """Move each species' mean score toward its prior (class-prior post-processing).

    Per species ``c``, with column mean ``m_c`` and prior ``p_c``, the target
    mean interpolates in log space::

        target_c = m_c ** (1 - strength) * p_c ** strength

    and every score of the column gets the same logit shift ``b_c``::

        s'_nc = sigmoid(logit(s_nc) + b_c),   mean_n s'_nc = target_c

    (``b_c`` found by bisection). The map is strictly increasing, so the
    order within a column is kept and only the ranking *across* species (what
    lwlrap scores within a recording) changes; scores stay in ``[0, 1]``
    (exact 0 and 1 stay put). ``strength=0`` is the identity; ``strength=1``
    hits the prior unless the column holds only 0s and 1s (then it is left as
    it is: no shift can move it).

    Arguments
    ---------
    scores : array_like
        ``(N, C)`` probabilities in ``[0, 1]``.
    priors : array_like
        ``(C,)`` expected fraction of recordings with each species, in ``(0, 1)``.
    strength : float
        Interpolation weight in ``[0, 1]``.
    n_iterations : int
        Bisection steps (80 resolve the shift to below 1e-20).

    Returns
    -------
    numpy.ndarray
        ``(N, C)`` rescaled scores.

    Example
    -------
    >>> scores = np.array([[0.1, 0.5], [0.3, 0.7]])
    >>> out = rescale_to_priors(scores, priors=[0.4, 0.6])
    >>> out.mean(axis=0).round(6).tolist()
    [0.4, 0.6]
    >>> bool((np.argsort(out, axis=0) == np.argsort(scores, axis=0)).all())
    True
    """
    scores = np.asarray(scores, dtype=float)
    priors = np.asarray(priors, dtype=float)
    if scores.ndim != 2:
        raise ValueError(f"scores must have shape (N, C), got {scores.shape}")
    if priors.shape != (scores.shape[1],):
        raise ValueError(
            f"priors must have shape ({scores.shape[1]},) to match scores, "
            f"got {priors.shape}"
        )
    if not (np.isfinite(scores).all() and (scores >= 0).all() and (scores <= 1).all()):
        raise ValueError("scores must be probabilities in [0, 1]")
    outside = np.flatnonzero(~((priors > 0) & (priors < 1)))
    if len(outside):
        c = int(outside[0])
        raise ValueError(f"prior of species {c} must lie in (0, 1), got {priors[c]}")
    if not 0 <= strength <= 1:
        raise ValueError(f"strength must lie in [0, 1], got {strength!r}")
    if strength == 0 or scores.shape[0] == 0:
        return scores.copy()
    means = scores.mean(axis=0)
    with np.errstate(divide="ignore"):
        logits = np.log(scores) - np.log1p(-scores)
        targets = np.exp((1 - strength) * np.log(means) + strength * np.log(priors))
    low = np.full(scores.shape[1], -100.0)
    high = np.full(scores.shape[1], 100.0)
    for _ in range(n_iterations):
        shift = (low + high) / 2
        too_high = _sigmoid(logits + shift).mean(axis=0) > targets
        high = np.where(too_high, shift, high)
        low = np.where(too_high, low, shift)
    shift = (low + high) / 2
    shift[means == 0] = 0.0  # an all-zero column has nothing to rescale
    return _sigmoid(logits + shift)
