#!/usr/bin/env python3
"""Train every fold of a recipe, then score the out-of-fold predictions.

    python cross_validate.py hparams/efficientnet_b0.yaml [--data_folder=...]

Each fold runs ``train.py`` with ``--fold=K`` (finished folds are resumed,
i.e. skipped); the held-out predictions of all folds are merged into
``<output_folder>/oof_predictions.csv`` and scored against the TP labels
(lwlrap) and the TP/FP labels (masked lwlrap) in ``oof_lwlrap.txt``. The
species' mean out-of-fold probabilities go to ``priors.csv``, the class
priors that ``rfcx-submit --priors`` rescales test scores toward.
"""

import json
import os
import subprocess
import sys

import pandas as pd
import speechbrain as sb
import torch

from speechbrain_rfcx.data.pipelines import recording_labels
from speechbrain_rfcx.detections.submission import priors_from_scores, write_priors
from speechbrain_rfcx.experiment import class_names, load_hparams, write_scores
from speechbrain_rfcx.metrics import LwlrapStats

HERE = os.path.dirname(os.path.abspath(__file__))


def cross_validate(argv, extra=(), folder=None):
    """Trains every fold (``train.py argv --fold=K extra``) and scores the OOF.

    Arguments
    ---------
    argv : list of str
        The hparams file and its overrides, as given to this script.
    extra : sequence of str
        More ``train.py`` arguments, formatted with ``fold=K`` (e.g.
        ``"--fold_folder=/x/fold{fold}"``: the fold folders then lie in ``/x``).
    folder : str, optional
        Where the fold folders lie and the merged predictions go (default:
        ``output_folder``).

    Returns
    -------
    float
        The out-of-fold lwlrap on the TP labels.
    """
    hparams_file, _, overrides = sb.parse_arguments(argv)
    hparams = load_hparams(hparams_file, overrides)
    folder = folder or hparams["output_folder"]
    for fold in range(hparams["n_folds"]):
        done = subprocess.run(
            [
                sys.executable,
                os.path.join(HERE, "train.py"),
                *argv,
                f"--fold={fold}",
                *(arg.format(fold=fold) for arg in extra),
            ],
        )
        if done.returncode != 0:
            raise SystemExit(
                f"cross_validate.py: fold {fold} of {hparams['n_folds']} failed "
                f"(train.py exit status {done.returncode}; its message is above); "
                "the folds already trained are kept, and a rerun resumes from their checkpoints"
            )
    oof = pd.concat(
        pd.read_csv(
            os.path.join(folder, f"fold{fold}", "oof_predictions.csv"),
            dtype={"recording_id": str},
        )
        for fold in range(hparams["n_folds"])
    )
    with open(os.path.join(hparams["prepare_folder"], "train.json")) as f:
        manifest = json.load(f)
    labels = [
        recording_labels(
            manifest[rid]["tp_boxes"], manifest[rid]["fp_boxes"], hparams["n_classes"]
        )
        for rid in oof.recording_id
    ]
    truth = torch.stack([target for target, _ in labels])
    known = torch.stack([mask for _, mask in labels])
    probs = torch.tensor(oof.iloc[:, 1:].to_numpy(), dtype=torch.float64)
    stats = LwlrapStats(class_names=class_names(hparams))
    stats.append(list(oof.recording_id), probs, truth, known)
    write_scores(os.path.join(folder, "oof_predictions.csv"), oof.recording_id, probs)
    write_priors(os.path.join(folder, "priors.csv"), priors_from_scores(probs.numpy()))
    with open(os.path.join(folder, "oof_lwlrap.txt"), "w") as f:
        stats.write_stats(f, verbose=True)
    return stats.summarize()["lwlrap"]


if __name__ == "__main__":
    cross_validate(sys.argv[1:])
