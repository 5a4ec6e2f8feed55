#!/usr/bin/env python3
"""Training throughput per recipe, and where a step's time goes.

    .venv/bin/python benchmarks/training.py [--recipes small_cpu cpu_fullband ...]
        [--steps 8] [--files 48] [--device cpu|cuda] [--batch-size N]
        [recipe overrides, e.g. --num_workers=2]

Runs each recipe's own training path, as ``train.py`` does: the built-in
synthetic data at the recipe's rate and length (``--files`` training
recordings), its prepared manifest, crop dataset, sampler and loader
(``num_workers`` of the recipe), and ``SEDBrain.fit_batch`` with its model,
loss, augmentation and optimisers. After one warm-up step, each step is split
into

* loading: waiting for the loader's next batch (crops read from disk, cut
  and labelled; with ``num_workers: 0`` this is done in the training process);
* augment, features (log-mel, normalisation, mel-bin channel), model (the
  rest of the forward pass), loss;
* backward and optimiser: the rest of ``fit_batch``.

and the loader is timed alone for as many batches (its crops per second
against the crops per second the step consumes). Prints one table per recipe.
"""

import argparse
import pathlib
import resource
import tempfile
import time
from collections import defaultdict

import speechbrain as sb
import torch
import yaml
from hyperpyyaml import load_hyperpyyaml

from speechbrain_rfcx import experiment
from speechbrain_rfcx.brain import SEDBrain

RECIPES = pathlib.Path(__file__).resolve().parents[1] / "recipes" / "RFCX" / "hparams"
PHASES = ("loading", "augment", "features", "model", "loss", "backward+optimiser")


class Timer:
    """Accumulates wall seconds per phase; ``wrap`` times a callable."""

    def __init__(self, device):
        self.seconds = defaultdict(float)
        self.cuda = device.startswith("cuda")

    def now(self):
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def wrap(self, phase, function):
        def timed(*args, **kwargs):
            began = self.now()
            result = function(*args, **kwargs)
            self.seconds[phase] += self.now() - began
            return result

        return timed


def recipe_hparams(name, files, overrides):
    """The recipe's hparams on a small synthetic dataset in a temporary folder."""
    defaults = {
        "output_root": tempfile.mkdtemp(prefix="rfcx_train_bench_"),
        "synthetic_n_train": files,
        "synthetic_n_test": 0,
        "n_folds": 2,
    }
    with open(RECIPES / f"{name}.yaml") as f:
        return load_hyperpyyaml(f, {**defaults, **overrides})


def profile_recipe(name, steps, device, files, batch_size, overrides):
    """Seconds per step by phase, and the loader's crops/s on its own."""
    hparams = recipe_hparams(name, files, overrides)
    data_folder, _ = experiment.resolve_data_folder(hparams)
    data = experiment.fold_datasets(hparams, experiment.prepare(hparams, data_folder))
    batch_size = batch_size or hparams["batch_size"]
    brain = SEDBrain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts={"device": device},
    )
    brain.on_fit_start()
    brain.on_stage_start(sb.Stage.TRAIN, epoch=1)
    loader_kwargs = {
        "batch_size": batch_size,
        "sampler": data["sampler"],
        "num_workers": hparams["num_workers"],
        "drop_last": True,
    }
    loader = brain.make_dataloader(data["train"], sb.Stage.TRAIN, **loader_kwargs)
    timer = Timer(device)
    model = brain.modules.model
    model.compute_features = timer.wrap("features", model.compute_features)
    model.forward = timer.wrap("model", model.forward)
    brain.modules.loss.forward = timer.wrap("loss", brain.modules.loss.forward)
    if brain.hparams.augment is not None:
        brain.hparams.augment = timer.wrap("augment", brain.hparams.augment)
    brain.modules.train()
    batches = iter(loader)
    brain.fit_batch(next(batches))  # warm-up
    timer.seconds.clear()
    began = timer.now()
    for _ in range(steps):
        waited = timer.now()
        batch = next(batches)
        timer.seconds["loading"] += timer.now() - waited
        brain.fit_batch(batch)
    total = timer.now() - began
    per_step = {phase: timer.seconds[phase] / steps for phase in PHASES}
    per_step["model"] -= per_step["features"]  # features run inside forward
    per_step["backward+optimiser"] = total / steps - sum(per_step.values())
    began = time.perf_counter()
    for _, _ in zip(range(steps), iter(loader)):
        pass
    loader_crops = steps * batch_size / (time.perf_counter() - began)
    return per_step, batch_size, hparams, loader_crops


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=["small_cpu", "cpu_fullband"])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--files", type=int, default=48)
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu"
    )
    parser.add_argument("--batch-size", type=int, default=None)
    args, rest = parser.parse_known_args()
    _, _, overrides = sb.parse_arguments([str(RECIPES / "small_cpu.yaml"), *rest])
    overrides = yaml.safe_load(overrides) if overrides else {}
    print(f"device {args.device}, torch threads {torch.get_num_threads()}")
    for name in args.recipes:
        per_step, batch, hparams, loader_crops = profile_recipe(
            name, args.steps, args.device, args.files, args.batch_size, overrides
        )
        seconds = sum(per_step.values())
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"\n{name}: batch {batch} x {hparams['crop_seconds']} s at "
            f"{hparams['sample_rate']} Hz, loader workers {hparams['num_workers']}: "
            f"{1 / seconds:.2f} steps/s, {batch / seconds:.1f} crops/s, "
            f"{hparams['number_of_epochs'] * hparams['steps_per_epoch']} steps "
            f"(the recipe's) in {hparams['number_of_epochs'] * hparams['steps_per_epoch'] * seconds / 60:.1f} min "
            f"(peak RSS {peak:.0f} MiB)"
        )
        print("| phase | ms per step | share |\n|---|---|---|")
        for phase in PHASES:
            share = 100 * per_step[phase] / seconds
            print(f"| {phase} | {1000 * per_step[phase]:.1f} | {share:.0f} % |")
        print(
            f"loader alone: {loader_crops:.1f} crops/s; the step consumes "
            f"{batch / (seconds - per_step['loading']):.1f} crops/s without loading"
        )


if __name__ == "__main__":
    main()
