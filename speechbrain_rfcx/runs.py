"""Detection runs over many files: inputs, per-file outputs, resume journal.

What ``rfcx-detect`` and ``rfcx-submit`` do besides parsing arguments,
usable from Python too:

* :func:`find_audio_files` and :func:`check_unique_stems`: the recordings of
  an input file or folder;
* :func:`score_files`: ensemble scores of many files, a few in flight at once;
* :func:`write_outputs`: a recording's tables (Raven, Audacity, CSV) and
  plot, atomically; :func:`write_embeddings`: its per-window embeddings
  (Parquet, or CSV without pyarrow);
* :class:`ClipScoreJournal`: ``clip_scores.csv``, one row per scored file,
  appended as files finish, so that a rerun skips the files already done;
* :func:`detection_ranks` and :func:`gather_lists`: a run shared by the
  processes of ``torchrun`` (each takes every N-th file still to do);
* :func:`claim_output_folder`: the record of what made an output folder's
  files (``rfcx_detect_run.json``), so that a rerun never mixes outputs of
  other models or settings with its own.
"""

import csv
import glob
import io
import json
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from speechbrain_rfcx._io import read_record, write_atomically, write_record
from speechbrain_rfcx.data.audio import AUDIO_EXTENSIONS, AudioError

# torch, pandas and the models are imported by the functions that use them:
# finding the input files and checking arguments stays instant.

OUTPUT_SUFFIXES = {
    "raven": ".Table.1.selections.txt",
    "audacity": ".labels.txt",
    "csv": ".detections.csv",
}
PLOT_SUFFIX = ".png"
SUMMARY_FILE = "clip_scores.csv"
RUN_RECORD = "rfcx_detect_run.json"
COMBINED_PREFIX = "combined"
EMBEDDINGS_FOLDER = "embeddings"
EMBEDDING_FORMATS = ("parquet", "csv")


def default_embedding_format():
    """``"parquet"`` when pyarrow is installed (``pip install
    speechbrain-rfcx[parquet]``), else ``"csv"``."""
    from speechbrain_rfcx._optional import installed

    return "parquet" if installed("pyarrow") else "csv"


def find_audio_files(input_path):
    """Audio files to score: ``input_path`` itself, or those under a folder.

    Arguments
    ---------
    input_path : str
        A file, or a folder searched recursively for audio files (the
        extensions of ``AUDIO_EXTENSIONS``, any case: FLAC, WAV, OGG, MP3,
        AIFF, ...); hidden files and folders are left out.

    Returns
    -------
    list of str
        Paths relative to the folder (the file name for a single file),
        sorted.

    Example
    -------
    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(root, "site"))
    >>> for name in ("b.WAV", "site/a.flac", "notes.txt"):
    ...     open(os.path.join(root, name), "w").close()
    >>> find_audio_files(root)
    ['b.WAV', 'site/a.flac']
    """
    if os.path.isfile(input_path):
        return [os.path.basename(input_path)]
    if not os.path.isdir(input_path):
        raise FileNotFoundError(f"input {input_path} is neither a file nor a folder")
    found = []
    for folder, subfolders, files in os.walk(input_path):
        subfolders[:] = [d for d in subfolders if not d.startswith(".")]
        for name in files:
            if not name.startswith(".") and name.lower().endswith(AUDIO_EXTENSIONS):
                found.append(os.path.relpath(os.path.join(folder, name), input_path))
    return sorted(found)


def check_unique_stems(files):
    """Raise if two files differ only by extension (their outputs would collide).

    Example
    -------
    >>> check_unique_stems(["a.wav", "site/a.flac"])
    >>> check_unique_stems(["a.wav", "a.flac"])
    Traceback (most recent call last):
    ...
    ValueError: a.flac and a.wav share the recording id 'a': rename one
    """
    seen = {}
    for relative in sorted(files):
        stem = os.path.splitext(relative)[0]
        if stem in seen:
            raise ValueError(
                f"{seen[stem]} and {relative} share the recording id {stem!r}: "
                "rename one"
            )
        seen[stem] = relative


def score_files(detectors, paths, options, workers=1, embed=None):
    """Ensemble results of ``paths``, in order, scoring ``workers`` files at once.

    Files are scored in threads (torch and the audio decoder release the
    GIL), so one file is decoded while another is computed. At most
    ``workers + 1`` files are in flight: memory does not grow with the number
    of files. A file that cannot be read gives its ``AudioError`` instead of
    a result. With ``embed`` (keyword arguments of
    :meth:`~speechbrain_rfcx.interface.SpeciesDetector.embed_file`), each
    result also holds ``"embeddings"``: the first model's window embeddings,
    computed in the same thread.

    Yields
    ------
    result : dict or None
        As :func:`speechbrain_rfcx.interface.ensemble_detect_file`.
    error : AudioError or None
        Why the file could not be scored.
    """

    from speechbrain_rfcx.interface import ensemble_detect_file

    def score(path):
        try:
            result = ensemble_detect_file(detectors, path, **options)
            if embed is not None:
                result["embeddings"] = detectors[0].embed_file(path, **embed)
            return result, None
        except AudioError as e:
            return None, e

    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = deque()
        for path in paths:
            pending.append(pool.submit(score, path))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def output_paths(out, stem, formats, plot=False, embeddings=None):
    """The files a run writes for one recording, by format (``"plot"``: PNG,
    ``"embeddings"``: under ``embeddings/``, in the format named).

    Example
    -------
    >>> output_paths("out", "site/a", ["raven", "csv"], plot=True)
    {'raven': 'out/site/a.Table.1.selections.txt', 'csv': 'out/site/a.detections.csv', 'plot': 'out/site/a.png'}
    >>> output_paths("out", "site/a", [], embeddings="parquet")
    {'embeddings': 'out/embeddings/site/a.parquet'}
    """
    base = os.path.join(out, stem)
    paths = {name: base + OUTPUT_SUFFIXES[name] for name in formats}
    if plot:
        paths["plot"] = base + PLOT_SUFFIX
    if embeddings:
        paths["embeddings"] = os.path.join(
            out, EMBEDDINGS_FOLDER, f"{stem}.{embeddings}"
        )
    return paths


def write_embeddings(path, recording_id, file, embedded, window):
    """One recording's window embeddings as a table, written atomically.

    Columns: ``recording_id``, ``file``, ``start_s``, ``end_s`` (the window,
    cut at the recording's end), ``e0 .. e{D-1}``; one row per window.
    Parquet (needs pyarrow) or CSV, by the extension of ``path``; both read
    with ``pandas.read_parquet`` / ``pandas.read_csv``.

    Arguments
    ---------
    path : str
        ``.parquet`` or ``.csv`` file.
    recording_id, file : str
        The recording's id (path under the input without extension) and
        its audio file.
    embedded : dict
        :func:`speechbrain_rfcx.inference.window_embeddings`.
    window : float
        Window length in seconds.

    Example
    -------
    >>> import tempfile, numpy as np, pandas as pd
    >>> path = os.path.join(tempfile.mkdtemp(), "a.csv")
    >>> embedded = {"starts": np.array([0.0, 3.0]), "duration": 5.0,
    ...             "embeddings": np.ones((2, 3), dtype="float32")}
    >>> write_embeddings(path, "a", "/data/a.flac", embedded, window=4.0)
    >>> pd.read_csv(path)[["start_s", "end_s", "e2"]].values.tolist()
    [[0.0, 4.0, 1.0], [3.0, 5.0, 1.0]]
    """
    import numpy as np
    import pandas as pd

    starts = np.asarray(embedded["starts"], dtype=np.float64)
    vectors = np.asarray(embedded["embeddings"], dtype=np.float32)
    table = pd.DataFrame(vectors, columns=[f"e{i}" for i in range(vectors.shape[1])])
    table.insert(0, "end_s", np.minimum(starts + window, embedded["duration"]))
    table.insert(0, "start_s", starts)
    table.insert(0, "file", file)
    table.insert(0, "recording_id", recording_id)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    if path.endswith(".parquet"):
        stream = io.BytesIO()
        table.to_parquet(stream, index=False)
        write_atomically(path, stream.getvalue())
    else:
        write_atomically(path, table.to_csv(index=False))


def write_outputs(
    paths, detections, recording_id, species_names=None, plot=None, audio_path=None
):
    """Write one recording's tables (and plot), each atomically.

    Arguments
    ---------
    paths : dict
        :func:`output_paths`.
    detections : list of Detection
        The recording's detections.
    recording_id : str
        For the CSV table.
    species_names : list or dict, optional
        ``species_id -> name`` for the tables.
    plot : dict, optional
        Keyword arguments of :func:`~speechbrain_rfcx.plot.plot_detections`
        (``wav``, ``sample_rate``, ``frame_probs``, ...) besides the output
        path, the detections and the names (needed when ``paths`` has a plot).
    audio_path : str, optional
        The recording, for the ``Begin File`` / ``Begin Path`` / ``File
        Offset (s)`` columns of the Raven table.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_rfcx.detections.events import Detection
    >>> paths = output_paths(tempfile.mkdtemp(), "site/a", ["audacity"])
    >>> write_outputs(paths, [Detection(0, 1.0, 2.0, 0.9)], "site/a")
    >>> open(paths["audacity"]).read().split()
    ['1.000000', '2.000000', 's0', '0.900']
    """
    from speechbrain_rfcx.detections.tables import (
        write_audacity_labels,
        write_detections_csv,
        write_raven_table,
    )

    folders = {os.path.dirname(path) for path in paths.values()}
    for folder in folders:
        os.makedirs(folder or ".", exist_ok=True)
    for name, path in paths.items():
        if name == "raven":
            write_raven_table(path, detections, species_names, audio_path)
        elif name == "audacity":
            write_audacity_labels(path, detections, species_names)
        elif name == "csv":
            write_detections_csv(path, detections, recording_id=recording_id)
    if "plot" in paths:
        from speechbrain_rfcx.plot import plot_detections

        plot_detections(
            paths["plot"],
            detections=detections,
            species_names=species_names,
            **plot,
        )


def write_combined_tables(out, root, files, formats, species_names=None):
    """``combined.selections.txt`` and ``combined.csv``: every recording's
    detections in one Raven table and one CSV, in the order of ``files``.

    Read back from the per-file tables under ``out`` (so files scored by an
    earlier, resumed run are included); files without tables (unreadable
    ones) are left out. Durations come from the audio headers.

    Returns
    -------
    tuple
        The two paths written.
    """
    from speechbrain_rfcx.data.audio import audio_info
    from speechbrain_rfcx.detections.tables import (
        read_audacity_labels,
        read_detections_csv,
        read_raven_table,
        write_combined_raven_table,
        write_detections_csv,
    )

    readers = {
        "csv": read_detections_csv,
        "raven": read_raven_table,
        "audacity": lambda path: read_audacity_labels(path, species_names),
    }
    reader = next(name for name in readers if name in formats)
    recordings, by_id = [], {}
    for relative in files:
        stem = os.path.splitext(relative)[0]
        table = output_paths(out, stem, [reader])[reader]
        if not os.path.isfile(table):
            continue
        audio_path = os.path.abspath(os.path.join(root, relative))
        detections = readers[reader](table)
        recordings.append((audio_path, audio_info(audio_path)["duration"], detections))
        by_id[stem] = detections
    raven = os.path.join(out, COMBINED_PREFIX + ".selections.txt")
    table = os.path.join(out, COMBINED_PREFIX + ".csv")
    write_combined_raven_table(raven, recordings, species_names)
    write_detections_csv(table, by_id, species_names=species_names)
    return raven, table


def detector_fingerprint(detector):
    """What makes a detector's outputs: a SHA-1 of its weights and its
    windows, species and bands (not where its folder is)."""
    from speechbrain_rfcx.models.torchscript import state_sha1

    bands = detector.species_bands or {}
    return {
        "weights_sha1": state_sha1(detector.mods.model.state_dict()),
        "window": float(detector.hparams.window),
        "hop": float(detector.hparams.hop),
        "n_classes": int(detector.hparams.n_classes),
        "class_names": detector.class_names,
        "species_bands": {str(c): list(band) for c, band in sorted(bands.items())},
    }


def claim_output_folder(out, record, overwrite=False):
    """Make ``out`` the output folder of the run described by ``record``.

    ``record`` (JSON values: the models' fingerprints, thresholds, options;
    a ``version`` entry is kept but not compared) is kept in
    ``out/rfcx_detect_run.json``. A folder whose outputs were made
    by another record (or whose outputs carry no record) is refused with the
    differences named, unless ``overwrite``: then the tables and plots of the
    files in its ``clip_scores.csv`` and that file are removed, and every file
    is scored again (with the same record too).

    Returns
    -------
    bool
        True when earlier outputs may be kept (same record, or a new folder),
        False with ``overwrite``.

    Example
    -------
    >>> import tempfile
    >>> out = tempfile.mkdtemp()
    >>> claim_output_folder(out, {"threshold": 0.5})
    True
    >>> claim_output_folder(out, {"threshold": 0.7})
    Traceback (most recent call last):
    ...
    ValueError: .../rfcx_detect_run.json: the outputs in ... were made with other settings (threshold: 0.5 then, 0.7 now); choose another --out, or pass --overwrite to score every file again
    >>> claim_output_folder(out, {"threshold": 0.7}, overwrite=True)
    False
    """
    path = os.path.join(out, RUN_RECORD)
    record = json.loads(json.dumps(record))  # as it reads back
    previous = read_record(path)
    summary = os.path.join(out, SUMMARY_FILE)
    if _what_made(previous) == _what_made(record) and not overwrite:
        return True
    if not overwrite:
        if previous is not None:
            then, now = _flat(_what_made(previous)), _flat(_what_made(record))
            changed = [
                f"{key}: {_short(then.get(key))} then, {_short(now.get(key))} now"
                for key in sorted(set(then) | set(now))
                if then.get(key) != now.get(key)
            ]
            raise ValueError(
                f"{path}: the outputs in {out} were made with other settings "
                f"({'; '.join(changed)}); choose another --out, or pass "
                "--overwrite to score every file again"
            )
        if os.path.isfile(summary) or ClipScoreJournal.part_paths(summary):
            raise ValueError(
                f"{out} holds {SUMMARY_FILE} but no {RUN_RECORD} saying what made "
                "it; choose another --out, or pass --overwrite to score every "
                "file again"
            )
    earlier = ClipScoreJournal.read_all(summary)
    if earlier:  # --overwrite: drop the earlier run's outputs
        for stem in earlier:
            outputs = list(output_paths(out, stem, OUTPUT_SUFFIXES, plot=True).values())
            outputs += [
                output_paths(out, stem, [], embeddings=kind)["embeddings"]
                for kind in EMBEDDING_FORMATS
            ]
            for output in outputs:
                if os.path.isfile(output):
                    os.remove(output)
        for journal in [summary] + ClipScoreJournal.part_paths(summary):
            if os.path.isfile(journal):
                os.remove(journal)
    write_record(path, record)
    return not overwrite


def _what_made(record):
    """A run record without its ``version`` (a newer release of the same
    models and settings may resume a run)."""
    if record is None:
        return None
    return {key: value for key, value in record.items() if key != "version"}


def _flat(value, prefix=""):
    """``{"models[0].window": 5.0, ...}``: the leaves of a JSON value."""
    if isinstance(value, dict):
        keys = [(f"{prefix}.{k}" if prefix else str(k), v) for k, v in value.items()]
    elif isinstance(value, list) and value and isinstance(value[0], dict):
        keys = [(f"{prefix}[{i}]", v) for i, v in enumerate(value)]
    else:
        return {prefix: value}
    flat = {}
    for key, child in keys:
        flat.update(_flat(child, key))
    return flat


def _short(value):
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


class ClipScoreJournal:
    """``clip_scores.csv`` of a run: one row of clip probabilities per file.

    Rows are appended (and flushed) as files finish, so a killed run keeps
    them; a rerun finds the files already done (:meth:`done`) and
    :meth:`close` rewrites the file atomically in input order.

    Under ``torchrun`` each rank appends to a part file of its own
    (``clip_scores.part<rank>.csv``, opened at its first row); rank 0 reads
    them all back when it closes with the run's files, and removes them.

    Arguments
    ---------
    path : str
        The CSV file (``recording_id,s0..s{C-1}``).
    n_classes : int
        Number of species.
    rank : int, optional
        This process's rank in a run of several (None: the only process).

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), SUMMARY_FILE)
    >>> with ClipScoreJournal(path, 2) as journal:
    ...     journal.record("b", [0.5, 0.25])
    >>> with ClipScoreJournal(path, 2) as journal:
    ...     journal.done("b"), journal.done("a")
    ...     journal.record("a", [1.0, 0.0])
    ...     journal.close(["a", "b"])
    (True, False)
    >>> print(open(path).read())
    recording_id,s0,s1
    a,1.000000,0.000000
    b,0.500000,0.250000
    <BLANKLINE>
    """

    def __init__(self, path, n_classes, rank=None):
        from speechbrain_rfcx.data.annotations import species_columns

        self.path = path
        self.rank = rank
        self.header = ["recording_id"] + species_columns(n_classes)
        self.previous = self.read_all(path)
        self.rows = {}
        self._file = None

    @staticmethod
    def part_paths(path):
        """The part files of ``path`` that ranks of a run have written."""
        stem, extension = os.path.splitext(path)
        return sorted(glob.glob(glob.escape(stem) + ".part*" + extension))

    @classmethod
    def read_all(cls, path):
        """Rows of earlier (possibly interrupted) runs, by file: ``path`` and
        its part files."""
        rows = {}
        for source in [path] + cls.part_paths(path):
            rows.update(cls._read(source))
        return rows

    @staticmethod
    def _read(path):
        rows = {}
        if not os.path.isfile(path):
            return rows
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            for cells in reader:
                if header and len(cells) == len(header):
                    rows[cells[0]] = cells
        return rows

    def done(self, stem, outputs=()):
        """Whether an earlier run scored ``stem`` and wrote all its
        ``outputs`` (paths); its row is kept if so."""
        if stem in self.previous and all(os.path.isfile(p) for p in outputs):
            self.rows[stem] = self.previous[stem]
            return True
        return False

    def record(self, stem, clip_probs):
        """Append the clip probabilities of a scored file."""
        if self._file is None:
            base, extension = os.path.splitext(self.path)
            part = (
                self.path if self.rank is None else f"{base}.part{self.rank}{extension}"
            )
            self._file = open(part, "a", encoding="utf-8", newline="")
            self._writer = csv.writer(self._file)
            if self._file.tell() == 0:
                self._writer.writerow(self.header)
        row = [stem] + [f"{p:.6f}" for p in clip_probs]
        self._writer.writerow(row)
        self._file.flush()
        self.rows[stem] = row

    def keep_done(self, stems):
        """Rewrite the file with the rows :meth:`done` kept (in the order of
        ``stems``) and remove the part files: what rank 0 does before the
        ranks of a run start, so that part files hold this run's rows only."""
        self._write(stems, self.rows)

    def close(self, stems=None):
        """Stop appending; with ``stems``, rewrite the file in their order,
        one row per scored file (with a ``rank``: the rows of every rank)."""
        if self._file is not None and not self._file.closed:
            self._file.close()
        if stems is None:
            return
        rows = dict(self.rows)
        if self.rank is not None:
            for part in self.part_paths(self.path):
                rows.update(self._read(part))
        self._write(stems, rows)

    def _write(self, stems, rows):
        stream = io.StringIO()
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(self.header)
        writer.writerows(rows[stem] for stem in stems if stem in rows)
        write_atomically(self.path, stream.getvalue())
        for part in self.part_paths(self.path):
            os.remove(part)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def detection_ranks():
    """``(rank, world_size)`` of this process: ``torchrun``'s ``RANK`` and
    ``WORLD_SIZE``, ``(0, 1)`` without it.

    Under ``torchrun`` the process joins the run's process group (gloo: only
    file lists travel between ranks; the models run where ``--device`` says).

    Example
    -------
    >>> "WORLD_SIZE" in os.environ or detection_ranks() == (0, 1)
    True
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        from speechbrain.utils.distributed import (
            ddp_init_group,
            is_distributed_initialized,
        )

        if not is_distributed_initialized():
            ddp_init_group({"distributed_backend": "gloo"})
    return int(os.environ.get("RANK", "0")), world


def gather_lists(items):
    """Every rank's ``items``, concatenated in rank order, on every rank (a
    barrier too); ``items`` itself in a single process."""
    from speechbrain.utils.distributed import is_distributed_initialized

    if not is_distributed_initialized():
        return list(items)
    import torch.distributed

    gathered = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, list(items))
    return [item for part in gathered for item in part]
