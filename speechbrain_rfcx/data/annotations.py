"""Time-frequency box annotations in the RFCX (Kaggle) CSV format.

Also the species naming shared by every table (``s<id>`` columns and
labels) and the frequency band of each species in a set of boxes
(:func:`species_bands`, what detections are given as their band).

A row of ``train_tp.csv`` / ``train_fp.csv`` is one box::

    recording_id,species_id,songtype_id,t_min,f_min,t_max,f_max

(times in seconds, frequencies in Hz). A TP box is a verified call of that
species; an FP box is a verified *absence* of that species (a hard negative).

Every check reports the file and its line number (the header is line 1), so a
planted bad row is found at once.
"""

import csv
import math
import re
from dataclasses import asdict, dataclass

from speechbrain_rfcx._io import write_atomically

RFCX_COLUMNS = (
    "recording_id",
    "species_id",
    "songtype_id",
    "t_min",
    "f_min",
    "t_max",
    "f_max",
)
N_SPECIES = 24
SPECIES_FILE = "species.csv"
_NUMERIC_COLUMNS = RFCX_COLUMNS[1:]
_SPECIES_COLUMN = re.compile(r"s(\d+)")


class AnnotationError(ValueError):
    """An annotation file is malformed; the message names the file and line."""


@dataclass(frozen=True)
class Box:
    """One time-frequency box of one species in one recording.

    Example
    -------
    >>> box = Box(species_id=3, songtype_id=1, t_min=1.0, f_min=500.0,
    ...           t_max=2.5, f_max=2000.0)
    >>> box.duration
    1.5
    >>> Box.from_dict(box.to_dict()) == box
    True
    """

    species_id: int
    songtype_id: int
    t_min: float
    f_min: float
    t_max: float
    f_max: float

    @property
    def duration(self):
        """Length of the box in seconds."""
        return self.t_max - self.t_min

    def to_dict(self):
        """Plain dict, as stored in the JSON manifests."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        """Inverse of :meth:`to_dict`."""
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


def _shown(value):
    """A cell value as a message shows it: numbers plain, text quoted."""
    if hasattr(value, "item"):
        value = value.item()
    return repr(value) if isinstance(value, str) else str(value)


def _line(index):
    """CSV line number of a 0-based data row (the header is line 1)."""
    return int(index) + 2


def read_csv_table(path, **options):
    """``pandas.read_csv`` for the CSVs users give (annotations, thresholds,
    priors, sample submissions), with errors that name the file and line.

    A row with more values than the header has columns is refused; a
    trailing comma on a row is read as an empty last field, not as a shift of
    every column. An empty or unreadable file raises :class:`AnnotationError`.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "t.csv")
    >>> _ = open(path, "w").write("species_id,threshold\\n3,0.8,\\n")
    >>> read_csv_table(path).to_dict("records")
    [{'species_id': 3, 'threshold': 0.8}]
    >>> _ = open(path, "w").write("species_id,threshold\\n3,0.8,9\\n")
    >>> read_csv_table(path)
    Traceback (most recent call last):
    ...
    speechbrain_rfcx.data.annotations.AnnotationError: .../t.csv line 2: 3 values for 2 columns (species_id, threshold)
    """
    import pandas as pd

    try:
        with open(path, encoding="utf-8", newline="") as f:
            rows = csv.reader(f)
            header = next(rows, None)
            for row in rows if header else ():
                if any(cell.strip() for cell in row[len(header) :]):
                    raise AnnotationError(
                        f"{path} line {rows.line_num}: {len(row)} values for "
                        f"{len(header)} columns ({', '.join(header)})"
                    )
        return pd.read_csv(path, index_col=False, **options)
    except (FileNotFoundError, AnnotationError):
        raise
    except pd.errors.EmptyDataError as e:
        raise AnnotationError(f"{path}: the file is empty") from e
    except (OSError, csv.Error, UnicodeDecodeError, pd.errors.ParserError) as e:
        raise AnnotationError(f"{path}: not a readable CSV file ({e})") from e


def read_rfcx_csv(path, n_classes=N_SPECIES):
    """Read and validate one RFCX annotation CSV.

    Checks the columns, that every value parses, species ids in
    ``0..n_classes-1``, non-negative times with ``t_min < t_max``,
    non-negative frequencies with ``f_min < f_max``, and no duplicate rows.
    Extra columns are kept. Checks against the audio (box past the end,
    frequency above Nyquist) are done by :func:`check_boxes_against_audio`.

    Arguments
    ---------
    path : str
        The CSV file.
    n_classes : int
        Number of species; ids must lie in ``0..n_classes-1``.

    Returns
    -------
    pandas.DataFrame
        With integer ids and float times / frequencies; the original line
        number of every row is in the ``line`` column.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "tp.csv")
    >>> _ = open(path, "w").write(
    ...     "recording_id,species_id,songtype_id,t_min,f_min,t_max,f_max\\n"
    ...     "abc,3,1,1.0,500,2.5,2000\\n")
    >>> int(read_rfcx_csv(path).loc[0, "species_id"])
    3
    >>> _ = open(path, "w").write(
    ...     "recording_id,species_id,songtype_id,t_min,f_min,t_max,f_max\\n"
    ...     "abc,30,1,1.0,500,2.5,2000\\n")
    >>> read_rfcx_csv(path)
    Traceback (most recent call last):
    ...
    speechbrain_rfcx.data.annotations.AnnotationError: ...tp.csv line 2: species_id 30 is outside 0..23
    """
    import pandas as pd

    df = read_csv_table(path, dtype={"recording_id": str})
    missing = [c for c in RFCX_COLUMNS if c not in df.columns]
    if missing:
        raise AnnotationError(
            f"{path}: missing column(s) {', '.join(missing)}; "
            f"expected {','.join(RFCX_COLUMNS)}"
        )
    df["line"] = [_line(i) for i in range(len(df))]
    for col in RFCX_COLUMNS:
        empty = df[col].isna()
        if empty.any():
            row = df[empty].iloc[0]
            raise AnnotationError(f"{path} line {row['line']}: {col} is empty")
    for col in _NUMERIC_COLUMNS:
        values = pd.to_numeric(df[col], errors="coerce")
        bad = values.isna() | ~values.map(lambda v: math.isfinite(v))
        if bad.any():
            row = df[bad].iloc[0]
            raise AnnotationError(
                f"{path} line {row['line']}: {col} {_shown(row[col])} is not a finite "
                "number"
            )
        df[col] = values
    for col in ("species_id", "songtype_id"):
        fractional = df[col] != df[col].round()
        if fractional.any():
            row = df[fractional].iloc[0]
            raise AnnotationError(
                f"{path} line {row['line']}: {col} {_shown(row[col])} is not an integer"
            )
        df[col] = df[col].astype(int)
    for col in ("t_min", "t_max", "f_min", "f_max"):
        df[col] = df[col].astype(float)
    checks = [
        (
            (df.species_id < 0) | (df.species_id >= n_classes),
            lambda r: f"species_id {r.species_id} is outside 0..{n_classes - 1}",
        ),
        (df.t_min < 0, lambda r: f"t_min {r.t_min} is negative"),
        (
            df.t_min >= df.t_max,
            lambda r: f"t_min {r.t_min} is not before t_max {r.t_max}",
        ),
        (df.f_min < 0, lambda r: f"f_min {r.f_min} is negative"),
        (
            df.f_min >= df.f_max,
            lambda r: f"f_min {r.f_min} is not below f_max {r.f_max}",
        ),
    ]
    for bad, message in checks:
        if bad.any():
            row = df[bad].iloc[0]
            raise AnnotationError(f"{path} line {row['line']}: {message(row)}")
    duplicated = df.duplicated(subset=list(RFCX_COLUMNS), keep="first")
    if duplicated.any():
        row = df[duplicated].iloc[0]
        first = df[
            (df[list(RFCX_COLUMNS)] == row[list(RFCX_COLUMNS)]).all(axis=1)
        ].iloc[0]
        raise AnnotationError(
            f"{path} line {row['line']}: duplicate of line {first['line']}"
        )
    return df


def empty_annotations():
    """An empty, validated annotation frame (for a missing ``train_fp.csv``).

    Example
    -------
    >>> list(empty_annotations().columns) == list(RFCX_COLUMNS) + ["line"]
    True
    """
    import pandas as pd

    frame = pd.DataFrame({c: pd.Series(dtype=float) for c in RFCX_COLUMNS})
    frame["recording_id"] = frame["recording_id"].astype(str)
    for col in ("species_id", "songtype_id"):
        frame[col] = frame[col].astype(int)
    frame["line"] = pd.Series(dtype=int)
    return frame


def check_boxes_against_audio(df, path, audio_info, time_tolerance=0.05):
    """Check every box of ``df`` against its recording.

    Arguments
    ---------
    df : pandas.DataFrame
        As returned by :func:`read_rfcx_csv`.
    path : str
        The CSV file, for messages.
    audio_info : dict
        ``recording_id -> {"duration": s, "sample_rate": Hz}``.
    time_tolerance : float
        Seconds a box may overrun the end (rounding in the annotations).

    Example
    -------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"recording_id": ["a"], "species_id": [0],
    ...     "songtype_id": [1], "t_min": [1.0], "f_min": [100.0],
    ...     "t_max": [9.0], "f_max": [900.0], "line": [2]})
    >>> check_boxes_against_audio(df, "tp.csv",
    ...     {"a": {"duration": 10.0, "sample_rate": 2000}})
    >>> check_boxes_against_audio(df, "tp.csv",
    ...     {"a": {"duration": 5.0, "sample_rate": 2000}})
    Traceback (most recent call last):
    ...
    speechbrain_rfcx.data.annotations.AnnotationError: tp.csv line 2: box ends at 9.0 s, past the end of recording a (5.0 s)
    """
    for row in df.itertuples(index=False):
        info = audio_info.get(row.recording_id)
        if info is None:
            raise AnnotationError(
                f"{path} line {row.line}: no audio file for recording "
                f"{row.recording_id}"
            )
        if row.t_max > info["duration"] + time_tolerance:
            raise AnnotationError(
                f"{path} line {row.line}: box ends at {row.t_max} s, past the end "
                f"of recording {row.recording_id} ({info['duration']} s)"
            )
        nyquist = info["sample_rate"] / 2
        if row.f_max > nyquist:
            raise AnnotationError(
                f"{path} line {row.line}: f_max {row.f_max} Hz is above the "
                f"Nyquist frequency {nyquist} Hz of recording {row.recording_id}"
            )


def read_species_values(path, column, n_classes, valid, valid_text):
    """``species_id -> value`` from a two-column CSV (``species_id,<column>``),
    such as per-species thresholds or class priors.

    Every row is checked: an integer species id in ``0..n_classes-1``, listed
    once, and a number for which ``valid(value)`` holds (``valid_text`` says
    which, for the message). Errors name the file, the line and the value.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "t.csv")
    >>> _ = open(path, "w").write("species_id,threshold\\n3,0.8\\n1,0.25\\n")
    >>> read_species_values(path, "threshold", 24, lambda v: 0 <= v <= 1, "[0, 1]")
    {3: 0.8, 1: 0.25}
    >>> _ = open(path, "w").write("species_id,threshold\\n3,0.8\\n3.0,0.2\\n")
    >>> read_species_values(path, "threshold", 24, lambda v: 0 <= v <= 1, "[0, 1]")
    Traceback (most recent call last):
    ...
    ValueError: .../t.csv line 3: species 3 is listed twice (first on line 2)
    """
    table = read_csv_table(path, dtype=str, keep_default_na=False)
    missing = [c for c in ("species_id", column) if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
    values, first_line = {}, {}
    for index, (cell, value_cell) in enumerate(zip(table["species_id"], table[column])):
        line = _line(index)
        try:
            number = float(cell)
        except ValueError:
            number = math.nan
        if not (math.isfinite(number) and number == int(number)):
            raise ValueError(
                f"{path} line {line}: species_id {cell!r} is not an integer"
            )
        species = int(number)
        if not 0 <= species < n_classes:
            raise ValueError(
                f"{path} line {line}: species_id {species} is outside 0..{n_classes - 1}"
            )
        if species in values:
            raise ValueError(
                f"{path} line {line}: species {species} is listed twice (first on "
                f"line {first_line[species]})"
            )
        try:
            value = float(value_cell)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and valid(value)):
            raise ValueError(
                f"{path} line {line}: {column} {value_cell!r} is not a number in "
                f"{valid_text}"
            )
        values[species], first_line[species] = value, line
    return values


def boxes_by_recording(df):
    """Group a validated annotation frame into ``{recording_id: [Box, ...]}``.

    Boxes of a recording are sorted by start time.

    Example
    -------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"recording_id": ["a", "a"], "species_id": [1, 0],
    ...     "songtype_id": [1, 4], "t_min": [5.0, 1.0], "f_min": [1.0, 1.0],
    ...     "t_max": [6.0, 2.0], "f_max": [9.0, 9.0]})
    >>> [b.species_id for b in boxes_by_recording(df)["a"]]
    [0, 1]
    """
    grouped = {}
    for row in df.sort_values(["recording_id", "t_min"]).itertuples(index=False):
        grouped.setdefault(row.recording_id, []).append(
            Box(
                species_id=int(row.species_id),
                songtype_id=int(row.songtype_id),
                t_min=float(row.t_min),
                f_min=float(row.f_min),
                t_max=float(row.t_max),
                f_max=float(row.f_max),
            )
        )
    return grouped


# ---------------------------------------------------------------------------
# Species names and bands
# ---------------------------------------------------------------------------


def species_column(species_id):
    """The column name (and default label) of a species: ``s<id>``.

    Example
    -------
    >>> species_column(3)
    's3'
    """
    return f"s{int(species_id)}"


def species_columns(n_classes=N_SPECIES):
    """``["s0", ..., "s{C-1}"]``: the species columns of score tables.

    Example
    -------
    >>> species_columns(3)
    ['s0', 's1', 's2']
    """
    return [species_column(c) for c in range(n_classes)]


def species_column_id(text):
    """The species id of an ``s<id>`` name, or None for any other text.

    Example
    -------
    >>> species_column_id("s12"), species_column_id("coqui")
    (12, None)
    """
    match = _SPECIES_COLUMN.fullmatch(text)
    return None if match is None else int(match.group(1))


def species_name(species_id, species_names=None):
    """The display name of a species: from ``species_names`` or ``s<id>``.

    Arguments
    ---------
    species_id : int
        The species.
    species_names : list or dict, optional
        ``species_id -> name``; species without one are called ``s<id>``.

    Example
    -------
    >>> species_name(1, ["coqui", "tink frog"]), species_name(5, {1: "coqui"})
    ('tink frog', 's5')
    """
    name = None
    if species_names is not None:
        if isinstance(species_names, dict):
            name = species_names.get(species_id)
        elif species_id < len(species_names):
            name = species_names[species_id]
    name = species_column(species_id) if name is None else str(name)
    if any(c in name for c in "\t\r\n") or not name.strip():
        raise ValueError(f"species name {name!r} of species {species_id} is not usable")
    return name


def read_species_csv(path):
    """The species names of a ``species.csv`` (``species_id,name``), by id.

    Ids must run from 0 without gaps and names must be unique and usable
    in tables (no tabs or line breaks); errors name the file and line.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "species.csv")
    >>> write_species_csv(path, ["coqui", "tink frog"])
    >>> read_species_csv(path)
    ['coqui', 'tink frog']
    >>> _ = open(path, "w").write("species_id,name\\n0,coqui\\n2,tink frog\\n")
    >>> read_species_csv(path)
    Traceback (most recent call last):
    ...
    speechbrain_rfcx.data.annotations.AnnotationError: .../species.csv line 3: species_id '2' should be 1 (ids run 0, 1, 2, ... in order)
    """
    table = read_csv_table(path, dtype=str, keep_default_na=False)
    missing = [c for c in ("species_id", "name") if c not in table.columns]
    if missing:
        raise AnnotationError(f"{path}: missing column(s) {', '.join(missing)}")
    names, first_line = [], {}
    for index, (cell, name) in enumerate(zip(table["species_id"], table["name"])):
        line = _line(index)
        if cell.strip() != str(len(names)):
            raise AnnotationError(
                f"{path} line {line}: species_id {cell!r} should be {len(names)} "
                "(ids run 0, 1, 2, ... in order)"
            )
        name = name.strip()
        if not name or any(c in name for c in "\t\r\n"):
            raise AnnotationError(f"{path} line {line}: name {name!r} is not usable")
        if name in first_line:
            raise AnnotationError(
                f"{path} line {line}: name {name!r} is listed twice (first on line "
                f"{first_line[name]})"
            )
        first_line[name] = line
        names.append(name)
    if not names:
        raise AnnotationError(f"{path}: no species")
    return names


def write_species_csv(path, names):
    """Write ``species.csv`` (``species_id,name``) for ``names`` in id order."""
    import pandas as pd

    write_atomically(
        path,
        pd.DataFrame({"species_id": range(len(names)), "name": list(names)}).to_csv(
            index=False, lineterminator="\n"
        ),
    )


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
    >>> boxes = [Box(3, 1, 0.0, 1000.0, 1.0, 2000.0),
    ...          Box(3, 1, 5.0, 1200.0, 6.0, 3000.0)]
    >>> species_bands(boxes, quantiles=(0.0, 1.0))
    {3: (1000.0, 3000.0)}
    """
    import pandas as pd

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
