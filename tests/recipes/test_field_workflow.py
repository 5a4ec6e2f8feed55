"""The field workflow end to end: Raven tables with species names ->
rfcx-import -> train.py -> rfcx-detect --combine with those names."""

import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd

RECIPE = pathlib.Path(__file__).resolve().parents[2] / "recipes" / "RFCX"
NAMES = [f"frog {chr(ord('a') + i)}" for i in range(24)]  # sorted as the ids


def _export_as_raven_tables(synthetic, recordings, annotations):
    """The synthetic training set as a field user has it: recordings in site
    folders and one Raven table per recording, species by name, the first FP
    box of each recording labelled ``noise``."""
    tp = pd.read_csv(synthetic / "train_tp.csv", dtype={"recording_id": str})
    fp = pd.read_csv(synthetic / "train_fp.csv", dtype={"recording_id": str})
    os.makedirs(annotations)
    for i, name in enumerate(sorted(os.listdir(synthetic / "train"))):
        site = recordings / f"site_{i % 3}"
        os.makedirs(site, exist_ok=True)
        shutil.copy(synthetic / "train" / name, site / name)
        rid = os.path.splitext(name)[0]
        rows = [
            (r.t_min, r.t_max, r.f_min, r.f_max, NAMES[r.species_id])
            for r in tp[tp.recording_id == rid].itertuples()
        ] + [
            (r.t_min, r.t_max, r.f_min, r.f_max, "noise")
            for r in fp[fp.recording_id == rid].head(1).itertuples()
        ]
        with open(annotations / f"{rid}.Table.1.selections.txt", "w") as f:
            f.write("Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\t"
                    "Low Freq (Hz)\tHigh Freq (Hz)\tSpecies\n")  # fmt: skip
            for k, row in enumerate(rows, start=1):
                f.write(f"{k}\tSpectrogram 1\t1\t" + "\t".join(map(str, row)) + "\n")
    return tp


def test_raven_tables_import_train_and_detect_with_names(tmp_path):
    from speechbrain_rfcx.cli import detect_main
    from speechbrain_rfcx.data.import_tables import main as import_main
    from speechbrain_rfcx.data.synthetic import generate_rfcx_dataset

    synthetic = tmp_path / "synthetic"
    generate_rfcx_dataset(synthetic, n_train=40, n_test=4, duration=6.0,
                          sample_rate=16000, seed=7)  # fmt: skip
    tp = _export_as_raven_tables(synthetic, tmp_path / "rec", tmp_path / "ann")
    data = tmp_path / "data"
    import_main(["--recordings", str(tmp_path / "rec"), "--annotations",
                 str(tmp_path / "ann"), "--out", str(data),
                 "--negative-labels", "noise"])  # fmt: skip
    present = sorted({NAMES[s] for s in tp.species_id})
    imported = pd.read_csv(data / "species.csv")
    assert list(imported.name) == present
    round_trip = pd.read_csv(data / "train_tp.csv", dtype={"recording_id": str})
    assert len(round_trip) == len(tp)
    assert sorted(imported.name[round_trip.species_id]) == sorted(
        NAMES[s] for s in tp.species_id
    )

    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, "train.py", "hparams/small_cpu.yaml", f"--data_folder={data}",
         f"--output_root={out}", f"--n_classes={len(present)}", "--n_folds=4",
         "--batch_size=8", "--steps_per_epoch=3", "--valid_batch_size=4",
         "--number_of_epochs=1"],
        cwd=RECIPE, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    fold = out / "small_cpu" / "1" / "fold0"
    assert present[0] in run.stdout  # the preparation summary, by name
    table = (fold / "per_species_lwlrap.txt").read_text()
    assert all(name in table for name in present)

    detections = tmp_path / "detections"
    status = detect_main(
        [
            str(synthetic / "test"),
            "--model",
            str(fold),
            "--out",
            str(detections),
            "--threshold",
            "0",
            "--combine",
            "--format",
            "raven,csv",
        ]  # fmt: skip
    )
    assert status == 0
    combined = pd.read_csv(detections / "combined.selections.txt", sep="\t")
    assert set(combined["Species"]) == set(present)  # threshold 0: every species
    test_files = sorted(os.listdir(synthetic / "test"))
    assert set(combined["Begin File"]) == set(test_files)
    assert (combined["File Offset (s)"] <= combined["Begin Time (s)"]).all()
    last = combined[combined["Begin File"] == test_files[-1]]
    begin = last["Begin Time (s)"] - last["File Offset (s)"]
    assert begin.round(3).eq(6.0 * (len(test_files) - 1)).all()  # files in a row
    assert (combined["End Time (s)"] - combined["Begin Time (s)"] <= 6.0 + 1e-6).all()
    per_file = pd.read_csv(
        detections / (test_files[0].rsplit(".", 1)[0] + ".Table.1.selections.txt"),
        sep="\t",
    )
    assert set(per_file["Begin Path"]) == {str(synthetic / "test" / test_files[0])}
    flat = pd.read_csv(detections / "combined.csv", dtype={"recording_id": str})
    assert len(flat) == len(combined) and set(flat["species"]) == set(present)

    # evaluate on the imported recordings, fit thresholds, detect with them
    from speechbrain_rfcx.detections.events import read_thresholds
    from speechbrain_rfcx.evaluation import main as evaluate_main
    from speechbrain_rfcx.metrics import lwlrap

    scored = tmp_path / "scored"
    assert detect_main([str(data / "train"), "--model", str(fold), "--out",
                        str(scored), "--threshold", "0", "--format", "csv"]) == 0  # fmt: skip
    evaluation = tmp_path / "evaluation"
    evaluate_main(["--reference", str(data), "--scores", str(scored / "clip_scores.csv"),
                   "--detections", str(scored), "--out", str(evaluation),
                   "--fit-precision", "0.5"])  # fmt: skip
    clip = pd.read_csv(scored / "clip_scores.csv", dtype={"recording_id": str})
    truth = np.zeros((len(clip), len(present)))
    for row in round_trip.itertuples():
        truth[list(clip.recording_id).index(row.recording_id), row.species_id] = 1
    summary = (evaluation / "summary.txt").read_text()
    assert f"lwlrap {lwlrap(truth, clip.iloc[:, 1:].to_numpy()):.4f}" in summary
    assert "events (collar 0.5 s)" in summary
    thresholds = read_thresholds(evaluation / "thresholds.csv", len(present))
    assert thresholds
    calibrated = tmp_path / "calibrated"
    assert detect_main([str(synthetic / "test"), "--model", str(fold), "--out",
                        str(calibrated), "--thresholds",
                        str(evaluation / "thresholds.csv"), "--combine"]) == 0  # fmt: skip
    kept = pd.read_csv(calibrated / "combined.csv")
    for row in kept.itertuples():
        assert row.score >= thresholds.get(row.species_id, 0.5) - 1e-6
