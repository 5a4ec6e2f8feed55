#!/usr/bin/env python3
"""Training-crop loading speed: seeked reads vs whole-file decodes.

    .venv/bin/python benchmarks/data_loading.py [--files 16] [--crops 200]
        [--workers 0 2] [--crop-seconds 10.92]

Writes synthetic 60 s, 48 kHz RFCX recordings to a temporary folder (or uses
``--data-folder``), then times (1) the library's crop path, which decodes only
the crop's samples, (2) decoding the whole file and slicing, as naive loaders
do, and (3) the SpeechBrain crop dataset through a DataLoader with N workers.
Prints crops per second for each.
"""

import argparse
import json
import os
import random
import tempfile
import time

import soundfile as sf
import speechbrain as sb
import torch

from speechbrain_rfcx.data.crops import choose_crop_start, crop_targets, load_crop
from speechbrain_rfcx.data.pipelines import crop_dataset
from speechbrain_rfcx.data.prepare import prepare_rfcx
from speechbrain_rfcx.data.sampling import anchored_entries, make_train_sampler
from speechbrain_rfcx.data.synthetic import generate_rfcx_dataset


def entries_of(data_folder, save_folder):
    """Anchored TP entries of a prepared dataset (paths resolved)."""
    prepared = prepare_rfcx(data_folder, save_folder, n_folds=2)
    with open(prepared["train_json"]) as f:
        text = f.read().replace("{data_root}", os.path.abspath(data_folder))
    return anchored_entries(json.loads(text), ("tp", "fp", "random"))


def crops_per_second(load, entries, n_crops):
    """Times ``load(entry)`` on ``n_crops`` random entries."""
    rng = random.Random(0)
    keys = list(entries)
    began = time.perf_counter()
    for _ in range(n_crops):
        load(entries[rng.choice(keys)])
    return n_crops / (time.perf_counter() - began)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-folder", default=None)
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--crops", type=int, default=200)
    parser.add_argument("--crop-seconds", type=float, default=10.92)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="rfcx_bench_")
    data = args.data_folder or os.path.join(work, "data")
    if args.data_folder is None:
        generate_rfcx_dataset(data, n_train=args.files, n_test=0, tp_fraction=1.0)
    entries = entries_of(data, os.path.join(work, "prepared"))
    rate, seconds = 48000, args.crop_seconds

    def seeked(e):
        return load_crop(
            e["wav"],
            e["duration"],
            e["tp_boxes"],
            e["fp_boxes"],
            e["anchor"],
            seconds,
            32,
            24,
            rate,
        )

    def whole_file(e):
        audio, file_rate = sf.read(e["wav"], dtype="float32")
        start = choose_crop_start(e["duration"], seconds, None)
        first = int(start * file_rate)
        signal = torch.from_numpy(audio[first : first + int(seconds * file_rate)])
        return signal, crop_targets([], [], start, seconds, 32, 24)

    print(
        f"torch threads {torch.get_num_threads()}, {len(entries)} anchored crops "
        f"of {seconds} s from {args.files} x 60 s 48 kHz FLAC files"
    )
    fast = crops_per_second(seeked, entries, args.crops)
    slow = crops_per_second(whole_file, entries, max(20, args.crops // 5))
    print(f"seeked crop reads      : {fast:8.1f} crops/s (one process)")
    print(f"whole-file decodes     : {slow:8.1f} crops/s (one process)")
    print(f"ratio                  : {fast / slow:8.1f}x")
    dataset = crop_dataset(entries, seconds, 32, rate)
    for workers in args.workers:
        sampler = make_train_sampler(entries, n_samples=args.crops)
        loader = sb.dataio.dataloader.make_dataloader(
            dataset, batch_size=16, sampler=sampler, num_workers=workers
        )
        began = time.perf_counter()
        n = sum(batch.signal.data.shape[0] for batch in loader)
        rate_ = n / (time.perf_counter() - began)
        print(f"DataLoader, {workers} workers : {rate_:8.1f} crops/s (batches of 16)")


if __name__ == "__main__":
    main()
