"""Detection tables for listening tools: Raven, Audacity, and CSV.

Writers and readers of Raven selection tables, Audacity label tracks and a
CSV in RFCX-like columns. Every file is written atomically (temporary file,
then rename), so an interrupted run never leaves half a table behind.
"""

import math
import os

from speechbrain_rfcx._io import write_atomically
from speechbrain_rfcx.data.annotations import (
    AnnotationError,
    species_column_id,
    species_name,
)
from speechbrain_rfcx.detections.events import Detection

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
RAVEN_FILE_COLUMNS = ("Begin File", "Begin Path", "File Offset (s)")
DETECTION_CSV_COLUMNS = (
    "recording_id",
    "species_id",
    "t_min",
    "f_min",
    "t_max",
    "f_max",
    "score",
)


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


def write_raven_table(path, detections, species_names=None, audio_path=None):
    """Write a Raven selection table (tab separated, one row per detection).

    Columns: the standard ``Selection, View ("Spectrogram 1"), Channel (1),
    Begin Time (s), End Time (s), Low Freq (Hz), High Freq (Hz)``, then
    ``Species ID``, ``Species`` and ``Score``; with ``audio_path``, also
    ``Begin File``, ``Begin Path`` and ``File Offset (s)`` (as in
    BirdNET-Analyzer's tables), so Raven finds the recording. Selections are
    numbered from 1 in the order given. A detection without a band gets
    empty frequency cells; Raven Pro wants numbers there, so give it
    detections with bands.

    Arguments
    ---------
    path : str
        Output file (usually ``<recording>.Table.1.selections.txt``).
    detections : list of Detection
        The detections of one recording.
    species_names : list or dict, optional
        ``species_id -> name`` for the ``Species`` column (default ``s<id>``).
    audio_path : str, optional
        The recording, for the file columns.

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
    rows = [(d, audio_path, 0.0) for d in detections]
    write_atomically(path, _raven_text(rows, species_names, audio_path is not None))


def write_combined_raven_table(path, recordings, species_names=None):
    """One Raven selection table for many recordings, one after the other.

    As BirdNET-Analyzer's combined tables: ``Begin Time (s)`` counts from the
    start of the first recording (each recording starts where the one before
    it ends), ``File Offset (s)`` is the time within the recording named by
    ``Begin File`` / ``Begin Path``, so Raven opens each file at the event.

    Arguments
    ---------
    path : str
        Output file (``combined.selections.txt``).
    recordings : list of tuple
        ``(audio_path, duration_s, detections)`` per recording, in order.
    species_names : list or dict, optional
        ``species_id -> name``.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "combined.selections.txt")
    >>> write_combined_raven_table(path, [("/d/a.wav", 60.0, [Detection(0, 1, 2, 0.5)]),
    ...                                   ("/d/b.wav", 60.0, [Detection(1, 3, 4, 0.9)])],
    ...                            species_names=["coqui", "tink frog"])
    >>> for line in open(path).read().splitlines():
    ...     cells = line.split("\\t")
    ...     print(cells[3], cells[8], cells[10], cells[12])
    Begin Time (s) Species Begin File File Offset (s)
    1.000000 coqui a.wav 1.000000
    63.000000 tink frog b.wav 3.000000
    """
    rows, start = [], 0.0
    for audio_path, duration, detections in recordings:
        rows.extend((d, audio_path, start) for d in detections)
        start += float(duration)
    write_atomically(path, _raven_text(rows, species_names, with_files=True))


def _raven_text(rows, species_names, with_files):
    """The table of ``(detection, audio_path, start_s)`` rows."""
    columns = RAVEN_COLUMNS + (RAVEN_FILE_COLUMNS if with_files else ())
    lines = ["\t".join(columns)]
    for number, (d, audio_path, start) in enumerate(rows, start=1):
        low, high = _band_cells(d, 3)
        cells = [
            str(number),
            "Spectrogram 1",
            "1",
            f"{start + d.t_min:.6f}",
            f"{start + d.t_max:.6f}",
            low,
            high,
            str(d.species_id),
            species_name(d.species_id, species_names),
            f"{d.score:.6f}",
        ]
        if with_files:
            cells += [os.path.basename(audio_path), audio_path, f"{d.t_min:.6f}"]
        lines.append("\t".join(cells))
    return "\n".join(lines) + "\n"


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
        name = species_name(d.species_id, species_names)
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
        elif species_column_id(species_text) is not None:
            species = species_column_id(species_text)
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


def write_detections_csv(path, detections, recording_id=None, species_names=None):
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
    species_names : list or dict, optional
        ``species_id -> name``: adds a ``species`` column after
        ``species_id``.

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
    import pandas as pd

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
    if species_names is not None:
        frame.insert(
            list(frame.columns).index("species_id") + 1,
            "species",
            [species_name(s, species_names) for s in frame["species_id"]],
        )
    write_atomically(path, frame.to_csv(index=False, lineterminator="\n"))


def read_detections_csv(path):
    """Read the detections of a CSV written by :func:`write_detections_csv`.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "d.csv")
    >>> write_detections_csv(path, [Detection(3, 1.0, 2.0, 0.5, 10.0, 90.0)], "rec1")
    >>> read_detections_csv(path)
    [Detection(species_id=3, t_min=1.0, t_max=2.0, score=0.5, f_min=10.0, f_max=90.0)]
    """
    import pandas as pd

    from speechbrain_rfcx.data.annotations import read_csv_table

    frame = read_csv_table(path)
    missing = [c for c in DETECTION_CSV_COLUMNS[1:] if c not in frame.columns]
    if missing:
        raise AnnotationError(f"{path}: missing column(s) {', '.join(missing)}")
    detections = []
    for index, row in enumerate(frame.itertuples(index=False)):
        band = {}
        if not (pd.isna(row.f_min) or pd.isna(row.f_max)):
            band = dict(f_min=float(row.f_min), f_max=float(row.f_max))
        detections.append(
            _detection(
                path,
                index + 2,
                species_id=int(row.species_id),
                t_min=float(row.t_min),
                t_max=float(row.t_max),
                score=float(row.score),
                **band,
            )  # fmt: skip
        )
    return detections
