#!/usr/bin/env python3
"""Training throughput per recipe: optimiser steps and crops per second.

    .venv/bin/python benchmarks/training.py [--recipes small_cpu conformer ...]
        [--steps 3] [--device cpu|cuda] [--batch-size N]

Builds each recipe's model, loss, augmentation and optimisers from its
hparams file and times full training steps (augment, forward, SED loss,
backward, both optimisers) on random crops of the recipe's length and batch
size, after one warm-up step. Data loading is timed separately by
``data_loading.py``. Prints one line per recipe.
"""

import argparse
import pathlib
import resource
import tempfile
import time

import torch
from hyperpyyaml import load_hyperpyyaml

RECIPES = pathlib.Path(__file__).resolve().parents[1] / "recipes" / "RFCX" / "hparams"


def synthetic_batch(hparams, batch_size, device):
    """Random crops and targets of the recipe's shapes."""
    n = int(round(hparams["crop_seconds"] * hparams["sample_rate"]))
    t, c = hparams["frame_targets"], hparams["n_classes"]
    clip = (torch.rand(batch_size, c) < 0.1).float()
    frames = (torch.rand(batch_size, t, c) < 0.05).float()
    targets = {
        "clip_target": clip,
        "frame_target": frames,
        "frame_mask": frames.amax(2),
        "label_mask": torch.ones(batch_size, c),
        "frame_label_mask": torch.ones(batch_size, t, c),
        "lens": torch.ones(batch_size),
    }
    wavs = 0.1 * torch.randn(batch_size, n)
    return wavs.to(device), {k: v.to(device) for k, v in targets.items()}


def time_recipe(name, steps, device, batch_size=None):
    """Seconds per training step of one recipe."""
    with open(RECIPES / f"{name}.yaml") as f:
        hparams = load_hyperpyyaml(f, {"output_root": tempfile.mkdtemp()})
    batch_size = batch_size or hparams["batch_size"]
    model = hparams["model"].to(device).train()
    loss = hparams["loss"].to(device)
    optimisers = [hparams["opt_class"](model.parameters())]
    if hparams["loss_opt_class"] is not None:
        optimisers.append(hparams["loss_opt_class"](loss.parameters()))
    wavs, targets = synthetic_batch(hparams, batch_size, device)

    def step():
        w, t = hparams["augment"](wavs, targets)
        total, _ = loss(model(w, t["lens"]), t)
        for opt in optimisers:
            opt.zero_grad()
        total.backward()
        for opt in optimisers:
            opt.step()

    step()  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    began = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - began) / steps
    return seconds, batch_size, hparams["crop_seconds"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--recipes",
        nargs="+",
        default=[
            "small_cpu",
            "efficientnet_b0",
            "conformer",
            "transformer",
            "panns_cnn14",
        ],
    )
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu"
    )
    parser.add_argument("--batch-size", type=int, default=None)
    args = parser.parse_args()
    print(f"device {args.device}, torch threads {torch.get_num_threads()}")
    for name in args.recipes:
        seconds, batch, crop = time_recipe(
            name, args.steps, args.device, args.batch_size
        )
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"{name:16s} batch {batch:3d} x {crop:5.2f} s: {1 / seconds:7.3f} steps/s, "
            f"{batch / seconds:7.1f} crops/s, 3000 steps in {3000 * seconds / 60:7.1f} min"
            f" (peak RSS so far {peak:.0f} MiB)"
        )


if __name__ == "__main__":
    main()
