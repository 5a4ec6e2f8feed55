"""The training recipe end to end: logs, checkpoints, resume, torchrun (gloo)."""

import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

RECIPE = pathlib.Path(__file__).resolve().parents[2] / "recipes" / "RFCX"
PYTHON = sys.executable
TINY = {
    "synthetic_n_train": 40,
    "synthetic_n_test": 6,
    "synthetic_duration": 6.0,
    "n_folds": 4,
    "batch_size": 8,
    "steps_per_epoch": 3,
    "valid_batch_size": 4,
}


def _overrides(root, **changes):
    """Command-line overrides: the tiny setting with ``changes`` applied."""
    options = dict(TINY, output_root=root, **changes)
    return [f"--{key}={value}" for key, value in options.items()]


def _fold_folder(root):
    return pathlib.Path(root) / "small_cpu" / "1" / "fold0"


def _run(root, **changes):
    return subprocess.run(
        [PYTHON, "train.py", "hparams/small_cpu.yaml", *_overrides(root, **changes)],
        cwd=RECIPE,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _epochs_logged(root):
    log = (_fold_folder(root) / "train_log.txt").read_text()
    return [int(e) for e in re.findall(r"^epoch: (\d+)", log, flags=re.M)]


def test_training_writes_logs_checkpoints_and_predictions(tmp_path):
    run = _run(tmp_path, number_of_epochs=2)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "using the built-in synthetic RFCX dataset" in run.stderr + run.stdout
    fold = _fold_folder(tmp_path)
    assert _epochs_logged(tmp_path) == [1, 2]
    log = (fold / "train_log.txt").read_text()
    assert "valid lwlrap" in log and "train loss_frame_mask" in log
    assert list((fold / "save").glob("CKPT*")), "no checkpoint kept"
    assert list((fold / "tensorboard").rglob("events.out.tfevents*"))
    oof = (fold / "oof_predictions.csv").read_text().splitlines()
    assert oof[0] == "recording_id," + ",".join(f"s{c}" for c in range(24))
    assert len(oof) - 1 == 10  # the 40 recordings of fold 0 of 4
    table = (fold / "per_species_lwlrap.txt").read_text()
    assert table.startswith("lwlrap: ") and "s23" in table
    assert "test set, complete labels: lwlrap" in run.stdout


def test_small_setting_learns_far_above_chance(tmp_path):
    """Real training, fixed seed: whole-recording lwlrap far above chance."""
    import pandas as pd

    from speechbrain_rfcx.metrics import chance_lwlrap

    changes = dict(
        synthetic_n_train=240,
        synthetic_n_test=40,
        n_folds=5,
        batch_size=24,
        steps_per_epoch=50,
        number_of_epochs=8,
    )
    run = subprocess.run(
        [
            PYTHON,
            "train.py",
            "hparams/small_cpu.yaml",
            *_overrides(tmp_path, **changes),
        ],
        cwd=RECIPE,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    test_lwlrap = float(re.search(r"complete labels: lwlrap ([0-9.]+)", run.stdout)[1])
    truth = pd.read_csv(tmp_path / "synthetic_rfcx" / "test_ground_truth.csv")
    test_chance = chance_lwlrap(truth.iloc[:, 1:].to_numpy())
    assert test_lwlrap > 2.25 * test_chance, (test_lwlrap, test_chance)

    # validation: the held-out fold's TP labels, scored on whole recordings
    manifest = json.loads(
        (tmp_path / "small_cpu" / "1" / "prepared" / "train.json").read_text()
    )
    valid_truth = np.zeros((0, 24))
    for entry in manifest.values():
        if entry["fold"] == 0 and entry["tp_boxes"]:
            row = np.zeros((1, 24))
            row[0, [b["species_id"] for b in entry["tp_boxes"]]] = 1
            valid_truth = np.vstack([valid_truth, row])
    valid_chance = chance_lwlrap(valid_truth)
    log = (_fold_folder(tmp_path) / "train_log.txt").read_text()
    valid = [float(v) for v in re.findall(r"valid lwlrap: ([0-9.e+-]+)", log)]
    assert max(valid) > 2 * valid_chance, (valid, valid_chance)
    assert max(valid) > valid[0]  # it learned while training


def test_a_killed_run_resumes_from_its_last_checkpoint(tmp_path):
    changes = dict(number_of_epochs=4, steps_per_epoch=6)
    proc = subprocess.Popen(
        [
            PYTHON,
            "train.py",
            "hparams/small_cpu.yaml",
            *_overrides(tmp_path, **changes),
        ],
        cwd=RECIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    log = _fold_folder(tmp_path) / "train_log.txt"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and "epoch: 2," in log.read_text():
            break
        time.sleep(0.2)
    assert proc.poll() is None, "training ended before it could be interrupted"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = _epochs_logged(tmp_path)
    assert done[:2] == [1, 2] and len(done) < 4

    run = _run(tmp_path, **changes)
    assert run.returncode == 0, run.stderr[-3000:]
    epochs = _epochs_logged(tmp_path)
    assert epochs == list(range(1, 5)), epochs  # nothing redone, nothing missed

    # the same metrics as a run that was never interrupted (same seed, CPU)
    uninterrupted = tmp_path / "uninterrupted"
    run = _run(uninterrupted, **changes)
    assert run.returncode == 0, run.stderr[-3000:]
    assert _metric_lines(tmp_path) == _metric_lines(uninterrupted)


def _metric_lines(root):
    """The train log's epoch lines (every loss and lwlrap, no timestamps)."""
    log = (_fold_folder(root) / "train_log.txt").read_text()
    return [line for line in log.splitlines() if line.startswith("epoch:")]


def test_the_same_seed_gives_the_same_training(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    for root in (first, second):
        run = _run(root, number_of_epochs=2)
        assert run.returncode == 0, run.stderr[-3000:]
    assert len(_metric_lines(first)) == 2
    assert _metric_lines(first) == _metric_lines(second)
    oof = (_fold_folder(first) / "oof_predictions.csv").read_text()
    assert oof == (_fold_folder(second) / "oof_predictions.csv").read_text()
    changed = _run(tmp_path / "c", number_of_epochs=2, seed=2)
    assert changed.returncode == 0, changed.stderr[-3000:]
    log = pathlib.Path(tmp_path) / "c" / "small_cpu" / "2" / "fold0" / "train_log.txt"
    assert log.read_text().splitlines()[0] != _metric_lines(first)[0]


def test_other_data_in_the_same_output_folder_is_refused(tmp_path):
    run = _run(tmp_path, number_of_epochs=1, steps_per_epoch=1)
    assert run.returncode == 0, run.stderr[-3000:]
    other = tmp_path / "other_data"
    shutil.copytree(tmp_path / "synthetic_rfcx", other)
    run = _run(tmp_path, number_of_epochs=1, data_folder=other)
    assert run.returncode != 0
    assert "choose another output_root" in run.stdout + run.stderr


def test_a_planted_bad_row_stops_training_with_its_line(tmp_path):
    run = _run(tmp_path, number_of_epochs=1, steps_per_epoch=1)
    assert run.returncode == 0, run.stderr[-3000:]
    data = tmp_path / "bad_data"
    shutil.copytree(tmp_path / "synthetic_rfcx", data)
    lines = (data / "train_tp.csv").read_text().splitlines()
    fields = lines[3].split(",")
    fields[1] = "31"  # species id out of range, on line 4
    lines[3] = ",".join(fields)
    (data / "train_tp.csv").write_text("\n".join(lines) + "\n")
    run = _run(tmp_path / "other_root", number_of_epochs=1, data_folder=data)
    assert run.returncode != 0
    assert (
        "train_tp.csv line 4: species_id 31 is outside 0..23" in run.stdout + run.stderr
    )
    prepared = tmp_path / "other_root" / "small_cpu" / "1" / "prepared"
    assert not (prepared / "train.json").exists()  # nothing half-prepared


@pytest.mark.skipif(
    shutil.which("torchrun") is None
    and not os.path.exists(os.path.join(os.path.dirname(PYTHON), "torchrun")),
    reason="torchrun missing",
)
def test_unlearnable_labels_stop_training_with_a_reason(tmp_path):
    """No TP box to learn from, or a held-out fold without one to validate
    on: train.py says so before any training step."""
    import pandas as pd

    from speechbrain_rfcx.data.synthetic import generate_rfcx_dataset

    data = tmp_path / "data"
    generate_rfcx_dataset(data, n_train=12, n_test=2, duration=3.0,
                          sample_rate=16000, seed=3, tp_fraction=1.0)  # fmt: skip
    tp = pd.read_csv(data / "train_tp.csv", dtype={"recording_id": str})

    def train(root, fold):
        return subprocess.run(
            [PYTHON, "train.py", "hparams/small_cpu.yaml", f"--data_folder={data}",
             f"--output_root={root}", "--n_folds=3", f"--fold={fold}"],
            cwd=RECIPE, capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    tp.iloc[:0].to_csv(data / "train_tp.csv", index=False)  # FP boxes only
    run = train(tmp_path / "fp_only", 0)
    assert run.returncode != 0
    said = run.stdout + run.stderr
    assert "hold no TP box" in said or "holds no recording with a TP box" in said
    cv = subprocess.run(
        [PYTHON, "cross_validate.py", "hparams/small_cpu.yaml", f"--data_folder={data}",
         f"--output_root={tmp_path / 'cv'}", "--n_folds=3"],
        cwd=RECIPE, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert cv.returncode != 0
    assert "cross_validate.py: fold 0 of 3 failed" in cv.stderr
    one = tp[tp.recording_id == tp.recording_id.iloc[0]]
    one.to_csv(data / "train_tp.csv", index=False)  # one labelled recording
    runs = [train(tmp_path / f"one{k}", k) for k in range(3)]
    messages = [r.stdout + r.stderr for r in runs]
    refused = [
        k for k, m in enumerate(messages) if "holds no recording with a TP box" in m
    ]
    assert len(refused) == 2, messages  # every fold but the labelled one's


def test_thirty_species_train_and_detect(tmp_path):
    """Any number of species: ids up to 29 prepare, train, and detect."""
    import pandas as pd

    from speechbrain_rfcx.data.synthetic import generate_rfcx_dataset

    data = tmp_path / "data"
    generate_rfcx_dataset(data, n_train=40, n_test=4, duration=6.0,
                          sample_rate=16000, seed=2, tp_fraction=1.0)  # fmt: skip
    tp = pd.read_csv(data / "train_tp.csv", dtype={"recording_id": str})
    tp.loc[tp.species_id >= 18, "species_id"] += 6  # ids up to 29
    tp.to_csv(data / "train_tp.csv", index=False)
    run = subprocess.run(
        [PYTHON, "train.py", "hparams/small_cpu.yaml", f"--data_folder={data}",
         *_overrides(tmp_path, n_classes=30, number_of_epochs=1)],
        cwd=RECIPE, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    fold = _fold_folder(tmp_path)
    header = (fold / "oof_predictions.csv").read_text().splitlines()[0]
    assert header == "recording_id," + ",".join(f"s{c}" for c in range(30))
    out = tmp_path / "detections"
    detect = subprocess.run(
        [PYTHON, "-c", "from speechbrain_rfcx.cli import detect; detect()",
         str(data / "test"), "--model", str(fold), "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert detect.returncode == 0, detect.stderr[-2000:]
    scores = pd.read_csv(out / "clip_scores.csv")
    assert list(scores.columns[1:]) == [f"s{c}" for c in range(30)]


def test_torchrun_two_gloo_processes_train_a_batchnorm_model(tmp_path):
    torchrun = os.path.join(os.path.dirname(PYTHON), "torchrun")
    cmd = [
        torchrun,
        "--standalone",
        "--nproc_per_node=2",
        "train.py",
        "hparams/small_cpu.yaml",
        "--distributed_backend=gloo",
        "--device=cpu",
        *_overrides(tmp_path, number_of_epochs=1),
    ]
    run = subprocess.run(cmd, cwd=RECIPE, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    fold = _fold_folder(tmp_path)
    assert _epochs_logged(tmp_path) == [1]  # one log line: metrics once, not per rank
    assert len(list((fold / "save").glob("CKPT*"))) == 1
    assert run.stdout.count("test set, complete labels") == 1
