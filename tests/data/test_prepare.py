"""prepare_rfcx: manifests, folds, idempotence, and errors that name the row."""

import json
import logging
import os
import shutil

import numpy as np
import pandas as pd
import pytest
from speechbrain.dataio.dataio import load_data_json

from speechbrain_rfcx.data.annotations import AnnotationError, read_rfcx_csv
from speechbrain_rfcx.data.audio import AudioError
from speechbrain_rfcx.data.prepare import (
    assign_folds,
    prepare_rfcx,
    summarize_manifest,
)
from speechbrain_rfcx.data.prepare import main as prepare_main


def _load(path, data_root=""):
    return load_data_json(path, replacements={"data_root": data_root})


def test_manifest_holds_every_recording_and_box(tiny_rfcx, tiny_prepared):
    train = _load(tiny_prepared["train_json"], str(tiny_rfcx))
    flacs = sorted(p[:-5] for p in os.listdir(tiny_rfcx / "train"))
    assert sorted(train) == flacs
    tp = pd.read_csv(tiny_rfcx / "train_tp.csv", dtype={"recording_id": str})
    fp = pd.read_csv(tiny_rfcx / "train_fp.csv", dtype={"recording_id": str})
    assert sum(len(e["tp_boxes"]) for e in train.values()) == len(tp)
    assert sum(len(e["fp_boxes"]) for e in train.values()) == len(fp)
    for row in tp.itertuples():
        boxes = train[row.recording_id]["tp_boxes"]
        assert any(
            b["species_id"] == row.species_id
            and b["t_min"] == pytest.approx(row.t_min)
            and b["f_max"] == pytest.approx(row.f_max)
            for b in boxes
        )
    for rid, entry in train.items():
        assert os.path.isfile(entry["wav"]), entry["wav"]
        assert entry["wav"].endswith(f"train/{rid}.flac")
        assert entry["sample_rate"] == 16000
        assert entry["duration"] == pytest.approx(6.0)


def test_manifest_paths_use_the_data_root_placeholder(tiny_prepared):
    with open(tiny_prepared["train_json"]) as f:
        raw = json.load(f)
    assert all(e["wav"].startswith("{data_root}/train/") for e in raw.values())
    moved = _load(tiny_prepared["train_json"], "/elsewhere")
    assert all(e["wav"].startswith("/elsewhere/train/") for e in moved.values())


def test_test_manifest_follows_sample_submission(tiny_rfcx, tiny_prepared):
    with open(tiny_prepared["test_json"]) as f:
        test = json.load(f)
    order = pd.read_csv(tiny_rfcx / "sample_submission.csv", dtype=str)["recording_id"]
    assert list(test) == list(order)
    assert all("tp_boxes" not in e for e in test.values())


def test_folds_cover_every_recording_and_are_stratified(tiny_prepared):
    with open(tiny_prepared["train_json"]) as f:
        train = json.load(f)
    folds = pd.read_csv(tiny_prepared["folds_csv"], dtype={"recording_id": str})
    assert sorted(folds.recording_id) == sorted(train)
    assert set(folds.fold) == {0, 1, 2, 3}
    assert all(train[r]["fold"] == k for r, k in zip(folds.recording_id, folds.fold))
    sizes = np.bincount(folds.fold)
    assert sizes.max() - sizes.min() <= 1
    # Every species with at least 4 TP recordings has one in every fold.
    per_species = {}
    for entry in train.values():
        for s in {b["species_id"] for b in entry["tp_boxes"]}:
            per_species.setdefault(s, []).append(entry["fold"])
    for s, fs in per_species.items():
        counts = np.bincount(fs, minlength=4)
        assert counts.max() - counts.min() <= 1 + len(fs) // 4, (s, counts)
    # FP-only recordings get folds too.
    fp_only = [e for e in train.values() if e["fp_boxes"] and not e["tp_boxes"]]
    assert fp_only and all(0 <= e["fold"] < 4 for e in fp_only)


def test_folds_depend_on_the_seed_only():
    labels = np.random.default_rng(0).random((60, 6)) < 0.2
    ids = [f"r{i}" for i in range(60)]
    assert assign_folds(ids, labels, 5, seed=1) == assign_folds(ids, labels, 5, seed=1)
    assert assign_folds(ids, labels, 5, seed=1) != assign_folds(ids, labels, 5, seed=2)
    with pytest.raises(ValueError, match="n_folds=5"):
        assign_folds(ids[:3], labels[:3], 5)


def test_second_call_does_nothing_and_says_so(tiny_rfcx, tiny_prepared, caplog):
    save = os.path.dirname(tiny_prepared["train_json"])
    before = {n: os.stat(os.path.join(save, n)).st_mtime_ns for n in os.listdir(save)}
    with caplog.at_level(logging.INFO):
        again = prepare_rfcx(tiny_rfcx, save, n_folds=4, seed=1)
    assert again == tiny_prepared
    assert "skipping" in caplog.text
    after = {n: os.stat(os.path.join(save, n)).st_mtime_ns for n in os.listdir(save)}
    assert after == before


def test_other_arguments_prepare_again(tiny_rfcx, tiny_prepared, tmp_path):
    save = tmp_path / "prep"
    shutil.copytree(os.path.dirname(tiny_prepared["train_json"]), save)
    prepare_rfcx(tiny_rfcx, save, n_folds=3, seed=1)
    folds = pd.read_csv(save / "folds.csv")
    assert set(folds.fold) == {0, 1, 2}


def test_a_replaced_recording_or_a_lost_manifest_prepares_again(tiny_rfcx, tmp_path):
    import soundfile as sf

    data, save = tmp_path / "data", tmp_path / "prep"
    shutil.copytree(tiny_rfcx, data)
    first = prepare_rfcx(data, save, n_folds=4, seed=1)
    victim = sorted((data / "train").iterdir())[0]
    audio, rate = sf.read(victim)
    sf.write(victim, audio[: len(audio) // 2], rate // 2)  # re-encoded, same name
    prepare_rfcx(data, save, n_folds=4, seed=1)
    entry = _load(first["train_json"])[victim.stem]
    assert entry["sample_rate"] == rate // 2
    assert entry["duration"] == pytest.approx(len(audio) / rate)
    os.remove(save / "train.json")  # the record of the options is still there
    again = prepare_rfcx(data, save, n_folds=4, seed=1)
    assert os.path.isfile(again["train_json"])


def test_rfcx_prepare_names_bad_inputs_instead_of_a_traceback(tiny_rfcx, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_rfcx, data)

    def prepare(*extra):
        with pytest.raises(SystemExit) as exit_info:
            prepare_main(["--data-folder", str(data), "--save-folder",
                          str(tmp_path / "prep"), *extra])  # fmt: skip
        return str(exit_info.value)

    for n in ("0", "1"):
        assert "n_folds must be an integer of at least 2" in prepare("--n-folds", n)
    sample = data / "sample_submission.csv"
    kept = sample.read_text()
    sample.write_text("")
    assert "sample_submission.csv: the file is empty" in prepare()
    sample.write_text(kept)
    tp = data / "train_tp.csv"
    lines = tp.read_text().splitlines()
    tp.write_text("\n".join([lines[0], lines[1] + ",7"] + lines[2:]) + "\n")
    assert "train_tp.csv line 2: 8 values for 7 columns" in prepare()


def test_trailing_commas_read_as_without_them(tiny_rfcx, tmp_path):
    plain = read_rfcx_csv(os.path.join(tiny_rfcx, "train_tp.csv"))
    path = tmp_path / "tp.csv"
    lines = open(os.path.join(tiny_rfcx, "train_tp.csv")).read().splitlines()
    path.write_text("\n".join([lines[0]] + [line + "," for line in lines[1:]]) + "\n")
    pd.testing.assert_frame_equal(read_rfcx_csv(path), plain)


def test_rfcx_prepare_takes_any_number_of_species(tmp_path, capsys):
    from speechbrain_rfcx.data.synthetic import generate_rfcx_dataset

    data = tmp_path / "data"
    generate_rfcx_dataset(data, n_train=40, n_test=2, duration=3.0,
                          sample_rate=16000, seed=2)  # fmt: skip
    tp = pd.read_csv(data / "train_tp.csv", dtype={"recording_id": str})
    tp.loc[tp.species_id >= 18, "species_id"] += 6  # ids up to 29
    tp.to_csv(data / "train_tp.csv", index=False)
    assert tp.species_id.max() >= 24
    prepare_main(["--data-folder", str(data), "--save-folder", str(tmp_path / "p"),
                  "--n-folds", "2", "--n-classes", "30"])  # fmt: skip
    summary = capsys.readouterr().out
    line = next(s for s in summary.splitlines() if s.startswith("TP boxes per"))
    assert len(line.split(":")[1].split()) == 30


def test_summary_counts(tiny_prepared):
    text = summarize_manifest(tiny_prepared["train_json"])
    assert text.startswith("48 training recordings")
    assert f"({tiny_prepared['n_tp_boxes']} boxes)" in text
    assert len([ln for ln in text.splitlines() if ln.strip()[:1].isdigit()]) >= 4


# --- planted bad input: the error names the file and the line; nothing is lost ---


def _copy_dataset(src, dst):
    shutil.copytree(src, dst)
    return dst


def _edit_tp(folder, edit):
    path = folder / "train_tp.csv"
    df = pd.read_csv(path, dtype={"recording_id": str})
    df = edit(df)
    df.to_csv(path, index=False)
    return path


def _set(col, value, row=1):
    def edit(df):
        df[col] = df[col].astype(object)
        df.loc[row, col] = value
        return df

    return edit


BAD_ROWS = {
    "species out of range": (_set("species_id", 24), "line 3: species_id 24"),
    "negative species": (_set("species_id", -1), "line 3: species_id -1"),
    "reversed times": (
        lambda df: df.assign(t_min=df.t_max + 0.25),
        "line 2: t_min",
    ),
    "negative time": (_set("t_min", -0.5), "line 3: t_min -0.5 is negative"),
    "past the end": (_set("t_max", 7.5), "line 3: box ends at 7.5 s, past the end"),
    "above Nyquist": (_set("f_max", 9000.0), "line 3: f_max 9000.0 Hz is above"),
    "not a number": (_set("f_min", "loud"), "line 3: f_min 'loud' is not a finite"),
    "empty cell": (_set("t_max", np.nan), "line 3: t_max is empty"),
    "unknown recording": (_set("recording_id", "nosuchid"), "line 3: no audio file"),
    "duplicate row": (
        lambda df: pd.concat([df, df.iloc[[0]]], ignore_index=True),
        "duplicate of line 2",
    ),
    "missing column": (
        lambda df: df.drop(columns=["f_min"]),
        "missing column(s) f_min",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_planted_bad_row_is_named_and_nothing_is_lost(
    case, tiny_rfcx, tiny_prepared, tmp_path
):
    edit, expected = BAD_ROWS[case]
    data = _copy_dataset(tiny_rfcx, tmp_path / "data")
    save = tmp_path / "prep"
    shutil.copytree(os.path.dirname(tiny_prepared["train_json"]), save)
    before = {n: (save / n).read_bytes() for n in os.listdir(save)}
    _edit_tp(data, edit)
    with pytest.raises((AnnotationError, AudioError)) as err:
        prepare_rfcx(data, save, n_folds=4, seed=1)
    assert "train_tp.csv" in str(err.value)
    assert expected in str(err.value)
    assert {n: (save / n).read_bytes() for n in os.listdir(save)} == before


def test_missing_and_corrupt_audio_are_named(tiny_rfcx, tmp_path):
    data = _copy_dataset(tiny_rfcx, tmp_path / "data")
    victim = sorted(os.listdir(data / "train"))[0]
    (data / "train" / victim).write_bytes(b"this is not a flac file")
    with pytest.raises(AudioError, match=victim):
        prepare_rfcx(data, tmp_path / "prep", n_folds=4)
    assert not (tmp_path / "prep" / "train.json").exists()
    os.remove(data / "train" / victim)
    tp = read_rfcx_csv(data / "train_tp.csv")
    if victim[:-5] in set(tp.recording_id):
        with pytest.raises(AnnotationError, match="no audio file"):
            prepare_rfcx(data, tmp_path / "prep", n_folds=4)


def test_missing_test_audio_listed_in_sample_submission(tiny_rfcx, tmp_path):
    data = _copy_dataset(tiny_rfcx, tmp_path / "data")
    victim = sorted(os.listdir(data / "test"))[2]
    os.remove(data / "test" / victim)
    with pytest.raises(
        AudioError, match=rf"sample_submission.csv line \d+: .*{victim[:-5]}"
    ):
        prepare_rfcx(data, tmp_path / "prep", n_folds=4)


def test_missing_layout_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_tp.csv"):
        prepare_rfcx(tmp_path, tmp_path / "prep")


def test_missing_fp_file_is_allowed(tiny_rfcx, tmp_path):
    data = _copy_dataset(tiny_rfcx, tmp_path / "data")
    os.remove(data / "train_fp.csv")
    out = prepare_rfcx(data, tmp_path / "prep", n_folds=4)
    assert out["n_fp_boxes"] == 0 and out["n_train"] == 48
