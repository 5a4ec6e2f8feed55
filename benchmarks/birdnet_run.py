"""Optional side-by-side speed benchmark: run BirdNET 2.4 on a folder of audio.

This script is NOT part of speechbrain_rfcx. It imports nothing from the project
(and no torch); it needs only the stdlib and the ``birdnet`` package, installed in
a separate virtual environment:

    python3 -m venv /some/where
    /some/where/bin/pip install birdnet==1.3.1
    /some/where/bin/python benchmarks/birdnet_run.py FOLDER [--threads N]

BirdNET's models are licensed CC BY-NC-SA 4.0. The project never ships,
downloads or imports them. ``birdnet`` fetches the model itself on first use
(from Zenodo, into ~/.local/share/birdnet, or $BIRDNET_APP_DATA); without
internet access the model file must already be there
(acoustic-models/v2.4/tf/model-fp32.tflite plus labels/), or this script stops.

Every .flac/.wav file in FOLDER is analysed with the acoustic model at default
settings (3 s segments, top_k=5, confidence threshold 0.1). One JSON line is
printed at the end. ``model_load_s`` is birdnet.load(); ``wall_s_analysis`` is
the predict() call alone (it includes starting the N worker processes, each of
which opens its own interpreter).
"""

import argparse
import importlib.metadata
import importlib.util
import json
import sys
import time
from pathlib import Path

import birdnet
import soundfile  # a dependency of birdnet, used only to sum audio durations


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--threads", type=int, default=1, help="inference worker processes")
    args = ap.parse_args()

    files = sorted(
        p for p in args.folder.iterdir() if p.suffix.lower() in (".flac", ".wav")
    )
    if not files:
        sys.exit(f"no .flac/.wav files in {args.folder}")
    audio_s = sum(soundfile.info(str(p)).duration for p in files)

    # 'tflite' (birdnet's default) needs tensorflow; otherwise use ai-edge-litert.
    library = "tflite" if importlib.util.find_spec("tensorflow") else "litert"
    lib_pkg = "tensorflow" if library == "tflite" else "ai-edge-litert"
    backend = f"tf/{library} ({lib_pkg} {importlib.metadata.version(lib_pkg)})"

    try:  # fail fast instead of birdnet's ~2 min of download retries when offline
        from birdnet.utils.local_data import get_model_path

        model_file = get_model_path("acoustic", "2.4", "tf", "fp32")
        if not model_file.is_file():
            sys.exit(f"BirdNET 2.4 model not found at {model_file} (no download here)")
    except ImportError:
        pass

    t0 = time.perf_counter()
    model = birdnet.load("acoustic", "2.4", "tf", library=library)
    t1 = time.perf_counter()
    result = model.predict(files, n_workers=args.threads)
    t2 = time.perf_counter()
    del result

    print(
        json.dumps(
            {
                "files": len(files),
                "audio_seconds": round(audio_s, 3),
                "wall_s_analysis": round(t2 - t1, 3),
                "model_load_s": round(t1 - t0, 3),
                "threads": args.threads,
                "birdnet_version": importlib.metadata.version("birdnet"),
                "backend": backend,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
