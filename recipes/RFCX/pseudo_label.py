#!/usr/bin/env python3
"""Pseudo-labelling rounds: cross-validate, label the unlabelled cells, retrain.

    python pseudo_label.py hparams/small_cpu.yaml [--pl_rounds=2] [--data_folder=...]

Round 0 is the ordinary cross-validation (``cross_validate.py``: every fold
in ``<output_folder>/fold<K>``). After each round its models score the
recordings: every training recording with the fold model that did not train
on it (out of fold), every test recording with the fold ensemble. The
framewise probabilities go to ``<round folder>/predictions/`` and the
ensemble's test clip probabilities to ``<round folder>/test_predictions.csv``
(scored into ``test_lwlrap.txt`` when the test labels are known, as with the
synthetic data). Round ``r >= 1`` lives in ``<output_folder>/pl_round<r>/``:
every fold retrains from scratch with the masked TP/FP loss on crops that
carry round ``r - 1``'s predictions as pseudo-labels in the cells no human
box labels (``speechbrain_rfcx.data.pseudo``: human TP and FP labels always
win). Crops lie on TP / FP boxes with probability ``pseudo_box_crop_prob``
and anywhere otherwise, test recordings included when ``pseudo_label_test``
(transductive, as in the competition). The rounds, that share and the
thresholds (``pseudo_positive``, ``pseudo_negative``, ``pseudo_soft``) are
hparams.

Every step is resumable: finished folds are skipped by ``train.py``, a
round's predictions are kept with a record of the checkpoints that made
them and redone only when those change, and a killed run starts again where
it stopped. Out-of-fold scores of every round: ``<round folder>/oof_lwlrap.txt``.
"""

import os
import sys

import speechbrain as sb
import torch
from cross_validate import cross_validate

from speechbrain_rfcx._io import read_record, write_record
from speechbrain_rfcx.data.pseudo import pseudo_label_path, write_pseudo_labels
from speechbrain_rfcx.experiment import (
    DATA_SOURCE_FILE,
    class_names,
    complete_test_labels,
    load_hparams,
    load_manifest,
    write_scores,
)
from speechbrain_rfcx.interface import SpeciesDetector, ensemble_detect_file
from speechbrain_rfcx.metrics import LwlrapStats

PREDICTIONS = "predictions"
RECORD = "record.json"


def round_folder(hparams, round_index):
    """``<output_folder>`` for round 0, ``<output_folder>/pl_round<r>`` after."""
    if round_index == 0:
        return hparams["output_folder"]
    return os.path.join(hparams["output_folder"], f"pl_round{round_index}")


def round_overrides(hparams, round_index):
    """The ``train.py`` overrides of a round (a format string over ``{fold}``)."""
    if round_index == 0:
        return []
    folder = round_folder(hparams, round_index)
    return [
        f"--fold_folder={folder}/fold{{fold}}",
        f"--pseudo_labels={round_folder(hparams, round_index - 1)}/{PREDICTIONS}",
        "--masked_supervision=True",
    ]


def without_overrides(argv, extra):
    """``argv`` less the options that ``extra`` sets: a round decides those.

    Example
    -------
    >>> without_overrides(["h.yaml", "--masked_supervision=False", "--seed", "3"],
    ...                   ["--masked_supervision=True", "--seed=1"])
    ['h.yaml']
    """
    keys = {arg.split("=", 1)[0] for arg in extra}
    kept, skip_value = [], False
    for arg in argv:
        if skip_value and not arg.startswith("--"):
            skip_value = False
            continue
        skip_value = arg in keys  # "--key value"
        if not skip_value and arg.split("=", 1)[0] not in keys:
            kept.append(arg)
    return kept


def checkpoints(fold_folders):
    """The checkpoint names of each fold: what a round's predictions came from."""
    return {
        os.path.basename(folder): sorted(
            n for n in os.listdir(os.path.join(folder, "save")) if n.startswith("CKPT")
        )
        for folder in fold_folders
    }


def predict_round(hparams, folder, fold_folders, data_folder, train_too, device):
    """Framewise predictions of a round's models; test ensemble scores.

    Training recordings (when ``train_too``) are scored by the model of the
    fold that held them out, test recordings by the mean of every fold.
    """
    predictions = os.path.join(folder, PREDICTIONS)
    record_path = os.path.join(predictions, RECORD)
    made_by = {"checkpoints": checkpoints(fold_folders), "train": train_too}
    if read_record(record_path) == made_by:
        return predictions
    os.makedirs(predictions, exist_ok=True)
    detectors = [
        SpeciesDetector.from_hparams(f, run_opts={"device": device})
        for f in fold_folders
    ]

    def save(rid, result):
        path = pseudo_label_path(predictions, rid)
        write_pseudo_labels(path, result["frame_probs"], result["frame_hop"])

    if train_too:
        for rid, entry in load_manifest(hparams, data_folder, "train").items():
            save(rid, detectors[entry["fold"]].detect_file(entry["wav"]))
    test = load_manifest(hparams, data_folder, "test")
    ids, clip_probs = [], []
    for rid, entry in sorted(test.items()):
        result = ensemble_detect_file(detectors, entry["wav"])
        save(rid, result)
        ids.append(rid)
        clip_probs.append(torch.as_tensor(result["clip_probs"]))
    probs = torch.stack(clip_probs)
    write_scores(os.path.join(folder, "test_predictions.csv"), ids, probs)
    score_test(hparams, folder, data_folder, ids, probs)
    write_record(record_path, made_by)
    return predictions


def score_test(hparams, folder, data_folder, ids, probs):
    """``test_lwlrap.txt`` of the fold ensemble when the test labels are known."""
    truth = complete_test_labels(hparams, data_folder, ids)
    if truth is None:
        return  # real RFCX: the test labels are hidden
    stats = LwlrapStats(class_names=class_names(hparams))
    stats.append(ids, probs.double(), truth, torch.ones_like(truth))
    with open(os.path.join(folder, "test_lwlrap.txt"), "w") as f:
        stats.write_stats(f)
    print(f"{folder}: fold-ensemble test lwlrap {stats.summarize()['lwlrap']:.4f}")


def main(argv):
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    hparams = load_hparams(hparams_file, overrides)
    rounds = int(hparams["pl_rounds"])
    if rounds < 0:
        raise ValueError(f"pl_rounds must be 0 or more, got {rounds}")
    device = run_opts.get("device", "cpu")
    for r in range(rounds + 1):
        folder = round_folder(hparams, r)
        extra = round_overrides(hparams, r)
        oof = cross_validate(without_overrides(argv, extra), extra, folder)
        data_folder = read_record(
            os.path.join(hparams["output_folder"], DATA_SOURCE_FILE)
        )["data_folder"]
        fold_folders = [
            os.path.join(folder, f"fold{k}") for k in range(hparams["n_folds"])
        ]
        predict_round(hparams, folder, fold_folders, data_folder, r < rounds, device)
        print(f"round {r}: out-of-fold lwlrap {oof:.4f} ({folder})")


if __name__ == "__main__":
    main(sys.argv[1:])
