"""Console entry points: ``rfcx-detect`` (tables per file) and ``rfcx-submit``.

Argument parsing and messages only: what the commands do is in
:mod:`speechbrain_rfcx.runs` (inputs, per-file outputs, the resume journal)
and :mod:`speechbrain_rfcx.detections`.

``rfcx-detect INPUT --model DIR --out DIR`` scores one audio file or every
audio file under a folder (recursively; FLAC, WAV, OGG/Opus, MP3, AIFF, ...:
``data.audio.AUDIO_EXTENSIONS``) with one or several models (their
probabilities are averaged) and writes, per input file,
a Raven selection table, an Audacity label track and/or a detections CSV
under ``--out`` (mirroring the input tree), plus ``clip_scores.csv``: one row
of clip probabilities per file (``recording_id`` = path under INPUT without
the extension). With ``--combine``, also one Raven table and one CSV for the
whole deployment (``combined.selections.txt``, ``combined.csv``); with
``--embeddings``, the first model's embedding of every window per file under
``embeddings/`` (Parquet with pyarrow, else CSV). Every table is written
atomically; a file
whose tables all exist and that has a row in ``clip_scores.csv`` is skipped on
a rerun, so an interrupted folder resumes where it stopped. Unreadable files
are reported on stderr and skipped; the exit status is 0 when every file was
scored, 2 otherwise. An input folder holding no audio files, an output
folder that cannot be created or a model folder that cannot be loaded stop
both commands before any scoring (usage error, exit status 2).

``rfcx-submit --model DIR --test-folder DIR --out submission.csv`` writes a
Kaggle submission (one row per test recording, in ``sample_submission.csv``
order when given), optionally rescaled toward class priors.
"""

import argparse
import functools
import logging
import os
import sys

from tqdm import tqdm

from speechbrain_rfcx import __version__
from speechbrain_rfcx._io import remove_stale_temporaries
from speechbrain_rfcx._optional import require
from speechbrain_rfcx.data.audio import decode_ahead, stop_decoding_ahead
from speechbrain_rfcx.runs import (
    EMBEDDING_FORMATS,
    OUTPUT_SUFFIXES,
    SUMMARY_FILE,
    ClipScoreJournal,
    check_unique_stems,
    claim_output_folder,
    default_embedding_format,
    detection_ranks,
    detector_fingerprint,
    find_audio_files,
    gather_lists,
    output_paths,
    score_files,
    write_combined_tables,
    write_embeddings,
    write_outputs,
)

# torch, numpy, pandas and the models are imported once the arguments are
# checked: ``--help`` and argument errors answer at once.

EXIT_FAILURES = 2
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
PRECISION_ENV = "RFCX_PRECISION"  # the default of --precision
DECODE_AHEAD_BYTES = 384 << 20  # samples decoded while torch loads (33 min mono 48 kHz)


def parse_formats(values):
    """Output formats from repeated and/or comma-separated ``--format`` values.

    Example
    -------
    >>> parse_formats(["raven,csv", "audacity", "csv"])
    ['raven', 'csv', 'audacity']
    >>> parse_formats(["excel"])
    Traceback (most recent call last):
    ...
    ValueError: --format 'excel' is not one of raven, audacity, csv
    """
    formats = []
    for value in values or ["raven"]:
        for name in value.split(","):
            name = name.strip().lower()
            if name not in OUTPUT_SUFFIXES:
                raise ValueError(
                    f"--format {name!r} is not one of {', '.join(OUTPUT_SUFFIXES)}"
                )
            if name not in formats:
                formats.append(name)
    return formats


def make_output_folder(folder, option):
    """Create ``folder`` (and its parents) or raise a ValueError naming it.

    Example
    -------
    >>> import tempfile
    >>> blocker = os.path.join(tempfile.mkdtemp(), "a_file")
    >>> open(blocker, "w").close()
    >>> make_output_folder(os.path.join(blocker, "out"), "--out")
    Traceback (most recent call last):
    ...
    ValueError: --out .../a_file/out: cannot create this folder (Not a directory)
    """
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise ValueError(
            f"{option} {folder}: cannot create this folder ({e.strerror or e})"
        ) from e
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {folder}: no permission to write in this folder")


def _as_options(error, *names):
    """``error`` with the Python names of options spelled as the command's
    (``chunk_seconds`` -> ``--chunk-seconds``)."""
    text = str(error)
    for name in names:
        text = text.replace(name, "--" + name.replace("_", "-"))
    return ValueError(text)


def _add_model_arguments(parser):
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    parser.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="DIR",
        help="training fold folder or exported detector folder; repeat (or list "
        "several) for an ensemble: probabilities are averaged",
        nargs="+",
    )
    parser.add_argument("--window", type=float, help="window in s (default: training)")
    parser.add_argument("--hop", type=float, help="hop in s (default: training)")
    parser.add_argument(
        "--tta",
        default="",
        help="test-time augmentation, comma list of 'shift' and speeds, e.g. "
        "shift,0.9,1.1 (averaged with the plain pass)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=16,
        help="windows per pass (models that run every window)",
    )
    parser.add_argument(
        "--windowed",
        action="store_true",
        help="run every window even with a convolutional model, which otherwise "
        "scores each recording in one pass and pools its windows (slower)",
    )
    parser.add_argument(
        "--chunk-seconds",
        type=float,
        default=60.0,
        help="audio per pass of a convolutional model, at least the window "
        "(default: 60)",
    )
    parser.add_argument(
        "--num-workers",
        type=int,
        default=2,
        help="files scored at once, so that decoding overlaps computing (default: 2)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch's CPU threads for each file scored at once (0: the cores "
        "shared among the --num-workers files)",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument(
        "--eager",
        action="store_true",
        help="run a timm backbone eagerly; by default, on the CPU, it runs as "
        "frozen TorchScript, cached after the first run (faster start and "
        "scoring, same outputs within float rounding)",
    )
    parser.add_argument(
        "--precision",
        default=os.environ.get(PRECISION_ENV, "auto"),
        help="precision of the model, one of " + ", ".join(PRECISIONS) + " (the "
        "log-mel stays fp32). auto (the default, or $" + PRECISION_ENV + "): bf16 "
        "on a CPU that computes it natively (AVX512-BF16 or AMX; about 1.5x "
        "faster, clip probabilities within 0.05), else fp32. fp16: GPU autocast",
    )


def cpu_has_native_bf16():
    """True when this CPU computes bfloat16 natively (AVX512-BF16 or AMX),
    as torch detects it; bf16 is emulated, and slower than fp32, elsewhere."""
    import torch

    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def resolved_precision(precision, device):
    """The precision ``--precision`` names on ``device``: ``auto`` is bf16 on
    a CPU with native bfloat16 and fp32 elsewhere."""
    if precision != "auto":
        return precision
    on_cpu = str(device).split(":")[0] == "cpu"
    return "bf16" if on_cpu and cpu_has_native_bf16() else "fp32"


def _decode_ahead(paths):
    """The first files are decoded in a thread while torch and the model load
    (:class:`~speechbrain_rfcx.data.audio.DecodedAhead`; the same samples)."""
    decode_ahead(paths, DECODE_AHEAD_BYTES)


def _input_root(path):
    """The folder that ``rfcx-detect``'s file names are relative to: INPUT,
    or its folder when INPUT is one file."""
    return os.path.dirname(path) if os.path.isfile(path) else path


@functools.lru_cache(maxsize=1)
def keep_freed_memory():
    """Let glibc's allocator keep the buffers freed after each file for the
    next one instead of handing them back to the kernel, which then has to
    zero fresh pages again: tensors of up to 32 MB come from the heap, and
    512 MB of freed heap is kept. On 48 one-minute files this takes the
    kernel's share of ``rfcx-detect`` from 1.5-3 s of CPU to 0.1 s, and the
    peak memory is unchanged (the same buffers are reused). Does nothing
    where the C library has no ``mallopt`` (macOS, Windows)."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError, TypeError):
        return
    m_top_pad, m_mmap_threshold = -2, -3  # glibc's <malloc.h>
    mallopt(m_mmap_threshold, 32 << 20)
    mallopt(m_top_pad, 512 << 20)


@functools.lru_cache(maxsize=1)
def _default_threads():
    """torch's threads before a command set them (one per core)."""
    import torch

    return torch.get_num_threads()


def threads_per_file(threads, workers):
    """torch's threads for each of ``workers`` files scored at once:
    ``threads``, or with 0 the cores shared among the files."""
    return threads or max(1, _default_threads() // workers)


def _load_detectors(args):
    if args.num_workers < 1:
        raise ValueError(f"--num-workers must be >= 1, got {args.num_workers}")
    if args.threads < 0:
        raise ValueError(f"--threads must be >= 0, got {args.threads}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.precision not in PRECISIONS:
        raise ValueError(
            f"--precision (or ${PRECISION_ENV}) must be one of "
            f"{', '.join(PRECISIONS)}, got {args.precision!r}"
        )
    keep_freed_memory()
    import torch  # only now: the checks above answer at once

    from speechbrain_rfcx.interface import SpeciesDetector

    device = args.device
    if device == "cuda" and "LOCAL_RANK" in os.environ:  # torchrun: a GPU per rank
        device = f"cuda:{os.environ['LOCAL_RANK']}"
    args.precision = resolved_precision(args.precision, device)
    # Files are scored in threads: each gets its share of the cores (one
    # thread per file uses them best; more only contend).
    torch.set_num_threads(threads_per_file(args.threads, args.num_workers))
    folders = [folder for group in args.model for folder in group]
    detectors = [
        SpeciesDetector.from_hparams(
            folder,
            run_opts={"device": device, "precision": args.precision},
            torchscript=not args.eager,
        )
        for folder in folders
    ]
    counts = [int(d.hparams.n_classes) for d in detectors]
    if len(set(counts)) > 1:
        raise ValueError(
            "--model folders of an ensemble must score the same species: "
            + ", ".join(f"{f} has {n}" for f, n in zip(folders, counts))
        )
    return detectors


def _detect_options(args, detectors):
    """The scoring options, checked for every detector before any scoring."""
    from speechbrain_rfcx.inference import ScoringSettings

    tta = [item.strip() for item in args.tta.split(",") if item.strip()]
    for detector in detectors:
        window = float(detector.hparams.window) if args.window is None else args.window
        hop = float(detector.hparams.hop) if args.hop is None else args.hop
        settings = ScoringSettings(
            window, hop, tta, args.batch_size, args.windowed, args.chunk_seconds
        )
        try:
            settings.checked(detector.sample_rate)
        except ValueError as e:
            raise _as_options(e, "chunk_seconds", "batch_size") from e
    return {
        "window": args.window,
        "hop": args.hop,
        "tta": tta,
        "batch_size": args.batch_size,
        "windowed": args.windowed,
        "chunk_seconds": args.chunk_seconds,
    }


def detect_main(argv=None):
    """``rfcx-detect``: per-file detection tables for a file or a folder."""
    parser = argparse.ArgumentParser(
        prog="rfcx-detect",
        description="Detect species in audio files and write Raven / Audacity / "
        "CSV tables, one per input file.",
    )
    parser.add_argument("input", help="audio file or folder (searched recursively)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--format",
        action="append",
        metavar="raven|audacity|csv",
        help="output format; repeat or give a comma list (default raven)",
    )
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument(
        "--thresholds",
        metavar="CSV",
        help="per-species thresholds (species_id,threshold); others: --threshold",
    )
    parser.add_argument("--min-duration", type=float, default=0.0, help="seconds")
    parser.add_argument("--merge-gap", type=float, default=0.0, help="seconds")
    parser.add_argument("--plot", action="store_true", help="also a PNG per file")
    parser.add_argument(
        "--combine",
        action="store_true",
        help="also one Raven table (combined.selections.txt, with Begin File, "
        "Begin Path and File Offset (s)) and one CSV (combined.csv) for all files",
    )
    parser.add_argument(
        "--embeddings",
        action="store_true",
        help="also the first model's embedding of every window (--window, "
        "--hop) per file, under OUT/embeddings/ (one more pass per file)",
    )
    parser.add_argument(
        "--embeddings-format",
        choices=EMBEDDING_FORMATS,
        help="parquet (needs pyarrow: pip install speechbrain-rfcx[parquet]) or "
        "csv; default parquet when pyarrow is installed",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="score every file again when --out holds outputs of other models "
        "or settings (refused otherwise)",
    )
    _add_model_arguments(parser)
    args = parser.parse_args(argv)
    try:
        formats = parse_formats(args.format)
        args.embeddings_format = _embeddings_format(args)
        if args.plot:
            require("matplotlib", "plot", "--plot")
        if not 0.0 <= args.threshold <= 1.0:
            raise ValueError(f"--threshold must lie in [0, 1], got {args.threshold}")
        from speechbrain_rfcx.detections.events import check_event_options

        try:
            check_event_options(args.min_duration, args.merge_gap)
        except ValueError as e:
            raise _as_options(e, "min_duration", "merge_gap") from e
        files = find_audio_files(args.input)
        if not files:
            raise ValueError(f"input {args.input} holds no audio files")
        check_unique_stems(files)
        make_output_folder(args.out, "--out")
        fresh = not os.path.exists(os.path.join(args.out, SUMMARY_FILE))
        if fresh and int(os.environ.get("WORLD_SIZE", "1")) == 1:
            root = _input_root(args.input)
            _decode_ahead([os.path.join(root, relative) for relative in files])
        rank, world = detection_ranks()  # under torchrun: joins the other ranks
        if rank == 0:
            remove_stale_temporaries(args.out)  # left by a run killed mid-write
        detectors = _load_detectors(args)
        n_classes = int(detectors[0].hparams.n_classes)
        threshold = args.threshold
        if args.thresholds:
            from speechbrain_rfcx.detections.events import read_thresholds

            threshold = read_thresholds(args.thresholds, n_classes)
        options = _detect_options(args, detectors)
        record = {
            "version": __version__,
            "models": [detector_fingerprint(d) for d in detectors],
            "threshold": threshold,
            "min_duration": args.min_duration,
            "merge_gap": args.merge_gap,
            "precision": args.precision,
            **{k: v for k, v in options.items() if k != "batch_size"},
        }
        refused = None
        if rank == 0:
            try:
                claim_output_folder(args.out, record, overwrite=args.overwrite)
            except ValueError as e:
                refused = str(e)
        refused = gather_lists([refused])[0]  # rank 0's answer, on every rank
        if refused:
            raise ValueError(refused)
    except (ValueError, FileNotFoundError) as e:
        stop_decoding_ahead()
        parser.error(str(e))
    try:
        return run_detection(
            args, files, detectors, formats, threshold, options, rank, world
        )
    finally:
        stop_decoding_ahead()


def _embeddings_format(args):
    """The embeddings' file format, or None without ``--embeddings``."""
    if not args.embeddings:
        if args.embeddings_format:
            raise ValueError("--embeddings-format needs --embeddings")
        return None
    kind = args.embeddings_format or default_embedding_format()
    if kind == "parquet":
        require("pyarrow", "parquet", "--embeddings-format parquet")
    return kind


def run_detection(args, files, detectors, formats, threshold, options, rank=0, world=1):
    """Scores ``files`` and writes their tables; returns the exit status.

    With ``world`` ranks (``torchrun``), rank 0 finds the files still to do
    and each rank scores every ``world``-th of them; rank 0 then merges the
    clip scores and writes the combined tables."""
    from speechbrain_rfcx.detections.events import frames_to_detections, full_bands

    root = _input_root(args.input)
    os.makedirs(args.out, exist_ok=True)
    n_classes = int(detectors[0].hparams.n_classes)
    bands = full_bands(
        next((d.species_bands for d in detectors if d.species_bands), None),
        n_classes,
        detectors[0].sample_rate,
    )
    names = detectors[0].class_names
    failures, skipped, todo = [], 0, []
    journal = ClipScoreJournal(
        os.path.join(args.out, SUMMARY_FILE), n_classes, rank if world > 1 else None
    )
    stems = [os.path.splitext(relative)[0] for relative in files]
    kind = args.embeddings_format
    embed = None
    if kind:
        embed = {"window": args.window, "hop": args.hop, "batch_size": args.batch_size}
        window = float(
            detectors[0].hparams.window if args.window is None else args.window
        )
    try:
        if rank == 0:
            for relative, stem in zip(files, stems):
                outputs = output_paths(args.out, stem, formats, args.plot, kind)
                if journal.done(stem, outputs.values()):
                    skipped += 1
                else:
                    todo.append(relative)
            if world > 1:
                journal.keep_done(stems)
        todo = gather_lists([todo])[0][rank::world]  # rank 0's list: a share each
        paths = [os.path.join(root, relative) for relative in todo]
        scored = score_files(detectors, paths, options, args.num_workers, embed)
        for relative, path, (result, error) in tqdm(
            zip(todo, paths, scored),
            desc="rfcx-detect" if world == 1 else f"rfcx-detect rank {rank}/{world}",
            unit="file",
            total=len(todo),
            file=sys.stderr,
            disable=rank > 0,
        ):
            if error is not None:
                tqdm.write(f"rfcx-detect: skipped {path}: {error}", file=sys.stderr)
                failures.append(relative)
                continue
            stem = os.path.splitext(relative)[0]
            detections = frames_to_detections(
                result["frame_probs"],
                frame_hop=result["frame_hop"],
                frame_offset=result["frame_hop"] / 2,
                threshold=threshold,
                min_duration=args.min_duration,
                merge_gap=args.merge_gap,
                species_bands=bands,
                default_threshold=args.threshold,
                duration=result["duration"],
            )
            plot = {
                "wav": path,
                "sample_rate": detectors[0].sample_rate,
                "frame_probs": result["frame_probs"],
                "frame_times": result["frame_times"],
                "title": relative,
            }
            outputs = output_paths(args.out, stem, formats, args.plot, kind)
            if kind:
                write_embeddings(
                    outputs.pop("embeddings"),
                    stem,
                    os.path.abspath(path),
                    result["embeddings"],
                    window,
                )
            write_outputs(outputs, detections, stem, names, plot, os.path.abspath(path))
            journal.record(stem, result["clip_probs"])
    finally:
        journal.close()
    failures = gather_lists(failures)  # waits for every rank
    if rank == 0:
        _report_detection(args, root, files, formats, names, stems, journal,
                          skipped, failures)  # fmt: skip
    # every rank waits for rank 0's merge: a launcher such as torchrun stops
    # the other ranks as soon as one of them ends with a failure status
    gather_lists([])
    return EXIT_FAILURES if failures else 0


def _report_detection(args, root, files, formats, names, stems, journal, skipped,
                      failures):  # fmt: skip
    """Rank 0, once every rank is done: clip scores and combined tables
    merged, and what was skipped or could not be read said."""
    journal.close(stems)
    if args.combine:
        tables = write_combined_tables(args.out, root, files, formats, names)
        print(f"rfcx-detect: wrote {' and '.join(tables)}", file=sys.stderr)
    if skipped:
        print(
            f"rfcx-detect: {skipped} file(s) already done in {args.out}, skipped "
            "(delete their outputs to score them again)",
            file=sys.stderr,
        )
    if failures:
        print(
            f"rfcx-detect: {len(failures)} of {len(files)} file(s) could not be "
            f"read: {', '.join(failures[:5])}{' ...' if len(failures) > 5 else ''}",
            file=sys.stderr,
        )


def submit_main(argv=None):
    """``rfcx-submit``: a Kaggle submission from the recordings of a test folder."""
    parser = argparse.ArgumentParser(
        prog="rfcx-submit",
        description="Score every recording of a test folder and write a Kaggle "
        "submission (recording_id,s0..s23).",
    )
    parser.add_argument("--test-folder", required=True)
    parser.add_argument("--sample-submission", metavar="CSV", help="row order")
    parser.add_argument("--out", required=True, help="submission CSV")
    parser.add_argument("--priors", metavar="CSV", help="species_id,prior")
    parser.add_argument("--prior-strength", type=float, default=1.0)
    _add_model_arguments(parser)
    args = parser.parse_args(argv)
    try:
        if not os.path.isdir(args.test_folder):
            raise ValueError(f"--test-folder {args.test_folder} is not a folder")
        files = find_audio_files(args.test_folder)
        if not files:
            raise ValueError(f"--test-folder {args.test_folder} holds no audio files")
        check_unique_stems([os.path.basename(relative) for relative in files])
        if os.path.isdir(args.out):
            raise ValueError(f"--out {args.out} is a folder, not a CSV file name")
        if not 0.0 <= args.prior_strength <= 1.0:
            raise ValueError(
                f"--prior-strength must lie in [0, 1], got {args.prior_strength}"
            )
        make_output_folder(os.path.dirname(os.path.abspath(args.out)), "--out")
        _decode_ahead([os.path.join(args.test_folder, relative) for relative in files])
        detectors = _load_detectors(args)
        n_classes = int(detectors[0].hparams.n_classes)

        from speechbrain_rfcx.detections.submission import (
            check_submission_rows,
            read_priors,
            read_sample_submission,
        )

        # every input is checked before hours of scoring
        priors = read_priors(args.priors, n_classes) if args.priors else None
        if args.sample_submission:
            order, _ = read_sample_submission(args.sample_submission, n_classes)
            stems = [os.path.splitext(os.path.basename(f))[0] for f in files]
            check_submission_rows(stems, order, args.sample_submission)
        options = _detect_options(args, detectors)
    except (ValueError, FileNotFoundError) as e:
        stop_decoding_ahead()
        parser.error(str(e))
    try:
        return _submit(args, files, detectors, options, priors)
    finally:
        stop_decoding_ahead()


def _submit(args, files, detectors, options, priors):
    """Scores the test recordings and writes the submission: the status."""
    import numpy as np

    from speechbrain_rfcx.detections.submission import (
        rescale_to_priors,
        write_submission,
    )

    ids, scores = [], []
    paths = [os.path.join(args.test_folder, relative) for relative in files]
    scored = score_files(detectors, paths, options, args.num_workers)
    for relative, (result, error) in tqdm(
        zip(files, scored),
        desc="rfcx-submit",
        unit="file",
        total=len(files),
        file=sys.stderr,
    ):
        if error is not None:
            print(f"rfcx-submit: {error}; no submission written", file=sys.stderr)
            scored.close()
            return EXIT_FAILURES
        ids.append(os.path.splitext(os.path.basename(relative))[0])
        scores.append(result["clip_probs"])
    scores = np.stack(scores)
    if priors is not None:
        scores = rescale_to_priors(scores, priors, strength=args.prior_strength)
    try:
        write_submission(args.out, ids, scores, args.sample_submission)
    except (ValueError, OSError) as e:
        print(f"rfcx-submit: {e}; no submission written", file=sys.stderr)
        return EXIT_FAILURES
    print(f"rfcx-submit: wrote {args.out} ({len(ids)} recordings)", file=sys.stderr)
    return 0


def _exit(main):
    """The console command running ``main``: once it has returned (every
    output written and closed), the process ends at once with its status,
    skipping the interpreter's teardown of torch, SpeechBrain and scipy
    (0.6-1 s of every run)."""

    def run():
        status = main()
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status or 0)

    return run


detect = _exit(detect_main)
submit = _exit(submit_main)
