#!/usr/bin/env python3
"""End-to-end detection throughput: FLAC files on disk -> tables + submission.

    .venv/bin/python benchmarks/inference.py [--models efficientnet_b0 conformer]
        [--files 8] [--hop 5.0] [--batch-size 16] [--threads 2] [--workers 2]
        [--device cpu] [--windowed]

Writes synthetic 60 s, 48 kHz recordings, builds each model with the feature
settings of its recipe (weights untrained: speed does not depend on them) as
an exported detector folder, then times the real ``rfcx-detect`` (Raven
tables) and ``rfcx-submit`` code paths over the folder. Prints seconds of audio
per wall-clock second ("x real time"), the threads, batch size and peak RSS.
Convolutional models score each recording in one pass unless ``--windowed``
(every window run, as ``rfcx-detect --windowed``).
For reference: BirdNET 2.4 analyses about 27-41 s of audio per second on a
2-core CPU.
"""

import argparse
import os
import resource
import shutil
import tempfile
import time

import torch
from hyperpyyaml import load_hyperpyyaml

from speechbrain_rfcx.cli import detect_main, submit_main
from speechbrain_rfcx.data.annotations import N_SPECIES
from speechbrain_rfcx.data.synthetic import generate_rfcx_dataset
from speechbrain_rfcx.interface import SpeciesDetector

FEATURES = f"""    n_classes: {N_SPECIES}
    sample_rate: 48000
    n_fft: 2048
    hop_length: 512
    n_mels: 128
    f_min: 50.0
    f_max: 16000.0
"""
MODELS = {
    "efficientnet_b0": "!new:speechbrain_rfcx.models.timm_sed.TimmSED\n"
    "    backbone: efficientnet_b0\n    neck_features: 1280\n",
    "conformer": "!new:speechbrain_rfcx.models.conformer.ConformerSED\n"
    "    d_model: 144\n    num_layers: 4\n    d_ffn: 576\n",
    "transformer": "!new:speechbrain_rfcx.models.transformer.TransformerSED\n"
    "    d_model: 144\n    num_layers: 4\n    d_ffn: 576\n",
    "panns_cnn14": "!new:speechbrain_rfcx.models.panns.PANNsCNN14\n",
}


def export_detector(name, folder, window, hop):
    """An exported detector folder for an untrained model of the recipe."""
    model_yaml = f"model: {MODELS[name]}{FEATURES}"
    detector = SpeciesDetector(
        modules={"model": load_hyperpyyaml(model_yaml)["model"]},
        hparams={
            "sample_rate": 48000,
            "n_classes": N_SPECIES,
            "window": window,
            "hop": hop,
            "model_yaml": model_yaml,
        },
        run_opts={"device": "cpu"},
    )
    return detector.export(folder)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["efficientnet_b0"])
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--window", type=float, default=10.92)
    parser.add_argument("--hop", type=float, default=5.0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="files at once")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--windowed", action="store_true")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="rfcx_infer_bench_")
    data = os.path.join(work, "data")
    generate_rfcx_dataset(data, n_train=0, n_test=args.files)
    audio_seconds = 60.0 * args.files
    common = [
        "--batch-size",
        str(args.batch_size),
        "--threads",
        str(args.threads),
        "--num-workers",
        str(args.workers),
        "--device",
        args.device,
        *(["--windowed"] if args.windowed else []),
    ]
    print(
        f"{args.files} x 60 s 48 kHz FLAC, window {args.window} s, hop {args.hop} s, "
        f"batch {args.batch_size} windows, device {args.device}, torch threads "
        f"{args.threads or torch.get_num_threads()}, {args.workers} file(s) at once, "
        f"{'every window run' if args.windowed else 'one pass per recording'}"
    )
    for name in args.models:
        detector = export_detector(
            name, os.path.join(work, f"model_{name}"), args.window, args.hop
        )
        out = os.path.join(work, f"tables_{name}")
        began = time.perf_counter()
        detect_main(
            [
                os.path.join(data, "test"),
                "--model",
                detector,
                "--out",
                out,
                "--format",
                "raven",
                *common,
            ]
        )
        detect_s = time.perf_counter() - began
        began = time.perf_counter()
        submit_main(
            [
                "--model",
                detector,
                "--test-folder",
                os.path.join(data, "test"),
                "--sample-submission",
                os.path.join(data, "sample_submission.csv"),
                "--out",
                os.path.join(work, f"submission_{name}.csv"),
                *common,
            ]
        )
        submit_s = time.perf_counter() - began
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"{name:16s} rfcx-detect {audio_seconds / detect_s:7.1f}x real time "
            f"({detect_s / args.files:.2f} s per 60 s file), rfcx-submit "
            f"{audio_seconds / submit_s:7.1f}x real time; peak RSS {peak:.0f} MiB"
        )
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
