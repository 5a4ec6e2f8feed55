"""Recordings plus Raven / Audacity annotation tables -> the Kaggle RFCX layout.

What BirdNET-Analyzer, Raven Pro and Audacity users have is a folder of
recordings and one table of labelled boxes per recording (or one table for
many recordings, with a ``Begin File`` / ``Begin Path`` column).
:func:`import_annotations` turns that into what ``prepare_rfcx`` reads::

    <out>/train/<recording_id>.<ext>   links to the recordings (not copies)
    <out>/train_tp.csv                 one row per labelled box
    <out>/train_fp.csv                 boxes labelled with a negative label
    <out>/species.csv                  species_id,name
    <out>/rfcx_import.json             what the import was given and wrote

Species ids follow the sorted species names (or a given ``species.csv``, so
a second import keeps the ids of the first). A box labelled with one of the
``negative_labels`` (``noise``, ``unknown``, ...) is a verified absence of
every species: it becomes one ``train_fp.csv`` row per species, the hard
negatives of masked training.

Matching tables to recordings: a row's ``Begin File`` or ``Begin Path`` cell
names its recording (with ``File Offset (s)``, the offset of the box in that
file, as in the combined tables of BirdNET-Analyzer and ``rfcx-detect
--combine``); otherwise the table's file name must start with the
recording's name and a dot (``rec1.Table.1.selections.txt``,
``rec1.BirdNET.selection.table.txt``, ``rec1.txt``). Every error names the
table and its line.
"""

import argparse
import ntpath
import os

import pandas as pd

from speechbrain_rfcx import __version__
from speechbrain_rfcx._io import read_record, write_atomically, write_record
from speechbrain_rfcx.data.annotations import (
    RFCX_COLUMNS,
    SPECIES_FILE,
    AnnotationError,
    read_species_csv,
    write_species_csv,
)
from speechbrain_rfcx.data.audio import AUDIO_EXTENSIONS, AudioError, audio_info

IMPORT_RECORD = "rfcx_import.json"
TABLE_FORMATS = ("raven", "audacity")
TABLE_SUFFIX = ".txt"
TIME_TOLERANCE = 0.05  # seconds a box may overrun the end (rounding)


def _cells(path, line_number, text, n_columns):
    cells = text.split("\t")
    if len(cells) < n_columns and not any(cells[n_columns:]):
        cells += [""] * (n_columns - len(cells))  # trailing empty cells dropped
    if len(cells) != n_columns:
        raise AnnotationError(
            f"{path} line {line_number}: {len(cells)} fields, the header has "
            f"{n_columns}"
        )
    return cells


def _number(path, line_number, field, text):
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if value != value or value in (float("inf"), float("-inf")):
        raise AnnotationError(
            f"{path} line {line_number}: {field} {text!r} is not a number"
        )
    return value


def read_raven_selections(path, label_column="Species"):
    """The labelled boxes of a Raven selection table.

    Columns are found by name; ``Begin Time (s)``, ``End Time (s)`` and the
    label column are required, ``Low Freq (Hz)`` / ``High Freq (Hz)`` are
    read when present (else the band is unknown, None). A selection listed
    once per view (Raven repeats it for every view) is read once.

    Arguments
    ---------
    path : str
        The tab-separated table.
    label_column : str
        The column holding the species (``Species``, ``Common Name``,
        ``Species Code``, ...).

    Returns
    -------
    list of dict
        ``line, label, t_min, t_max, f_min, f_max, file`` per box; ``file``
        is the recording named by ``Begin File`` / ``Begin Path`` (or None),
        and the times are within that file (``File Offset (s)``).

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "r1.Table.1.selections.txt")
    >>> _ = open(path, "w").write(
    ...     "Selection\\tView\\tBegin Time (s)\\tEnd Time (s)\\tLow Freq (Hz)\\t"
    ...     "High Freq (Hz)\\tSpecies\\n1\\tSpectrogram 1\\t1.5\\t2.5\\t500\\t900\\t"
    ...     "coqui\\n1\\tWaveform 1\\t1.5\\t2.5\\t500\\t900\\tcoqui\\n")
    >>> read_raven_selections(path)
    [{'line': 2, 'label': 'coqui', 't_min': 1.5, 't_max': 2.5, 'f_min': 500.0, 'f_max': 900.0, 'file': None}]
    >>> read_raven_selections(path, label_column="Common Name")
    Traceback (most recent call last):
    ...
    speechbrain_rfcx.data.annotations.AnnotationError: .../r1.Table.1.selections.txt line 1: no column 'Common Name' (--label-column); the table has Selection, View, Begin Time (s), End Time (s), Low Freq (Hz), High Freq (Hz), Species
    """
    try:
        with open(path, encoding="utf-8-sig") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError as e:
        raise AnnotationError(f"{path}: not a UTF-8 text table ({e})") from e
    if not lines or not lines[0].strip():
        raise AnnotationError(f"{path} line 1: no header (empty file)")
    header = [name.strip() for name in lines[0].split("\t")]
    for required, hint in (
        ("Begin Time (s)", ""),
        ("End Time (s)", ""),
        (label_column, " (--label-column)"),
    ):
        if required not in header:
            raise AnnotationError(
                f"{path} line 1: no column {required!r}{hint}; the table has "
                f"{', '.join(header)}"
            )
    column = {name: i for i, name in reversed(list(enumerate(header)))}
    file_column = next((c for c in ("Begin Path", "Begin File") if c in column), None)
    has_band = "Low Freq (Hz)" in column and "High Freq (Hz)" in column
    boxes, seen = [], set()
    for line_number, text in enumerate(lines[1:], start=2):
        if not text.strip():
            continue
        cells = _cells(path, line_number, text, len(header))
        if "Selection" in column:
            key = (cells[column["Selection"]].strip(),
                   cells[column[file_column]] if file_column else None)  # fmt: skip
            if key in seen:
                continue
            seen.add(key)
        label = cells[column[label_column]].strip()
        if not label:
            raise AnnotationError(f"{path} line {line_number}: {label_column} is empty")
        t_min = _number(
            path, line_number, "Begin Time (s)", cells[column["Begin Time (s)"]]
        )
        t_max = _number(
            path, line_number, "End Time (s)", cells[column["End Time (s)"]]
        )
        if "File Offset (s)" in column:
            offset = _number(
                path, line_number, "File Offset (s)", cells[column["File Offset (s)"]]
            )
            t_min, t_max = offset, offset + (t_max - t_min)
        band = [None, None]
        if has_band:
            low = cells[column["Low Freq (Hz)"]].strip()
            high = cells[column["High Freq (Hz)"]].strip()
            if low or high:
                band = [
                    _number(path, line_number, "Low Freq (Hz)", low),
                    _number(path, line_number, "High Freq (Hz)", high),
                ]
        file = cells[column[file_column]].strip() if file_column else None
        if file_column and not file:
            raise AnnotationError(f"{path} line {line_number}: {file_column} is empty")
        boxes.append(
            dict(
                line=line_number,
                label=label,
                t_min=t_min,
                t_max=t_max,
                f_min=band[0],
                f_max=band[1],
                file=file,
            )  # fmt: skip
        )
    return boxes


def read_audacity_selections(path):
    """The labelled boxes of an Audacity label track.

    ``start<TAB>end<TAB>label`` lines, each optionally followed by the
    spectral-selection line ``\\<TAB>f_min<TAB>f_max`` (negative values:
    no band). The whole label is the species.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "r1.txt")
    >>> _ = open(path, "w").write("1.0\\t2.0\\ttink frog\\n\\\\\\t500\\t900\\n3\\t4\\tnoise\\n")
    >>> [(b["label"], b["f_min"]) for b in read_audacity_selections(path)]
    [('tink frog', 500.0), ('noise', None)]
    """
    try:
        with open(path, encoding="utf-8-sig") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError as e:
        raise AnnotationError(f"{path}: not a UTF-8 text file ({e})") from e
    boxes = []
    band_allowed = False
    for line_number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        cells = text.split("\t")
        if cells[0] == "\\":
            if len(cells) != 3 or not band_allowed:
                raise AnnotationError(
                    f"{path} line {line_number}: a frequency line needs "
                    "'\\<TAB>f_min<TAB>f_max' right below a label line"
                )
            low = _number(path, line_number, "f_min", cells[1])
            high = _number(path, line_number, "f_max", cells[2])
            if low >= 0 and high >= 0:
                boxes[-1].update(f_min=low, f_max=high)
            band_allowed = False
            continue
        if len(cells) != 3:
            raise AnnotationError(
                f"{path} line {line_number}: a label line needs "
                f"'start<TAB>end<TAB>label', got {len(cells)} fields"
            )
        label = cells[2].strip()
        if not label:
            raise AnnotationError(f"{path} line {line_number}: the label is empty")
        boxes.append(
            dict(
                line=line_number,
                label=label,
                t_min=_number(path, line_number, "start", cells[0]),
                t_max=_number(path, line_number, "end", cells[1]),
                f_min=None,
                f_max=None,
                file=None,
            )  # fmt: skip
        )
        band_allowed = True
    return boxes


def _recordings(folder):
    """``{name: path}`` of the audio files under ``folder`` (recursively)."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"--recordings {folder} is not a folder")
    found = {}
    for root, subfolders, files in os.walk(folder):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        for name in sorted(files):
            stem, ext = os.path.splitext(name)
            if name.startswith(".") or ext.lower() not in AUDIO_EXTENSIONS:
                continue
            path = os.path.join(root, name)
            if stem in found:
                raise AudioError(
                    f"{found[stem]} and {path} share the recording name {stem!r}: "
                    "rename one (recording ids are file names)"
                )
            found[stem] = path
    if not found:
        raise AudioError(f"--recordings {folder}: no audio files")
    return found


def _tables(annotations):
    if os.path.isfile(annotations):
        return [annotations]
    if not os.path.isdir(annotations):
        raise FileNotFoundError(f"--annotations {annotations} does not exist")
    tables = sorted(
        os.path.join(root, name)
        for root, _, files in os.walk(annotations)
        for name in files
        if name.lower().endswith(TABLE_SUFFIX) and not name.startswith(".")
    )
    if not tables:
        raise AnnotationError(f"--annotations {annotations}: no {TABLE_SUFFIX} tables")
    return tables


def _recording_of_table(table, names):
    """The recording whose name, and a dot, begins the table's file name."""
    base = os.path.basename(table)
    matches = [n for n in names if base.startswith(n + ".")]
    if not matches:
        raise AnnotationError(
            f"{table}: no recording for this table (its file name must start with "
            "a recording's name and a dot, e.g. rec1.Table.1.selections.txt, or "
            "the table needs a Begin File / Begin Path column)"
        )
    return max(matches, key=len)


def _recording_of_cell(table, line, cell, names):
    stem = os.path.splitext(ntpath.basename(cell))[0]  # / and \\ both separate
    if stem not in names:
        raise AnnotationError(
            f"{table} line {line}: no recording {stem!r} (from {cell!r}) under "
            "--recordings"
        )
    return stem


def _checked_box(table, box, info):
    """``box`` with its band filled and checked against its recording."""
    where = f"{table} line {box['line']}"
    nyquist = info["sample_rate"] / 2
    f_min = 0.0 if box["f_min"] is None else box["f_min"]
    f_max = nyquist if box["f_max"] is None else box["f_max"]
    problems = [
        (box["t_min"] < 0, f"begins at {box['t_min']} s, before the recording"),
        (box["t_min"] >= box["t_max"],
         f"begins at {box['t_min']} s, not before its end {box['t_max']} s"),
        (box["t_max"] > info["duration"] + TIME_TOLERANCE,
         f"ends at {box['t_max']} s, past the end of recording {box['recording_id']} "
         f"({info['duration']} s)"),
        (f_min < 0, f"low frequency {f_min} Hz is negative"),
        (f_min >= f_max, f"low frequency {f_min} Hz is not below the high {f_max} Hz"),
        (f_max > nyquist,
         f"high frequency {f_max} Hz is above the Nyquist frequency {nyquist} Hz of "
         f"recording {box['recording_id']}"),
    ]  # fmt: skip
    for bad, message in problems:
        if bad:
            raise AnnotationError(f"{where}: the box {message}")
    return dict(
        box, t_max=min(box["t_max"], info["duration"]), f_min=f_min, f_max=f_max
    )


def _claim(out):
    """Make ``out``, refusing a folder that holds anything but an earlier import."""
    if (
        os.path.isdir(out)
        and os.listdir(out)
        and read_record(os.path.join(out, IMPORT_RECORD)) is None
    ):
        raise ValueError(
            f"--out {out} is not empty and holds no earlier import ({IMPORT_RECORD}): "
            "give a new or empty folder"
        )
    os.makedirs(os.path.join(out, "train"), exist_ok=True)


def _link(source, target):
    """``target`` -> ``source`` (a symbolic link, else a hard link)."""
    if os.path.islink(target):
        os.remove(target)
    elif os.path.exists(target):
        raise ValueError(f"{target} exists and is not a link of an earlier import")
    try:
        os.symlink(os.path.abspath(source), target)
    except OSError:
        os.link(source, target)


def import_annotations(
    recordings,
    annotations,
    out,
    table_format="raven",
    label_column="Species",
    negative_labels=(),
    species_csv=None,
):
    """Import recordings and their annotation tables (see the module docstring).

    Arguments
    ---------
    recordings : str
        Folder of recordings (searched recursively; ids are file names).
    annotations : str
        Folder of tables (``*.txt``, recursively) or one table.
    out : str
        The data folder to write (new, empty, or an earlier import's).
    table_format : str
        ``"raven"`` or ``"audacity"``.
    label_column : str
        Raven column holding the species.
    negative_labels : sequence of str
        Labels of boxes that hold none of the species (``train_fp.csv``).
    species_csv : str, optional
        A ``species.csv`` (``species_id,name``) to keep; every label must be
        in it. Default: the sorted names found.

    Returns
    -------
    dict
        Counts: ``recordings``, ``species``, ``tp_rows``, ``fp_rows``, and
        ``unannotated`` (recordings without a table, not imported).

    Example
    -------
    >>> import os, tempfile, numpy as np, soundfile as sf
    >>> root = tempfile.mkdtemp()
    >>> os.makedirs(f"{root}/rec"); os.makedirs(f"{root}/ann")
    >>> sf.write(f"{root}/rec/r1.wav", np.zeros(8000, dtype="float32"), 8000)
    >>> _ = open(f"{root}/ann/r1.Table.1.selections.txt", "w").write(
    ...     "Selection\\tBegin Time (s)\\tEnd Time (s)\\tSpecies\\n"
    ...     "1\\t0.1\\t0.4\\tcoqui\\n2\\t0.5\\t0.9\\tnoise\\n")
    >>> import_annotations(f"{root}/rec", f"{root}/ann", f"{root}/data",
    ...                    negative_labels=["noise"])
    {'recordings': 1, 'species': 1, 'tp_rows': 1, 'fp_rows': 1, 'unannotated': 0}
    >>> print(open(f"{root}/data/species.csv").read())
    species_id,name
    0,coqui
    <BLANKLINE>
    """
    if table_format not in TABLE_FORMATS:
        raise ValueError(
            f"--format {table_format!r} is not one of {', '.join(TABLE_FORMATS)}"
        )
    negatives = {label.strip() for label in negative_labels if label.strip()}
    paths = _recordings(recordings)
    boxes, annotated = [], set()
    for table in _tables(annotations):
        if table_format == "raven":
            rows = read_raven_selections(table, label_column)
        else:
            rows = read_audacity_selections(table)
        owner = None  # the recording named by the table's file name
        if not rows or any(row["file"] is None for row in rows):
            owner = _recording_of_table(table, paths)
            annotated.add(owner)  # an empty table still marks it as annotated
        for row in rows:
            rid = owner
            if row["file"] is not None:
                rid = _recording_of_cell(table, row["line"], row["file"], paths)
            annotated.add(rid)
            boxes.append((table, dict(row, recording_id=rid)))
    if species_csv is not None:
        names = read_species_csv(species_csv)
    else:
        names = sorted({box["label"] for _, box in boxes} - negatives)
    ids = {name: species for species, name in enumerate(names)}
    info = {rid: audio_info(paths[rid]) for rid in sorted(annotated)}
    tp, fp = [], []
    for table, box in boxes:
        if box["label"] not in ids and box["label"] not in negatives:
            raise AnnotationError(
                f"{table} line {box['line']}: species {box['label']!r} is not in "
                f"{species_csv}"
            )
        box = _checked_box(table, box, info[box["recording_id"]])
        species = (
            range(len(names)) if box["label"] in negatives else [ids[box["label"]]]
        )
        rows = [
            (box["recording_id"], s, 1, box["t_min"], box["f_min"], box["t_max"],
             box["f_max"])
            for s in species
        ]  # fmt: skip
        (fp if box["label"] in negatives else tp).extend(rows)
    tp = pd.DataFrame(tp, columns=list(RFCX_COLUMNS)).drop_duplicates()
    fp = pd.DataFrame(fp, columns=list(RFCX_COLUMNS)).drop_duplicates()
    _claim(out)
    previous = read_record(os.path.join(out, IMPORT_RECORD)) or {}
    for rid in previous.get("recordings", []):
        stale = os.path.join(out, "train", os.path.basename(rid))
        if os.path.islink(stale):
            os.remove(stale)
    linked = []
    for rid in info:
        name = rid + os.path.splitext(paths[rid])[1].lower()
        _link(paths[rid], os.path.join(out, "train", name))
        linked.append(name)

    write_atomically(
        os.path.join(out, "train_tp.csv"), tp.to_csv(index=False, lineterminator="\n")
    )
    fp_path = os.path.join(out, "train_fp.csv")
    if negatives:
        write_atomically(fp_path, fp.to_csv(index=False, lineterminator="\n"))
    elif os.path.isfile(fp_path):
        os.remove(fp_path)  # an earlier import's negatives, not asked for now
    write_species_csv(os.path.join(out, SPECIES_FILE), names)
    counts = {
        "recordings": len(info),
        "species": len(names),
        "tp_rows": len(tp),
        "fp_rows": len(fp),
        "unannotated": len(set(paths) - set(info)),
    }
    write_record(
        os.path.join(out, IMPORT_RECORD),
        {
            "version": __version__,
            "recordings": linked,
            "options": {
                "recordings": os.path.abspath(recordings),
                "annotations": os.path.abspath(annotations),
                "format": table_format,
                "label_column": label_column,
                "negative_labels": sorted(negatives),
                "species_csv": species_csv,
            },
            "counts": counts,
        },
    )
    return counts


def main(argv=None):
    """``rfcx-import``: recordings plus Raven / Audacity tables -> a data folder."""
    parser = argparse.ArgumentParser(
        prog="rfcx-import",
        description="Turn recordings and their Raven selection tables or Audacity "
        "label tracks into the RFCX data layout (train/ links, train_tp.csv, "
        "train_fp.csv, species.csv) that rfcx-prepare and train.py read.",
    )
    parser.add_argument("--recordings", required=True, help="folder of recordings")
    parser.add_argument(
        "--annotations", required=True, help="folder of tables (*.txt) or one table"
    )
    parser.add_argument("--format", choices=TABLE_FORMATS, default="raven")
    parser.add_argument(
        "--label-column",
        default="Species",
        help="Raven column with the species (default Species; BirdNET tables: "
        "'Common Name' or 'Species Code')",
    )
    parser.add_argument("--out", required=True, help="data folder to write")
    parser.add_argument(
        "--negative-labels",
        default="",
        metavar="A,B",
        help="labels of boxes holding none of the species (e.g. noise,unknown): "
        "written to train_fp.csv",
    )
    parser.add_argument(
        "--species",
        metavar="CSV",
        help="species.csv of an earlier import, to keep its ids",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    args = parser.parse_args(argv)
    try:
        counts = import_annotations(
            args.recordings,
            args.annotations,
            args.out,
            table_format=args.format,
            label_column=args.label_column,
            negative_labels=args.negative_labels.split(","),
            species_csv=args.species,
        )
    except (ValueError, OSError) as e:  # AnnotationError, AudioError too
        raise SystemExit(f"rfcx-import: {e}") from e
    print(
        f"rfcx-import: {counts['recordings']} recordings, {counts['species']} species, "
        f"{counts['tp_rows']} boxes in train_tp.csv, {counts['fp_rows']} rows in "
        f"train_fp.csv -> {args.out}"
    )
    if counts["unannotated"]:
        print(
            f"rfcx-import: {counts['unannotated']} recording(s) under "
            f"{args.recordings} have no table and were left out"
        )
