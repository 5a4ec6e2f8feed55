"""Evaluate detections against reference annotations, and calibrate thresholds.

``rfcx-evaluate --reference REF (--scores CSV | --detections DIR) --out DIR``

* ``REF``: a data folder (``train_tp.csv``, ``species.csv``, the recordings in
  ``train/``, as ``rfcx-import`` writes it), an RFCX box CSV, or a CSV of clip
  labels (``recording_id,s0,s1,...`` of 0/1, e.g. ``test_ground_truth.csv``).
  With boxes, a species without a box in a recording is taken as absent.
* ``--scores``: clip scores (``clip_scores.csv`` of ``rfcx-detect``, a
  submission, ``oof_predictions.csv`` of ``train.py``).
* ``--detections``: an ``rfcx-detect`` output folder (its detection CSVs or
  Raven tables); a recording's score for a species is then its best event
  score, the quantity ``rfcx-detect`` thresholds. With box references the
  events are also matched to the boxes (event-based precision, recall, F1:
  same species, onset within ``--collar`` seconds, offset within the collar
  or half the box's length, whichever is larger; each box matched once).

Recordings are matched by id (or by file name when the ids carry folders);
only recordings in both are evaluated. Written to ``--out``:
``per_species.csv`` (positives, AP, lwlrap, precision / recall at the
thresholds, event counts), ``summary.txt`` (what is printed), with
``--plot`` ``pr_curves.png``, and with ``--fit-precision P``
``thresholds.csv``: per species the lowest threshold whose precision reaches
``P`` on these recordings, in the ``--thresholds`` format of
``rfcx-detect``. Fit on recordings the model did not train on (held-out
folds, a validation deployment).
"""

import argparse
import io
import math
import os

import numpy as np
import pandas as pd

from speechbrain_rfcx import __version__
from speechbrain_rfcx._io import write_atomically
from speechbrain_rfcx._optional import require
from speechbrain_rfcx.data.annotations import (
    RFCX_COLUMNS,
    SPECIES_FILE,
    AnnotationError,
    boxes_by_recording,
    read_csv_table,
    read_rfcx_csv,
    read_species_csv,
    species_column_id,
    species_name,
)

SUMMARY_NAME = "summary.txt"


def read_clip_table(path, n_classes=None, binary=False):
    """``(recording_ids, (N, C) array)`` of a ``recording_id,s0,s1,...`` CSV.

    Species columns must be ``s0..s{C-1}`` (any order; ``n_classes`` checks
    C). ``binary`` requires 0/1 values (clip labels).

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "c.csv")
    >>> _ = open(path, "w").write("recording_id,s1,s0\\na,0.5,0.25\\n")
    >>> read_clip_table(path)
    (['a'], array([[0.25, 0.5 ]]))
    """
    table = read_csv_table(path, dtype={"recording_id": str})
    if "recording_id" not in table.columns:
        raise AnnotationError(f"{path}: no recording_id column")
    columns = {species_column_id(str(c)): c for c in table.columns[1:]}
    if None in columns:
        raise AnnotationError(
            f"{path}: column {columns[None]!r} is not a species column s<id>"
        )
    count = len(columns) if n_classes is None else n_classes
    if sorted(columns) != list(range(count)):
        raise AnnotationError(
            f"{path}: species columns must be s0..s{count - 1}, found "
            f"{', '.join(map(str, table.columns[1:]))}"
        )
    values = table[[columns[c] for c in range(count)]].apply(
        pd.to_numeric, errors="coerce"
    )
    bad = ~np.isfinite(values.to_numpy(float))
    if binary:
        bad |= ~values.isin([0, 1]).to_numpy()
    if bad.any():
        row, col = map(int, np.argwhere(bad)[0])
        kind = "0 or 1" if binary else "a finite number"
        raise AnnotationError(
            f"{path} line {row + 2}: {values.columns[col]} is not {kind}"
        )
    ids = list(table["recording_id"])
    if len(set(ids)) != len(ids):
        first = next(r for r in ids if ids.count(r) > 1)
        raise AnnotationError(f"{path}: recording {first!r} appears twice")
    return ids, values.to_numpy(float)


def read_reference(path, n_classes=None):
    """Reference annotations: a data folder, a box CSV or a clip-label CSV.

    Returns
    -------
    dict
        ``ids`` (recordings), ``truth`` ((N, C) 0/1), ``boxes``
        (``{recording_id: [Box]}``, or None for clip labels) and ``names``
        (from ``species.csv``, or None).
    """
    names = None
    if os.path.isdir(path):
        from speechbrain_rfcx.data.prepare import list_audio

        species_csv = os.path.join(path, SPECIES_FILE)
        if os.path.isfile(species_csv):
            names = read_species_csv(species_csv)
            n_classes = n_classes or len(names)
        ids = sorted(list_audio(os.path.join(path, "train")))
        path = os.path.join(path, "train_tp.csv")
    else:
        ids = None
    header = read_csv_table(path, nrows=0).columns
    if all(column in header for column in RFCX_COLUMNS):
        if n_classes is None:
            n_classes = int(read_csv_table(path)["species_id"].max()) + 1
        boxes = boxes_by_recording(read_rfcx_csv(path, n_classes))
        ids = sorted(boxes) if ids is None else ids
        truth = np.zeros((len(ids), n_classes))
        for i, rid in enumerate(ids):
            for box in boxes.get(rid, []):
                truth[i, box.species_id] = 1
        return {"ids": ids, "truth": truth, "boxes": boxes, "names": names}
    ids, truth = read_clip_table(path, n_classes, binary=True)
    return {"ids": ids, "truth": truth, "boxes": None, "names": names}


def read_detection_folder(folder):
    """``{recording_id: [Detection]}`` of an ``rfcx-detect`` output folder,
    from its per-file detection CSVs, else its Raven tables (ids: the path
    under ``folder`` without the suffix)."""
    from speechbrain_rfcx.detections.tables import read_detections_csv, read_raven_table
    from speechbrain_rfcx.runs import OUTPUT_SUFFIXES

    if not os.path.isdir(folder):
        raise FileNotFoundError(f"--detections {folder} is not a folder")
    for kind, reader in (("csv", read_detections_csv), ("raven", read_raven_table)):
        suffix = OUTPUT_SUFFIXES[kind]
        found = {}
        for root, _, files in os.walk(folder):
            for name in sorted(files):
                if name.endswith(suffix):
                    path = os.path.join(root, name)
                    rid = os.path.relpath(path, folder)[: -len(suffix)]
                    found[rid.replace(os.sep, "/")] = reader(path)
        if found:
            return found
    raise AnnotationError(
        f"--detections {folder}: no {OUTPUT_SUFFIXES['csv']} or "
        f"{OUTPUT_SUFFIXES['raven']} tables (rfcx-detect --format csv or raven)"
    )


def _align(reference_ids, ids):
    """Index into ``reference_ids`` of each id (exact, else by file name)."""
    position = {rid: i for i, rid in enumerate(reference_ids)}
    by_name = {}
    for rid, i in position.items():
        by_name.setdefault(os.path.basename(rid), []).append(i)
    result = []
    for rid in ids:
        if rid in position:
            result.append(position[rid])
        elif len(by_name.get(os.path.basename(rid), [])) == 1:
            result.append(by_name[os.path.basename(rid)][0])
        else:
            result.append(None)
    return result


def match_events(detections, boxes, collar=0.5):
    """Event-based counts of one recording, per species.

    A detection matches a box of the same species when its onset is within
    ``collar`` seconds of the box's and its offset within ``max(collar,
    box length / 2)``; detections are taken best score first, each box
    matches once (the nearest onset).

    Returns
    -------
    dict
        ``species_id -> [tp, fp, fn]``.

    Example
    -------
    >>> from speechbrain_rfcx.data.annotations import Box
    >>> from speechbrain_rfcx.detections.events import Detection
    >>> boxes = [Box(0, 1, 1.0, 0, 2.0, 1), Box(0, 1, 5.0, 0, 6.0, 1)]
    >>> match_events([Detection(0, 1.2, 2.1, 0.9), Detection(0, 8, 9, 0.8)], boxes)
    {0: [1, 1, 1]}
    """
    counts = {}
    free = {}
    for box in boxes:
        free.setdefault(box.species_id, []).append(box)
        counts.setdefault(box.species_id, [0, 0, 0])[2] += 1
    for d in sorted(detections, key=lambda d: -d.score):
        tally = counts.setdefault(d.species_id, [0, 0, 0])
        candidates = [
            b
            for b in free.get(d.species_id, [])
            if abs(d.t_min - b.t_min) <= collar
            and abs(d.t_max - b.t_max) <= max(collar, b.duration / 2)
        ]
        if candidates:
            box = min(candidates, key=lambda b: abs(d.t_min - b.t_min))
            free[d.species_id].remove(box)
            tally[0] += 1
            tally[2] -= 1
        else:
            tally[1] += 1
    return counts


def _ratio(a, b):
    return a / b if b else math.nan


def evaluate(reference, scores=None, detections=None, thresholds=0.5, collar=0.5):
    """Per-species and overall metrics (see the module docstring).

    Arguments
    ---------
    reference : dict
        :func:`read_reference`.
    scores : tuple, optional
        ``(recording_ids, (N, C) clip scores)``.
    detections : dict, optional
        ``{recording_id: [Detection]}``.
    thresholds : float or array-like
        Clip-level decision threshold(s), one or one per species.
    collar : float
        Event matching collar in seconds.

    Returns
    -------
    dict
        ``table`` (pandas.DataFrame, one row per species), ``summary``
        (dict), ``truth`` and ``scores`` (the aligned arrays).
    """
    from speechbrain_rfcx.metrics import (
        average_precision,
        lwlrap,
        lwlrap_per_class,
        precision_recall_at,
    )

    n_classes = reference["truth"].shape[1]
    if scores is None:  # best event score per recording and species
        ids = sorted(detections)
        values = np.zeros((len(ids), n_classes))
        for i, rid in enumerate(ids):
            for d in detections[rid]:
                if d.species_id >= n_classes:
                    raise AnnotationError(
                        f"detections of {rid}: species {d.species_id} is outside "
                        f"0..{n_classes - 1} of the reference"
                    )
                values[i, d.species_id] = max(values[i, d.species_id], d.score)
        scores = (ids, values)
    ids, values = scores
    if values.shape[1] != n_classes:
        raise ValueError(
            f"the scores have {values.shape[1]} species, the reference {n_classes}"
        )
    rows = _align(reference["ids"], ids)
    kept = [i for i, row in enumerate(rows) if row is not None]
    if not kept:
        raise ValueError("no scored recording is in the reference")
    truth = reference["truth"][[rows[i] for i in kept]]
    values = values[kept]
    per_class, _ = lwlrap_per_class(truth, values)
    precision, recall = precision_recall_at(truth, values, thresholds)
    names = reference["names"]
    table = pd.DataFrame(
        {
            "species_id": range(n_classes),
            "species": [species_name(c, names) for c in range(n_classes)],
            "positives": truth.sum(0).astype(int),
            "ap": average_precision(truth, values),
            "lwlrap": per_class,
            "threshold": np.broadcast_to(np.asarray(thresholds, float), (n_classes,)),
            "precision": precision,
            "recall": recall,
        }
    )
    summary = {
        "recordings": len(kept),
        "left_out": len(ids) - len(kept),
        "lwlrap": lwlrap(truth, values),
        "mean_ap": float(np.nanmean(table["ap"])),
    }
    if detections is not None and reference["boxes"] is not None:
        events = np.zeros((n_classes, 3), dtype=int)
        aligned = dict(zip(ids, rows))
        for rid, row in aligned.items():
            if row is None or rid not in detections:
                continue
            boxes = reference["boxes"].get(reference["ids"][row], [])
            for species, tally in match_events(detections[rid], boxes, collar).items():
                events[species] += tally
        table["event_tp"], table["event_fp"], table["event_fn"] = events.T
        table["event_f1"] = [_ratio(2 * tp, 2 * tp + fp + fn) for tp, fp, fn in events]
        tp, fp, fn = events.sum(0)
        summary.update(
            event_precision=_ratio(tp, tp + fp),
            event_recall=_ratio(tp, tp + fn),
            event_f1=_ratio(2 * tp, 2 * tp + fp + fn),
            collar=collar,
        )
    return {"table": table, "summary": summary, "truth": truth, "scores": values}


def summary_text(result):
    """The printed report: overall figures, then the per-species table."""
    s = result["summary"]
    lines = [
        f"{s['recordings']} recordings evaluated"
        + (f" ({s['left_out']} scored recordings not in the reference)" if s["left_out"] else ""),
        f"lwlrap {s['lwlrap']:.4f}, mean AP over species with positives {s['mean_ap']:.4f}",
    ]  # fmt: skip
    if "event_f1" in s:
        lines.append(
            f"events (collar {s['collar']} s): precision {s['event_precision']:.4f}, "
            f"recall {s['event_recall']:.4f}, F1 {s['event_f1']:.4f}"
        )
    lines.append(
        result["table"].to_string(index=False, float_format=lambda v: f"{v:.4f}")
    )
    return "\n".join(lines) + "\n"


def write_thresholds(path, fitted):
    """``species_id,threshold`` rows for the species with a fitted value."""
    rows = [(c, round(float(t), 6)) for c, t in enumerate(fitted) if not math.isnan(t)]
    frame = pd.DataFrame(rows, columns=["species_id", "threshold"])
    write_atomically(path, frame.to_csv(index=False, lineterminator="\n"))


def plot_pr_curves(path, truth, scores, names=None, max_species=12):
    """Precision-recall curves of the species with the most positives."""
    from matplotlib.figure import Figure

    from speechbrain_rfcx.metrics import average_precision, precision_recall_curves

    curves = precision_recall_curves(truth, scores)
    ap = average_precision(truth, scores)
    order = [c for c in np.argsort(-truth.sum(0), kind="stable") if truth[:, c].any()]
    figure = Figure(figsize=(7, 5.5))
    axes = figure.subplots()
    for c in order[:max_species]:
        _, precision, recall = curves[c]
        axes.step(np.r_[0, recall], np.r_[precision[0], precision], where="post",
                  label=f"{species_name(c, names)} (AP {ap[c]:.2f})")  # fmt: skip
    axes.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
             title="Clip-level precision-recall")  # fmt: skip
    axes.legend(fontsize="small", loc="lower left")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    write_atomically(path, buffer.getvalue())


def main(argv=None):
    """``rfcx-evaluate``: metrics against reference annotations, thresholds."""
    parser = argparse.ArgumentParser(
        prog="rfcx-evaluate",
        description="Evaluate clip scores or detections against reference "
        "annotations (AP, lwlrap, precision/recall, event F1) and fit "
        "per-species thresholds.",
    )
    parser.add_argument("--reference", required=True,
                        help="data folder, RFCX box CSV or clip-label CSV")  # fmt: skip
    parser.add_argument("--scores", metavar="CSV", help="recording_id,s0,s1,... scores")
    parser.add_argument("--detections", metavar="DIR", help="rfcx-detect output folder")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--thresholds", metavar="CSV",
                        help="per-species thresholds (species_id,threshold)")  # fmt: skip
    parser.add_argument("--collar", type=float, default=0.5, help="seconds")
    parser.add_argument("--fit-precision", type=float, metavar="P",
                        help="write thresholds.csv reaching precision P")  # fmt: skip
    parser.add_argument("--plot", action="store_true", help="also pr_curves.png")
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    args = parser.parse_args(argv)
    try:
        if args.scores is None and args.detections is None:
            raise ValueError("give --scores, --detections or both")
        if not 0.0 <= args.threshold <= 1.0:
            raise ValueError(f"--threshold must lie in [0, 1], got {args.threshold}")
        if args.collar < 0:
            raise ValueError(f"--collar must be >= 0, got {args.collar}")
        if args.plot:
            require("matplotlib", "plot", "--plot")
        if args.fit_precision is not None and not 0 < args.fit_precision <= 1:
            raise ValueError(
                f"--fit-precision must lie in (0, 1], got {args.fit_precision}"
            )
        scores = read_clip_table(args.scores) if args.scores else None
        n_classes = None if scores is None else scores[1].shape[1]
        reference = read_reference(args.reference, n_classes)
        n_classes = reference["truth"].shape[1]
        thresholds = np.full(n_classes, args.threshold)
        if args.thresholds:
            from speechbrain_rfcx.detections.events import read_thresholds

            for species, value in read_thresholds(args.thresholds, n_classes).items():
                thresholds[species] = value
        detections = read_detection_folder(args.detections) if args.detections else None
        os.makedirs(args.out, exist_ok=True)
        result = evaluate(reference, scores, detections, thresholds, args.collar)
    except (ValueError, OSError) as e:  # AnnotationError too
        parser.error(str(e))
    text = summary_text(result)
    write_atomically(os.path.join(args.out, SUMMARY_NAME), text)
    write_atomically(
        os.path.join(args.out, "per_species.csv"),
        result["table"].to_csv(index=False, lineterminator="\n"),
    )
    print(text, end="")
    if args.fit_precision is not None:
        from speechbrain_rfcx.metrics import fit_thresholds

        fitted = fit_thresholds(result["truth"], result["scores"], args.fit_precision)
        path = os.path.join(args.out, "thresholds.csv")
        write_thresholds(path, fitted)
        never = [
            species_name(c, reference["names"])
            for c, t in enumerate(fitted)
            if t == 1.0
        ]
        print(f"rfcx-evaluate: wrote {path} (precision {args.fit_precision})")
        if never:
            print(f"rfcx-evaluate: never reach it, threshold 1.0: {', '.join(never)}")
    if args.plot:
        plot_pr_curves(
            os.path.join(args.out, "pr_curves.png"),
            result["truth"], result["scores"], reference["names"],
        )  # fmt: skip
    return 0
