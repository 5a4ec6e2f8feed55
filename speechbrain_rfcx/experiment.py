"""Recipe plumbing shared by the RFCX recipes: data source, fold datasets, scores.

Kept out of the recipe scripts so that ``train.py`` stays a short wiring of
hparams objects, and so users' own recipes can call the same steps.
"""

import logging
import os

import pandas as pd
import torch
from speechbrain.dataio.dataio import load_data_json
from speechbrain.utils.distributed import run_on_main

from speechbrain_rfcx import _optional
from speechbrain_rfcx._io import read_record, write_atomically, write_record
from speechbrain_rfcx.data.annotations import (
    boxes_by_recording,
    read_rfcx_csv,
    species_bands,
    species_columns,
)
from speechbrain_rfcx.data.pipelines import (
    crop_dataset,
    recording_dataset,
    recording_labels,
)
from speechbrain_rfcx.data.prepare import OPTIONS_FILE, prepare_rfcx
from speechbrain_rfcx.data.pseudo import PseudoLabelRule, pseudo_label_path
from speechbrain_rfcx.data.sampling import anchored_entries, make_train_sampler
from speechbrain_rfcx.data.synthetic import generate_rfcx_dataset
from speechbrain_rfcx.interface import training_settings

logger = logging.getLogger(__name__)

DATA_SOURCE_FILE = "data_source.json"


class DataSourceMismatch(ValueError):
    """An output folder made from one dataset is reused with another."""


def load_hparams(hparams_file, overrides=None):
    """The recipe's hparams (``load_hyperpyyaml``); a TensorBoard logger
    without tensorboard installed stops it with the extra to install instead
    of an ImportError from deep inside torch.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "h.yaml")
    >>> _ = open(path, "w").write("seed: 1\\nlr: !ref <seed>\\n")
    >>> load_hparams(path, {"seed": 2})["lr"]
    2
    """
    from hyperpyyaml import load_hyperpyyaml

    with open(hparams_file, encoding="utf-8") as f:
        if "TensorboardLogger" in f.read():
            try:
                _optional.require(
                    "tensorboard", "train", f"{hparams_file} (TensorboardLogger)"
                )
            except ValueError as e:
                raise SystemExit(str(e)) from None
        f.seek(0)  # the file itself: its !include paths are relative to it
        return load_hyperpyyaml(f, overrides)


def resolve_data_folder(hparams):
    """The data folder to train on; generates the synthetic data if none is given.

    With ``data_folder: null`` the built-in synthetic RFCX dataset is
    generated once in ``synthetic_folder`` (at the recipe's sample rate) and
    the log says so. The choice is recorded in ``output_folder``; reusing that
    folder with another data source raises :class:`DataSourceMismatch`
    instead of silently mixing checkpoints and manifests of both.

    Returns
    -------
    tuple
        ``(data_folder, is_synthetic)``.
    """
    data_folder = hparams["data_folder"]
    synthetic = data_folder in (None, "", "null", "None")
    if synthetic:
        data_folder = hparams["synthetic_folder"]
        logger.info(
            "no --data_folder given: using the built-in synthetic RFCX dataset in %s",
            data_folder,
        )
        run_on_main(
            generate_rfcx_dataset,
            kwargs={
                "out_dir": data_folder,
                "n_train": hparams["synthetic_n_train"],
                "n_test": hparams["synthetic_n_test"],
                "duration": hparams["synthetic_duration"],
                "tp_fraction": hparams["synthetic_tp_fraction"],
                "sample_rate": hparams["sample_rate"],
                "seed": hparams["seed"],
            },
        )
    elif not os.path.isdir(data_folder):
        raise FileNotFoundError(f"--data_folder {data_folder} does not exist")
    source = {"data_folder": os.path.abspath(data_folder), "synthetic": synthetic}
    record = os.path.join(hparams["output_folder"], DATA_SOURCE_FILE)
    previous = read_record(record)
    if previous is not None:
        if previous != source:
            raise DataSourceMismatch(
                f"{hparams['output_folder']} holds results for data "
                f"{previous['data_folder']} (synthetic={previous['synthetic']}), "
                f"not {source['data_folder']}: choose another output_root or "
                "experiment name"
            )
    else:
        os.makedirs(hparams["output_folder"], exist_ok=True)
        write_record(record, source)
    return data_folder, synthetic


def prepare(hparams, data_folder):
    """Runs ``prepare_rfcx`` once (main process) and loads the train manifest.

    ``hparams["class_names"]``, when null, becomes the names of the data's
    ``species.csv`` (see :func:`class_names`).
    """
    run_on_main(
        prepare_rfcx,
        kwargs={
            "data_folder": data_folder,
            "save_folder": hparams["prepare_folder"],
            "n_folds": hparams["n_folds"],
            "seed": hparams["seed"],
            "n_classes": hparams["n_classes"],
        },
    )
    hparams["class_names"] = class_names(hparams)
    return load_manifest(hparams, data_folder, "train")


def class_names(hparams):
    """The species names: ``hparams["class_names"]`` when given, else those
    the preparation found in ``species.csv`` (None without one: ``s<id>``)."""
    if hparams["class_names"] is not None:
        names = list(hparams["class_names"])
        if len(names) != hparams["n_classes"]:
            raise ValueError(
                f"class_names has {len(names)} names for n_classes "
                f"{hparams['n_classes']}"
            )
        return names
    record = read_record(os.path.join(hparams["prepare_folder"], OPTIONS_FILE))
    return ((record or {}).get("result") or {}).get("class_names")


def load_manifest(hparams, data_folder, split):
    """The prepared ``train`` or ``test`` manifest, paths under ``data_folder``."""
    return load_data_json(
        os.path.join(hparams["prepare_folder"], f"{split}.json"),
        replacements={"data_root": os.path.abspath(data_folder)},
    )


def save_detector_settings(hparams, data_folder):
    """Make the fold folder a complete detector: write its inference settings.

    The rate, classes, validation windows, class names and the species
    bands of the training TP boxes (``train_tp.csv``) go to
    ``<fold_folder>/detector_settings.yaml``
    (:class:`~speechbrain_rfcx.interface.DetectorSettings`), so that
    :class:`~speechbrain_rfcx.interface.SpeciesDetector` loads the fold
    folder without the training data.

    Returns
    -------
    str
        The fold folder.
    """
    boxes = read_rfcx_csv(
        os.path.join(data_folder, "train_tp.csv"), hparams["n_classes"]
    )
    settings = training_settings(hparams, species_bands=species_bands(boxes))
    return settings.write(hparams["fold_folder"])


def crop_sources(hparams):
    """Anchor-source weights for the supervision chosen in hparams.

    With pseudo-labels (``pseudo_labels`` set), crops on TP / FP boxes take
    the share ``pseudo_box_crop_prob`` and random crops, which carry
    pseudo-labels, the rest (``random_crop_weight`` is then not used).
    """
    sources = {
        "tp": hparams["tp_crop_weight"],
        "fp": hparams["fp_crop_weight"] if hparams["masked_supervision"] else 0.0,
        "random": hparams["random_crop_weight"],
    }
    if hparams["pseudo_labels"] is not None:
        box_share = float(hparams["pseudo_box_crop_prob"])
        if not 0.0 <= box_share <= 1.0:
            raise ValueError(
                f"pseudo_box_crop_prob must be in [0, 1], got {box_share!r}"
            )
        boxes = sources["tp"] + sources["fp"]
        if box_share == 0.0 or boxes == 0:
            sources = {"random": 1.0}
        else:
            sources["random"] = boxes * (1.0 - box_share) / box_share
    return {name: weight for name, weight in sources.items() if weight > 0}


def pseudo_label_rule(hparams):
    """The :class:`PseudoLabelRule` of hparams, or None without pseudo-labels."""
    if hparams["pseudo_labels"] is None:
        return None
    return PseudoLabelRule(
        float(hparams["pseudo_positive"]),
        float(hparams["pseudo_negative"]),
        bool(hparams["pseudo_soft"]),
    ).check()


def _with_pseudo_labels(entries, folder):
    """Each entry gets its recording's pseudo-label file (all must exist)."""
    for entry in entries.values():
        path = pseudo_label_path(folder, entry["recording_id"])
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"no pseudo-labels for recording {entry['recording_id']} in "
                f"{folder}: rerun the pseudo-labelling step (pseudo_label.py)"
            )
        entry["pseudo_labels"] = path
    return entries


def fold_datasets(hparams, manifest, unlabelled=None):
    """Training crops, their sampler, and the held-out fold's recordings.

    Arguments
    ---------
    hparams : dict
    manifest : dict
        The prepared training manifest.
    unlabelled : dict, optional
        A manifest of recordings without human labels (the test set) whose
        random crops join the training crops, carrying pseudo-labels only
        (used only with ``pseudo_labels``).

    Returns
    -------
    dict
        ``train`` (crop dataset), ``sampler`` (class-balanced or plain,
        ``steps_per_epoch * batch_size`` draws an epoch), ``valid`` (held-out
        recordings with TP labels: checkpoint selection) and ``oof`` (every
        held-out recording: out-of-fold predictions).
    """
    fold = int(hparams["fold"])
    if not 0 <= fold < hparams["n_folds"]:
        raise ValueError(f"--fold={fold} is outside 0..{hparams['n_folds'] - 1}")
    train_folds = set(range(hparams["n_folds"])) - {fold}
    held_out = {rid: e for rid, e in manifest.items() if e["fold"] == fold}
    labelled = {rid: e for rid, e in held_out.items() if e["tp_boxes"]}
    if not labelled:
        raise ValueError(
            f"fold {fold} holds no recording with a TP box, so it cannot be "
            f"validated: use fewer folds (--n_folds, now {hparams['n_folds']}) "
            "or label more recordings"
        )
    training_tp = sum(
        len(e["tp_boxes"]) for e in manifest.values() if e["fold"] in train_folds
    )
    if training_tp == 0 and hparams["pseudo_labels"] is None:
        raise ValueError(
            f"the training folds of fold {fold} hold no TP box: a model needs "
            "some true positives (train_tp.csv) to learn from"
        )
    sources = crop_sources(hparams)
    entries = anchored_entries(manifest, tuple(sources), folds=train_folds)
    rule = pseudo_label_rule(hparams)
    if rule is not None:
        if unlabelled and "random" in sources:
            clash = sorted(set(unlabelled) & set(manifest))
            if clash:
                raise ValueError(
                    f"recording ids in both the training and the test set: {clash[:5]}"
                )
            unlabelled = {
                rid: dict(entry, tp_boxes=[], fp_boxes=[], fold=-1)
                for rid, entry in unlabelled.items()
            }
            entries.update(anchored_entries(unlabelled, ("random",)))
        entries = _with_pseudo_labels(entries, hparams["pseudo_labels"])
    sampler = make_train_sampler(
        entries,
        n_samples=hparams["steps_per_epoch"] * hparams["batch_size"],
        source_weights=sources,
        balanced=hparams["class_balanced"],
        seed=hparams["seed"],
    )
    rate, n_classes = hparams["sample_rate"], hparams["n_classes"]
    return {
        "train": crop_dataset(
            entries,
            hparams["crop_seconds"],
            hparams["frame_targets"],
            rate,
            n_classes,
            pseudo_rule=rule,
        ),
        "sampler": sampler,
        "valid": recording_dataset(labelled, rate, n_classes),
        "oof": recording_dataset(held_out, rate, n_classes),
    }


def complete_test_boxes(hparams, data_folder):
    """Every call of the test recordings (``recording_id -> [Box]``), when known.

    The synthetic generator writes ``test_boxes.csv`` (every call in the test
    files); the real RFCX test labels are hidden, so this returns None there.
    """
    boxes_csv = os.path.join(data_folder, "test_boxes.csv")
    if not os.path.isfile(boxes_csv):
        return None
    return boxes_by_recording(read_rfcx_csv(boxes_csv, hparams["n_classes"]))


def complete_test_labels(hparams, data_folder, ids):
    """``(N, C)`` 0/1 species labels of the test recordings ``ids``, when known
    (:func:`complete_test_boxes`); None otherwise."""
    boxes = complete_test_boxes(hparams, data_folder)
    if boxes is None:
        return None
    return torch.stack(
        [
            recording_labels(
                [b.to_dict() for b in boxes.get(rid, [])], [], hparams["n_classes"]
            )[0]
            for rid in ids
        ]
    )


def complete_test_set(hparams, data_folder):
    """The test recordings with their complete labels, when the data has them
    (:func:`complete_test_boxes`); None otherwise."""
    boxes = complete_test_boxes(hparams, data_folder)
    if boxes is None:
        return None
    test = load_manifest(hparams, data_folder, "test")
    for rid, entry in test.items():
        entry["tp_boxes"] = [b.to_dict() for b in boxes.get(rid, [])]
        entry["fp_boxes"] = []
    return recording_dataset(test, hparams["sample_rate"], hparams["n_classes"])


def write_scores(path, ids, probs):
    """Per-recording probabilities ``recording_id,s0..s{C-1}`` as CSV."""
    probs = torch.as_tensor(probs).numpy()
    table = pd.DataFrame(probs, columns=species_columns(probs.shape[1]))
    table.insert(0, "recording_id", list(ids))
    write_atomically(path, table.to_csv(index=False, float_format="%.6f"))
