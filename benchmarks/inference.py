#!/usr/bin/env python3
"""Detection speed as users see it: the console command as a whole process,
and the steady state, optionally beside BirdNET on the same files.

    .venv/bin/python benchmarks/inference.py [--models efficientnet_b0 conformer]
        [--files 48] [--repeats 2] [--hop 5.0] [--batch-size 16] [--threads 0]
        [--workers 2] [--device cpu] [--precision auto] [--windowed] [--eager]
        [--birdnet-python /path/to/birdnet-venv/bin/python]

Writes synthetic 60 s, 48 kHz FLAC recordings and builds each model with the
feature settings of its recipe (weights untrained: speed does not depend on
them) as an exported detector folder. Then, per model:

* ``rfcx-detect --help`` as a whole process (best of three);
* ``rfcx-detect FOLDER --model DIR --out DIR`` (Raven tables) as a whole
  process, start-up included, ``--repeats`` times; the TorchScript cache
  (``RFCX_CACHE_DIR``) starts empty, so the first run of a timm model also
  freezes and caches its backbone and the later ones start from the cache
  (``--eager``: the eager backbone, no cache);
* the steady state: ``detect_main`` called twice in this process on the same
  files (fresh output folders), the second call timed (it loads the model
  again); whole process minus steady state is what a user pays once per
  command besides that (imports, first-call set-up);
* ``rfcx-submit`` in this process, for reference.

With ``--birdnet-python`` (an interpreter of a separate environment holding
the ``birdnet`` package, see ``benchmarks/birdnet_run.py``), BirdNET analyses
the same folder as a whole process, alternating with ``rfcx-detect``. Prints
seconds of audio per wall-clock second ("x real time").
"""

import argparse
import json
import os
import pathlib
import resource
import shutil
import subprocess
import sys
import tempfile
import time

from hyperpyyaml import load_hyperpyyaml

from speechbrain_rfcx.cli import (
    PRECISIONS,
    detect_main,
    resolved_precision,
    submit_main,
    threads_per_file,
)
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


def console_command(name):
    """The installed console script next to this interpreter."""
    return os.path.join(os.path.dirname(sys.executable), name)


def whole_process(command):
    """Wall seconds of ``command`` as a fresh process (it must succeed)."""
    began = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)  # fmt: skip
    return time.perf_counter() - began


def birdnet_whole_process(python, folder, threads):
    """Wall seconds of BirdNET over ``folder`` and the runner's own report."""
    runner = pathlib.Path(__file__).with_name("birdnet_run.py")
    began = time.perf_counter()
    done = subprocess.run(
        [python, str(runner), folder, "--threads", str(threads)],
        check=True,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - began
    return wall, json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["efficientnet_b0"])
    parser.add_argument("--files", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--window", type=float, default=10.92)
    parser.add_argument("--hop", type=float, default=5.0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="files at once")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS)
    parser.add_argument("--windowed", action="store_true")
    parser.add_argument("--eager", action="store_true", help="no TorchScript backbone")
    parser.add_argument("--birdnet-python", metavar="PYTHON")
    parser.add_argument(
        "--birdnet-threads", type=int, default=os.cpu_count(), metavar="N"
    )
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="rfcx_infer_bench_")
    os.environ["RFCX_CACHE_DIR"] = os.path.join(work, "torchscript_cache")
    data = os.path.join(work, "data")
    generate_rfcx_dataset(data, n_train=0, n_test=args.files)
    folder = os.path.join(data, "test")
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
        "--precision",
        args.precision,
        *(["--windowed"] if args.windowed else []),
        *(["--eager"] if args.eager else []),
    ]
    print(
        f"{args.files} x 60 s 48 kHz FLAC, window {args.window} s, hop {args.hop} s, "
        f"batch {args.batch_size} windows, device {args.device} "
        f"({args.precision}: {resolved_precision(args.precision, args.device)}), "
        f"torch threads per file "
        f"{threads_per_file(args.threads, args.workers)}, "
        f"{args.workers} file(s) at once, "
        f"{'every window run' if args.windowed else 'one pass per recording'}, "
        f"{'eager' if args.eager else 'TorchScript'} timm backbone, "
        f"{os.cpu_count()} CPU cores"
    )
    rows = []

    def row(what, seconds, note=""):
        rows.append((what, seconds, audio_seconds / seconds if seconds else None, note))
        speed = f"{audio_seconds / seconds:7.1f}x real time" if seconds else ""
        print(f"  {what:44s} {seconds:7.2f} s  {speed}  {note}", flush=True)

    help_s = min(whole_process([console_command("rfcx-detect"), "--help"])
                 for _ in range(3))  # fmt: skip
    print(f"  {'rfcx-detect --help (whole process)':44s} {help_s:7.2f} s")
    birdnet = []
    for name in args.models:
        detector = export_detector(
            name, os.path.join(work, f"model_{name}"), args.window, args.hop
        )

        def detect_command(out, detector=detector):
            return [folder, "--model", detector, "--out", out, "--format", "raven",
                    *common]  # fmt: skip

        for repeat in range(args.repeats):
            out = os.path.join(work, f"whole_{name}_{repeat}")
            seconds = whole_process(
                [console_command("rfcx-detect"), *detect_command(out)]
            )
            first = repeat == 0 and not args.eager
            row(f"{name} rfcx-detect, whole process", seconds,
                "(empty TorchScript cache)" if first else "")  # fmt: skip
            if args.birdnet_python and name == args.models[0]:
                wall, report = birdnet_whole_process(
                    args.birdnet_python, folder, args.birdnet_threads
                )
                birdnet.append((wall, report["wall_s_analysis"]))
                row(
                    "BirdNET, whole process",
                    wall,
                    f"(analysis {report['wall_s_analysis']:.1f} s, "
                    f"BirdNET {report.get('birdnet_version')}, "
                    f"{report.get('backend')}, {args.birdnet_threads} threads)",
                )
        steady = []
        for call in range(2):
            out = os.path.join(work, f"steady_{name}_{call}")
            began = time.perf_counter()
            detect_main(detect_command(out))
            steady.append(time.perf_counter() - began)
        wholes = [r for r in rows if r[0] == f"{name} rfcx-detect, whole process"]
        whole = min(r[1] for r in wholes[1:] or wholes)  # from the cache
        row(f"{name} rfcx-detect, steady state", steady[1],
            f"(whole process minus this: {whole - steady[1]:.1f} s)")  # fmt: skip
        began = time.perf_counter()
        submit_main(
            [
                "--model",
                detector,
                "--test-folder",
                folder,
                "--sample-submission",
                os.path.join(data, "sample_submission.csv"),
                "--out",
                os.path.join(work, f"submission_{name}.csv"),
                *common,
            ]
        )
        row(f"{name} rfcx-submit, in process", time.perf_counter() - began)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"  peak RSS of this process {peak:.0f} MiB")
        if birdnet:
            birdnet_whole = min(wall for wall, _ in birdnet)
            birdnet_analysis = min(analysis for _, analysis in birdnet)
            print(
                f"  {name}: whole process {birdnet_whole / whole:.2f}x BirdNET's, "
                f"steady state {birdnet_analysis / steady[1]:.2f}x BirdNET's "
                f"analysis alone ({birdnet_whole / steady[1]:.2f}x its whole process)"
            )
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
