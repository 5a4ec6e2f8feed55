#!/usr/bin/env python3
"""Ablation of the detection levers: each row adds one lever to the row above.

    .venv/bin/python benchmarks/ablation.py --seeds 1 2 3 [--out results/ablation]
        [--recipe recipes/RFCX/hparams/small_cpu.yaml] [--n-folds 3]
        [--rows tp_only ...] [recipe overrides, e.g. --number_of_epochs=6]

=============  ==============================================================
row            what it adds
=============  ==============================================================
tp_only        the original research: TP crops and labels only, a
               frequency-blind model (mean over frequency, no mel-bin channel)
fp_masked      FP crops and the TP/FP-masked loss
frequency      frequency awareness: the mel-bin channel and a neck that keeps
               the frequency rows
pseudo_labels  one pseudo-labelling round (``pseudo_label.py --pl_rounds=1``)
priors         class-prior rescaling, priors = mean out-of-fold probabilities
               (for a fold's held-out recordings, those of the other folds)
tta            test-time augmentation (a time-shifted second pass)
ensemble       the mean of the fold models (no out-of-fold figure)
=============  ==============================================================

Every seed generates its own synthetic data (the recipe's size, seed =
data seed = training seed) and cross-validates every training row with
``cross_validate.py`` / ``pseudo_label.py`` (finished folds are skipped, so an
interrupted run resumes). Each fold model then scores its held-out training
recordings (out-of-fold lwlrap, TP labels) and the test recordings (test
lwlrap, complete labels); single-fold test figures are averaged over the
folds. Prints a markdown table (mean and spread over seeds) and writes every
figure to ``<out>/ablation.json``.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "RFCX"
sys.path.insert(0, str(ROOT))

from speechbrain_rfcx import experiment  # noqa: E402
from speechbrain_rfcx.data.pipelines import recording_labels  # noqa: E402
from speechbrain_rfcx.detections.submission import (  # noqa: E402
    priors_from_scores,
    rescale_to_priors,
)
from speechbrain_rfcx.interface import SpeciesDetector  # noqa: E402
from speechbrain_rfcx.metrics import lwlrap  # noqa: E402

FREQUENCY_BLIND = ["--frequency_channel=False", "--frequency_pooling=mean"]
# training rows: script, overrides, experiment name, fold folder under it
TRAINING = {
    "tp_only": ("cross_validate.py", ["--masked_supervision=False", *FREQUENCY_BLIND]),
    "fp_masked": ("cross_validate.py", ["--masked_supervision=True", *FREQUENCY_BLIND]),
    "frequency": ("cross_validate.py", ["--masked_supervision=True"]),
    "pseudo_labels": (
        "pseudo_label.py",
        ["--masked_supervision=True", "--pl_rounds=1"],
    ),
}
ROWS = (
    "tp_only",
    "fp_masked",
    "frequency",
    "pseudo_labels",
    "priors",
    "tta",
    "ensemble",
)


def experiment_name(row):
    """pseudo_labels continues the frequency row: its round 0 is that row."""
    return "ablation_" + ("frequency" if row == "pseudo_labels" else row)


def row_arguments(args, seed, row, recipe_overrides):
    return [
        str(args.recipe),
        f"--seed={seed}",
        f"--n_folds={args.n_folds}",
        f"--output_root={args.out}",
        f"--synthetic_folder={args.out}/data_seed{seed}",
        f"--experiment={experiment_name(row)}",
        "--noprogressbar",
        *TRAINING[row][1],
        *recipe_overrides,
    ]


def train_row(args, seed, row, recipe_overrides):
    script = RECIPE / TRAINING[row][0]
    command = [
        sys.executable,
        str(script),
        *row_arguments(args, seed, row, recipe_overrides),
    ]
    print("+", " ".join(command[1:]), flush=True)
    subprocess.run(command, check=True, cwd=RECIPE)


def load_hparams(args, seed, row, recipe_overrides):
    argv = row_arguments(args, seed, row, recipe_overrides)
    hparams_file, _, overrides = sb.parse_arguments(argv)
    with open(hparams_file) as f:
        return load_hyperpyyaml(f, overrides)


def fold_folders(hparams, row):
    base = hparams["output_folder"]
    if row == "pseudo_labels":
        base = os.path.join(base, "pl_round1")
    return [os.path.join(base, f"fold{k}") for k in range(hparams["n_folds"])]


def score_folds(hparams, row, tta):
    """Per fold: out-of-fold and test clip probabilities of its model."""
    data_folder = hparams["synthetic_folder"]
    train = experiment.load_manifest(hparams, data_folder, "train")
    test = sorted(experiment.load_manifest(hparams, data_folder, "test").items())
    folds = []
    for k, folder in enumerate(fold_folders(hparams, row)):
        detector = SpeciesDetector.from_hparams(folder, run_opts={"device": "cpu"})

        def clip_probs(wav, detector=detector):
            return np.asarray(detector.detect_file(wav, tta=tta)["clip_probs"])

        held_out = sorted(r for r, e in train.items() if e["fold"] == k)
        folds.append(
            {
                "oof_ids": held_out,
                "oof": np.stack([clip_probs(train[r]["wav"]) for r in held_out]),
                "test": np.stack([clip_probs(e["wav"]) for _, e in test]),
            }
        )
    return folds


def truths(hparams):
    """TP labels of the training recordings, complete labels of the test set."""
    data_folder = hparams["synthetic_folder"]
    n = hparams["n_classes"]
    train = experiment.load_manifest(hparams, data_folder, "train")
    test_ids = sorted(experiment.load_manifest(hparams, data_folder, "test"))
    tp = {
        r: recording_labels(e["tp_boxes"], [], n)[0].numpy() for r, e in train.items()
    }
    return tp, experiment.complete_test_labels(hparams, data_folder, test_ids).numpy()


def with_priors(folds):
    """Rescale each fold's scores toward priors the fold did not score itself."""
    everyone = priors_from_scores(np.concatenate([f["oof"] for f in folds]))
    out = []
    for k, fold in enumerate(folds):
        others = [f["oof"] for j, f in enumerate(folds) if j != k] or [fold["oof"]]
        out.append(
            dict(
                fold,
                oof=rescale_to_priors(
                    fold["oof"], priors_from_scores(np.concatenate(others))
                ),
                test=rescale_to_priors(fold["test"], everyone),
            )
        )
    return out


def figures(folds, tp, test_truth, ensemble=False):
    """Out-of-fold lwlrap (all folds' held-out rows) and test lwlrap."""
    if ensemble:
        return {
            "oof": None,
            "test": lwlrap(test_truth, np.mean([f["test"] for f in folds], 0)),
        }
    ids = [r for f in folds for r in f["oof_ids"]]
    oof = np.concatenate([f["oof"] for f in folds])
    return {
        "oof": lwlrap(np.stack([tp[r] for r in ids]), oof),
        "test": float(np.mean([lwlrap(test_truth, f["test"]) for f in folds])),
        "test_folds": [lwlrap(test_truth, f["test"]) for f in folds],
    }


def run_seed(args, seed, rows, recipe_overrides):
    results = {}
    for row in (r for r in rows if r in TRAINING):
        train_row(args, seed, row, recipe_overrides)
    levers = [r for r in rows if r not in TRAINING]
    for row in (r for r in rows if r in TRAINING):
        hparams = load_hparams(args, seed, row, recipe_overrides)
        tp, test_truth = truths(hparams)
        folds = score_folds(hparams, row, tta=())
        results[row] = figures(folds, tp, test_truth)
        if row == "pseudo_labels" and levers:
            # the post-processing levers, cumulative, on the last models
            folds = with_priors(folds)
            results["priors"] = figures(folds, tp, test_truth)
            folds = with_priors(score_folds(hparams, row, tta=("shift",)))
            results["tta"] = figures(folds, tp, test_truth)
            results["ensemble"] = figures(folds, tp, test_truth, ensemble=True)
        print(seed, row, results[row], flush=True)
    return {r: results[r] for r in rows if r in results}


def summary(all_results, rows):
    def cell(values):
        values = [v for v in values if v is not None]
        if not values:
            return "—"
        return f"{np.mean(values):.3f} ± {np.std(values):.3f}"

    seeds = sorted(all_results)
    lines = [
        f"| row | out-of-fold (TP labels) | test (complete labels) | test per seed ({', '.join(seeds)}) |",
        "|---|---|---|---|",
    ]
    for row in rows:
        per_seed = [all_results[s][row] for s in seeds if row in all_results[s]]
        tests = ", ".join(f"{r['test']:.3f}" for r in per_seed)
        lines.append(
            f"| {row} | {cell([r['oof'] for r in per_seed])} "
            f"| {cell([r['test'] for r in per_seed])} | {tests} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument(
        "--out", type=pathlib.Path, default=ROOT / "results" / "ablation"
    )
    parser.add_argument(
        "--recipe", type=pathlib.Path, default=RECIPE / "hparams" / "small_cpu.yaml"
    )
    parser.add_argument("--n-folds", type=int, default=3)
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS)
    args, recipe_overrides = parser.parse_known_args(argv)
    args.out, args.recipe = args.out.resolve(), args.recipe.resolve()
    if any(r in ROWS[4:] for r in args.rows) and "pseudo_labels" not in args.rows:
        parser.error(
            "priors, tta and ensemble post-process the pseudo_labels row: add it"
        )
    record = args.out / "ablation.json"
    all_results = json.loads(record.read_text()) if record.exists() else {}
    for seed in args.seeds:
        all_results[str(seed)] = run_seed(args, seed, args.rows, recipe_overrides)
        args.out.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(all_results, indent=1))
    print(summary(all_results, args.rows))


if __name__ == "__main__":
    main()
