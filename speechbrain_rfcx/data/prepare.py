"""Kaggle RFCX layout -> SpeechBrain JSON manifests and cross-validation folds.

``prepare_rfcx(data_folder, save_folder)`` reads::

    <data_folder>/train/<recording_id>.flac
    <data_folder>/test/<recording_id>.flac      (optional)
    <data_folder>/train_tp.csv
    <data_folder>/train_fp.csv                  (optional)
    <data_folder>/sample_submission.csv         (optional; fixes the test order)
    <data_folder>/species.csv                   (optional; species_id,name)

and writes into ``save_folder``:

- ``train.json``: one entry per training recording: ``wav`` (with a
  ``{data_root}`` placeholder, see ``speechbrain.dataio.dataio.load_data_json``),
  ``duration``, ``sample_rate``, ``channels``, ``tp_boxes``, ``fp_boxes`` and
  ``fold``;
- ``test.json``: ``wav``, ``duration``, ``sample_rate``, ``channels`` per test
  recording;
- ``folds.csv``: ``recording_id,fold``;
- ``prepare_options.json``: what the call was given and found, written last
  (its ``result`` holds the species names of ``species.csv``, if any);
  a second call with the same arguments and unchanged inputs does nothing.

Everything is validated before anything is written, and every file is
written to a temporary name and renamed, so a failure leaves the previous
preparation (if any) untouched.
"""

import argparse
import json
import logging
import os

import numpy as np
import pandas as pd
from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

from speechbrain_rfcx import __version__
from speechbrain_rfcx._io import read_record, write_atomically, write_record
from speechbrain_rfcx.data.annotations import (
    N_SPECIES,
    SPECIES_FILE,
    AnnotationError,
    boxes_by_recording,
    check_boxes_against_audio,
    empty_annotations,
    read_csv_table,
    read_rfcx_csv,
    read_species_csv,
)
from speechbrain_rfcx.data.audio import AUDIO_EXTENSIONS, AudioError, audio_info

logger = logging.getLogger(__name__)

OPTIONS_FILE = "prepare_options.json"


def list_audio(folder):
    """``{recording_id: path}`` for the audio files directly in ``folder``.

    Example
    -------
    >>> import tempfile
    >>> list_audio(tempfile.mkdtemp())
    {}
    """
    if not os.path.isdir(folder):
        return {}
    found = {}
    for name in sorted(os.listdir(folder)):
        stem, ext = os.path.splitext(name)
        if ext.lower() in AUDIO_EXTENSIONS:
            if stem in found:
                raise AudioError(
                    f"{folder}: two audio files for recording {stem}: "
                    f"{os.path.basename(found[stem])} and {name}"
                )
            found[stem] = os.path.join(folder, name)
    return found


def assign_folds(recording_ids, labels, n_folds=5, seed=1):
    """Multi-label stratified folds (iterstrat), one fold per recording.

    Arguments
    ---------
    recording_ids : list of str
    labels : numpy.ndarray
        ``(len(recording_ids), L)`` multi-hot matrix to stratify on; rows
        may be all zero.
    n_folds : int
    seed : int

    Returns
    -------
    dict
        ``recording_id -> fold`` in ``0..n_folds-1``.

    Example
    -------
    >>> labels = np.eye(4, dtype=int).repeat(5, axis=0)
    >>> folds = assign_folds([str(i) for i in range(20)], labels, n_folds=5)
    >>> np.bincount(list(folds.values())).tolist()
    [4, 4, 4, 4, 4]
    """
    if isinstance(n_folds, bool) or not isinstance(n_folds, int) or n_folds < 2:
        raise ValueError(
            f"n_folds must be an integer of at least 2 (one fold is held out, the "
            f"others train), got {n_folds!r}"
        )
    if len(recording_ids) < n_folds:
        raise ValueError(
            f"n_folds={n_folds} needs at least that many recordings, "
            f"found {len(recording_ids)}"
        )
    splitter = MultilabelStratifiedKFold(
        n_splits=n_folds, shuffle=True, random_state=seed
    )
    folds = np.full(len(recording_ids), -1)
    for fold, (_, held_out) in enumerate(
        splitter.split(np.zeros((len(recording_ids), 1)), labels)
    ):
        folds[held_out] = fold
    return {rid: int(f) for rid, f in zip(recording_ids, folds)}


def _fingerprint(path):
    """Size and modification time of a file, or None when absent."""
    if not os.path.exists(path):
        return None
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns]


def _read_audio_folder(folder):
    """``{recording_id: info dict}`` for every audio file of ``folder``."""
    return {rid: audio_info(path) for rid, path in list_audio(folder).items()}


def _entry(split, rid, path, info):
    name = os.path.basename(path)
    return {
        "wav": f"{{data_root}}/{split}/{name}",
        "duration": round(info["duration"], 6),
        "sample_rate": info["sample_rate"],
        "channels": info["channels"],
    }


def prepare_rfcx(data_folder, save_folder, n_folds=5, seed=1, n_classes=None):
    """Prepare the RFCX Kaggle layout for SpeechBrain (see module docstring).

    Arguments
    ---------
    data_folder : str
        Folder with ``train/``, ``train_tp.csv`` and optionally ``test/``,
        ``train_fp.csv`` and ``sample_submission.csv``.
    save_folder : str
        Where the manifests go (created if needed).
    n_folds : int
        Cross-validation folds, stratified over TP and FP species labels.
    seed : int
        Fold shuffling seed.
    n_classes : int, optional
        Number of species (ids ``0..n_classes-1``). Default: as many as
        ``species.csv`` names (``rfcx-import`` writes it), else 24 (RFCX).
        Given with a ``species.csv`` of another length, it is an error.

    Returns
    -------
    dict
        Paths of the written files and counts, also stored in
        ``prepare_options.json``.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_rfcx.data.synthetic import generate_rfcx_dataset
    >>> data = tempfile.mkdtemp()
    >>> _ = generate_rfcx_dataset(data, n_train=12, n_test=2, duration=3.0,
    ...                           sample_rate=16000, seed=3)
    >>> out = prepare_rfcx(data, tempfile.mkdtemp(), n_folds=3)
    >>> out["n_train"], out["n_test"]
    (12, 2)
    """
    data_folder = os.path.abspath(data_folder)
    tp_csv = os.path.join(data_folder, "train_tp.csv")
    fp_csv = os.path.join(data_folder, "train_fp.csv")
    submission_csv = os.path.join(data_folder, "sample_submission.csv")
    species_csv = os.path.join(data_folder, SPECIES_FILE)
    train_dir = os.path.join(data_folder, "train")
    test_dir = os.path.join(data_folder, "test")
    if not os.path.isdir(data_folder):
        raise FileNotFoundError(f"data folder {data_folder} does not exist")
    if not os.path.isfile(tp_csv):
        raise FileNotFoundError(f"{tp_csv} is missing (the RFCX true-positive boxes)")
    if not os.path.isdir(train_dir):
        raise FileNotFoundError(f"{train_dir} is missing (the training audio)")
    class_names = None
    if os.path.isfile(species_csv):
        class_names = read_species_csv(species_csv)
        if n_classes is not None and n_classes != len(class_names):
            raise AnnotationError(
                f"{species_csv} names {len(class_names)} species but n_classes is "
                f"{n_classes}: give n_classes={len(class_names)} (train.py "
                f"--n_classes={len(class_names)}, rfcx-prepare --n-classes)"
            )
        n_classes = len(class_names)
    elif n_classes is None:
        n_classes = N_SPECIES

    options = {
        "data_folder": data_folder,
        "n_folds": n_folds,
        "seed": seed,
        "n_classes": n_classes,
        "inputs": {
            name: _fingerprint(path)
            for name, path in [
                ("train_tp.csv", tp_csv),
                ("train_fp.csv", fp_csv),
                ("sample_submission.csv", submission_csv),
                (SPECIES_FILE, species_csv),
            ]
        },
        # size and modification time of every recording: a file replaced or
        # re-encoded under the same name is read again
        "audio": {
            split: {rid: _fingerprint(path) for rid, path in list_audio(folder).items()}
            for split, folder in (("train", train_dir), ("test", test_dir))
        },
    }
    options_path = os.path.join(save_folder, OPTIONS_FILE)
    previous = read_record(options_path)
    if previous is not None:
        written = [
            (previous.get("result") or {}).get(k, "")
            for k in ("train_json", "test_json", "folds_csv")
        ]
        if previous.get("options") == options and all(map(os.path.isfile, written)):
            logger.info(
                "%s is already prepared in %s with the same options: skipping",
                data_folder,
                save_folder,
            )
            return previous["result"]

    tp = read_rfcx_csv(tp_csv, n_classes)
    fp = (
        read_rfcx_csv(fp_csv, n_classes)
        if os.path.isfile(fp_csv)
        else empty_annotations()
    )
    train_info = _read_audio_folder(train_dir)
    test_info = _read_audio_folder(test_dir)
    if not train_info:
        raise AudioError(f"{train_dir}: no audio files ({', '.join(AUDIO_EXTENSIONS)})")
    check_boxes_against_audio(tp, tp_csv, train_info)
    check_boxes_against_audio(fp, fp_csv, train_info)

    test_ids = sorted(test_info)
    if os.path.isfile(submission_csv):
        test_ids = _submission_order(submission_csv, test_info, test_dir)

    tp_boxes = boxes_by_recording(tp)
    fp_boxes = boxes_by_recording(fp)
    train_ids = sorted(train_info)
    labels = np.zeros((len(train_ids), 2 * n_classes), dtype=int)
    for i, rid in enumerate(train_ids):
        for box in tp_boxes.get(rid, []):
            labels[i, box.species_id] = 1
        for box in fp_boxes.get(rid, []):
            labels[i, n_classes + box.species_id] = 1
    folds = assign_folds(train_ids, labels, n_folds=n_folds, seed=seed)

    train_paths = list_audio(train_dir)
    train_manifest = {}
    for rid in train_ids:
        entry = _entry("train", rid, train_paths[rid], train_info[rid])
        entry["tp_boxes"] = [b.to_dict() for b in tp_boxes.get(rid, [])]
        entry["fp_boxes"] = [b.to_dict() for b in fp_boxes.get(rid, [])]
        entry["fold"] = folds[rid]
        train_manifest[rid] = entry
    test_paths = list_audio(test_dir)
    test_manifest = {
        rid: _entry("test", rid, test_paths[rid], test_info[rid]) for rid in test_ids
    }

    os.makedirs(save_folder, exist_ok=True)
    result = {
        "train_json": os.path.join(save_folder, "train.json"),
        "test_json": os.path.join(save_folder, "test.json"),
        "folds_csv": os.path.join(save_folder, "folds.csv"),
        "n_train": len(train_manifest),
        "n_test": len(test_manifest),
        "n_tp_boxes": len(tp),
        "n_fp_boxes": len(fp),
        "n_classes": n_classes,
        "class_names": class_names,
    }
    if os.path.isfile(options_path):
        os.remove(options_path)  # an interrupted rewrite must not look complete
    write_atomically(result["train_json"], json.dumps(train_manifest, indent=1))
    write_atomically(result["test_json"], json.dumps(test_manifest, indent=1))
    write_atomically(
        result["folds_csv"],
        pd.DataFrame(
            {"recording_id": train_ids, "fold": [folds[r] for r in train_ids]}
        ).to_csv(index=False),
    )
    write_record(options_path, {"options": options, "result": result})
    logger.info(
        "prepared %d training and %d test recordings from %s into %s",
        result["n_train"],
        result["n_test"],
        data_folder,
        save_folder,
    )
    return result


def _submission_order(path, test_info, test_dir):
    """Test ids in the order of ``sample_submission.csv``, checked against audio."""
    table = read_csv_table(path, dtype={"recording_id": str})
    if "recording_id" not in table.columns:
        raise AnnotationError(f"{path}: missing column recording_id")
    ids = table["recording_id"]
    for i, rid in enumerate(ids):
        if rid not in test_info:
            raise AudioError(
                f"{path} line {i + 2}: no audio file for test recording {rid} "
                f"in {test_dir}"
            )
    extra = sorted(set(test_info) - set(ids))
    if extra:
        logger.warning(
            "%d test recordings are not in %s (e.g. %s); they are left out",
            len(extra),
            path,
            extra[0],
        )
    return list(ids)


def summarize_manifest(train_json, n_classes=None, class_names=None):
    """A printable summary of a prepared training manifest and its folds
    (``n_classes``: the number of species; None: the largest id + 1;
    ``class_names``: a table of boxes per species by name, if given).

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "train.json")
    >>> box = {"species_id": 1, "songtype_id": 1, "t_min": 0.0, "f_min": 1.0,
    ...        "t_max": 1.0, "f_max": 2.0}
    >>> _ = open(path, "w").write(json.dumps({"a": {"duration": 2.0,
    ...     "sample_rate": 8000, "tp_boxes": [box], "fp_boxes": [], "fold": 0}}))
    >>> print(summarize_manifest(path, n_classes=2).splitlines()[0])
    1 training recordings, 0.0 h of audio at 8000 Hz
    """
    with open(train_json, encoding="utf-8") as f:
        manifest = json.load(f)
    folds = sorted({e["fold"] for e in manifest.values()})
    if n_classes is None:
        ids = [
            b["species_id"]
            for e in manifest.values()
            for b in e["tp_boxes"] + e["fp_boxes"]
        ]
        n_classes = max(ids, default=-1) + 1
    tp = np.zeros((len(folds), n_classes), dtype=int)
    fp = np.zeros((len(folds), n_classes), dtype=int)
    n_rec = np.zeros(len(folds), dtype=int)
    rates = sorted({e["sample_rate"] for e in manifest.values()})
    for entry in manifest.values():
        k = folds.index(entry["fold"])
        n_rec[k] += 1
        for box in entry["tp_boxes"]:
            tp[k, box["species_id"]] += 1
        for box in entry["fp_boxes"]:
            fp[k, box["species_id"]] += 1
    hours = sum(e["duration"] for e in manifest.values()) / 3600
    with_tp = sum(bool(e["tp_boxes"]) for e in manifest.values())
    with_fp = sum(bool(e["fp_boxes"]) for e in manifest.values())
    lines = [
        f"{len(manifest)} training recordings, {hours:.1f} h of audio at "
        f"{', '.join(map(str, rates))} Hz",
        f"{with_tp} with TP boxes ({tp.sum()} boxes), {with_fp} with FP boxes "
        f"({fp.sum()} boxes)",
        "fold  recordings  TP boxes  FP boxes  species with TP",
    ]
    for k, fold in enumerate(folds):
        lines.append(
            f"{fold:>4}  {n_rec[k]:>10}  {tp[k].sum():>8}  {fp[k].sum():>8}  "
            f"{(tp[k] > 0).sum():>15}"
        )
    if class_names is None:
        lines.append("TP boxes per species: " + " ".join(map(str, tp.sum(0))))
        lines.append("FP boxes per species: " + " ".join(map(str, fp.sum(0))))
    else:
        width = max(len("species"), *map(len, class_names))
        lines.append(f"{'id':>4}  {'species':<{width}}  TP boxes  FP boxes")
        for species, name in enumerate(class_names):
            lines.append(
                f"{species:>4}  {name:<{width}}  {tp[:, species].sum():>8}  "
                f"{fp[:, species].sum():>8}"
            )
    return "\n".join(lines)


def main(argv=None):
    """``rfcx-prepare``: prepare a Kaggle-layout folder and print a summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-folder", required=True)
    parser.add_argument("--save-folder", required=True)
    parser.add_argument("--n-folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    parser.add_argument(
        "--n-classes",
        type=int,
        help="number of species; ids 0..N-1 (default: the names of species.csv, "
        f"else {N_SPECIES} as RFCX)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        result = prepare_rfcx(
            args.data_folder,
            args.save_folder,
            n_folds=args.n_folds,
            seed=args.seed,
            n_classes=args.n_classes,
        )
    except (ValueError, FileNotFoundError) as e:  # AnnotationError, AudioError too
        raise SystemExit(f"rfcx-prepare: {e}") from e
    print(
        summarize_manifest(
            result["train_json"], result["n_classes"], result["class_names"]
        )
    )
    print(f"manifests: {result['train_json']}, {result['test_json']}")


if __name__ == "__main__":
    main()
