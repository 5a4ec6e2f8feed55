"""Tests of the synthetic RFCX soundscape generator."""

import filecmp
import json
import re

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from speechbrain_rfcx.data.synthetic import (
    CALL_FAMILIES,
    INFO_FILENAME,
    SPECIES,
    SyntheticDatasetError,
    frequency_scale,
    generate_rfcx_dataset,
    main,
)

BOX_HEADER = "recording_id,species_id,songtype_id,t_min,f_min,t_max,f_max"
BOX_FILES = ("train_tp.csv", "train_fp.csv", "test_boxes.csv", "train_all_calls.csv")
SMALL = dict(n_train=30, n_test=6, duration=5.0, sample_rate=16000, seed=11)
TINY = dict(n_train=4, n_test=2, duration=3.0, sample_rate=8000, seed=5)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synthetic_small")
    summary = generate_rfcx_dataset(folder, **SMALL)
    return folder, summary


def _read(folder, name):
    return pd.read_csv(folder / name, dtype={"recording_id": str})


def _stems(folder, split):
    return sorted(p.stem for p in (folder / split).glob("*.flac"))


def _overlaps(a_min, a_max, b_min, b_max):
    return (a_min < b_max) & (b_min < a_max)


# ---------------------------------------------------------------- species


def test_species_table():
    assert len(SPECIES) == 24
    assert [s.species_id for s in SPECIES] == list(range(24))
    assert len({s.name for s in SPECIES}) == 24
    assert {s.kind for s in SPECIES} == {"bird", "frog"}
    assert {s.family for s in SPECIES} == set(CALL_FAMILIES)
    assert sum(s.songtypes == (1, 4) for s in SPECIES) == 6
    assert min(s.f_min for s in SPECIES) >= 400
    assert max(s.f_max for s in SPECIES) <= 15000
    for spec in SPECIES:
        assert spec.songtypes in ((1,), (1, 4))
        assert 0.2 <= spec.duration[0] < spec.duration[1] <= 3.0
        assert spec.confusable_with, spec.name
        for other in spec.confusable_with:
            # symmetric, and the two bands overlap or touch
            assert spec.species_id in SPECIES[other].confusable_with
            partner = SPECIES[other]
            assert spec.f_min <= partner.f_max + 500
            assert partner.f_min <= spec.f_max + 500


def test_frequency_scale_and_band():
    assert frequency_scale(48000) == 1.0
    assert frequency_scale(16000) == pytest.approx(1 / 3)
    low, high = SPECIES[23].band(16000)
    assert (low, high) == pytest.approx((12800 / 3, 5000.0))
    # "band" songtypes: lower 60 % for songtype 1, upper 60 % for songtype 4
    assert SPECIES[21].band(48000, 1) == pytest.approx((10300, 10300 + 720))
    assert SPECIES[21].band(48000, 4) == pytest.approx((10300 + 480, 11500))
    with pytest.raises(ValueError, match="songtype_id 4"):
        SPECIES[0].band(48000, 4)


# ---------------------------------------------------------------- layout


def test_layout_and_columns(small):
    folder, summary = small
    top = {p.name for p in folder.iterdir()}
    assert top == {
        "train",
        "test",
        "train_tp.csv",
        "train_fp.csv",
        "sample_submission.csv",
        "test_ground_truth.csv",
        "test_boxes.csv",
        "train_all_calls.csv",
        INFO_FILENAME,
    }
    assert len(_stems(folder, "train")) == 30
    assert len(_stems(folder, "test")) == 6
    for name in BOX_FILES:
        assert (folder / name).read_text().splitlines()[0] == BOX_HEADER
    scores = "recording_id," + ",".join(f"s{i}" for i in range(24))
    for name in ("sample_submission.csv", "test_ground_truth.csv"):
        assert (folder / name).read_text().splitlines()[0] == scores
    assert summary["generated"] is True
    assert summary["n_tp_rows"] == len(_read(folder, "train_tp.csv"))
    assert summary["n_fp_rows"] == len(_read(folder, "train_fp.csv"))


def test_audio_format_and_level(small):
    folder, _ = small
    for split in ("train", "test"):
        for path in (folder / split).glob("*.flac"):
            info = sf.info(path)
            assert (info.format, info.subtype) == ("FLAC", "PCM_16")
            assert info.channels == 1 and info.samplerate == 16000
            assert info.frames == 5 * 16000
            audio, _ = sf.read(path)
            assert 0.25 < np.abs(audio).max() <= 0.9 + 1e-4


def test_recording_ids(small):
    folder, _ = small
    train, test = _stems(folder, "train"), _stems(folder, "test")
    assert all(re.fullmatch(r"[0-9a-f]{9}", rid) for rid in train + test)
    assert len(set(train) | set(test)) == len(train) + len(test)
    submission = _read(folder, "sample_submission.csv")
    assert list(submission.recording_id) == test
    assert (submission.drop(columns="recording_id").to_numpy() == 0).all()


def test_box_values_are_valid(small):
    folder, _ = small
    nyquist = SMALL["sample_rate"] / 2
    train_ids = set(_stems(folder, "train"))
    for name in BOX_FILES:
        boxes = _read(folder, name)
        assert len(boxes) > 0, name
        ids = set(_stems(folder, "test")) if name == "test_boxes.csv" else train_ids
        assert set(boxes.recording_id) <= ids
        assert boxes.species_id.between(0, 23).all()
        assert boxes.songtype_id.isin([1, 4]).all()
        assert ((0 <= boxes.t_min) & (boxes.t_min < boxes.t_max)).all()
        assert (boxes.t_max <= SMALL["duration"]).all()
        assert ((0 <= boxes.f_min) & (boxes.f_min < boxes.f_max)).all()
        assert (boxes.f_max < nyquist).all()
        for spec in SPECIES:
            rows = boxes[boxes.species_id == spec.species_id]
            assert rows.songtype_id.isin(spec.songtypes).all()


def test_calls_sit_in_their_scaled_bands(small):
    folder, _ = small
    scale = 1 / 3
    calls = pd.concat([_read(folder, n) for n in BOX_FILES[2:]])
    for row in calls.itertuples():
        spec = SPECIES[row.species_id]
        centre = (row.f_min + row.f_max) / 2
        assert spec.f_min * scale - 1 <= centre <= spec.f_max * scale + 1
        duration = row.t_max - row.t_min
        assert 0.6 * spec.duration[0] - 1e-3 <= duration <= spec.duration[1] + 1e-3


# ---------------------------------------------------------------- labels


def _band_energy_ratio(audio, sample_rate, box):
    """Mean power inside a box / in the same band just before and after it."""
    n_fft, hop = 512, 128
    frames = np.lib.stride_tricks.sliding_window_view(audio, n_fft)[::hop]
    power = np.abs(np.fft.rfft(frames * np.hanning(n_fft), axis=1)) ** 2
    times = (np.arange(len(power)) * hop + n_fft / 2) / sample_rate
    freqs = np.fft.rfftfreq(n_fft, 1 / sample_rate)
    band = (freqs >= box.f_min) & (freqs <= box.f_max)
    inside = (times >= box.t_min) & (times <= box.t_max)
    length = max(box.t_max - box.t_min, 0.5)
    before = (times < box.t_min - 0.03) & (times >= box.t_min - length)
    after = (times > box.t_max + 0.03) & (times <= box.t_max + length)
    return power[inside][:, band].mean() / power[before | after][:, band].mean()


@pytest.mark.parametrize("name", ["train_tp.csv", "test_boxes.csv"])
def test_boxes_match_rendered_audio(small, name):
    folder, _ = small
    split = "test" if name.startswith("test") else "train"
    ratios = []
    for box in _read(folder, name).itertuples():
        audio, sample_rate = sf.read(folder / split / f"{box.recording_id}.flac")
        ratios.append(_band_energy_ratio(audio, sample_rate, box))
    ratios = np.array(ratios)
    assert (ratios > 1.5).mean() >= 0.75
    assert np.median(ratios) > 2.0


def test_energy_check_fails_on_shifted_boxes(small):
    # The oracle above must be able to fail: boxes moved to an empty band.
    folder, _ = small
    ratios = []
    for box in _read(folder, "train_tp.csv").itertuples():
        audio, sample_rate = sf.read(folder / "train" / f"{box.recording_id}.flac")
        moved = box._replace(f_min=7000.0, f_max=7900.0)
        if box.f_max < 6500:
            ratios.append(_band_energy_ratio(audio, sample_rate, moved))
    assert np.median(ratios) < 1.5


def test_tp_labels_are_tight_and_incomplete(small):
    folder, _ = small
    tp = _read(folder, "train_tp.csv")
    calls = _read(folder, "train_all_calls.csv")
    # n_train=30: max(round(7.5), 24 species) = 24 labelled recordings, one
    # species each, and every species labelled once.
    per_recording = tp.groupby("recording_id")
    assert per_recording.ngroups == 24
    assert (per_recording.species_id.nunique() == 1).all()
    assert per_recording.size().between(1, 2).all()
    assert sorted(tp.species_id.unique()) == list(range(24))
    for box in tp.itertuples():
        same = calls[
            (calls.recording_id == box.recording_id)
            & (calls.species_id == box.species_id)
        ]
        inside = same[
            (same.t_min >= box.t_min - 1e-4) & (same.t_max <= box.t_max + 1e-4)
        ]
        assert len(inside) >= 1
        assert inside.t_min.min() == pytest.approx(box.t_min, abs=1e-4)
        assert inside.t_max.max() == pytest.approx(box.t_max, abs=1e-4)
        assert inside.f_min.min() == pytest.approx(box.f_min, abs=1e-3)
        assert inside.f_max.max() == pytest.approx(box.f_max, abs=1e-3)
    # labels are incomplete: many rendered calls carry no TP box
    assert len(calls) > len(tp)
    assert calls.recording_id.nunique() > tp.recording_id.nunique()


def test_fp_rows_never_name_a_calling_species(small):
    folder, _ = small
    fp = _read(folder, "train_fp.csv")
    calls = _read(folder, "train_all_calls.csv")
    on_confusable_call = 0
    for box in fp.itertuples():
        here = calls[calls.recording_id == box.recording_id]
        hit = here[_overlaps(here.t_min, here.t_max, box.t_min, box.t_max)]
        assert box.species_id not in set(hit.species_id), box
        partners = set(SPECIES[box.species_id].confusable_with)
        on_confusable_call += bool(partners & set(hit.species_id))
    assert on_confusable_call >= len(fp) // 2
    per_recording = fp.groupby("recording_id").size()
    assert per_recording.between(1, 3).all()


def test_fp_skips_partners_that_call_at_the_same_time():
    # Hand-built recording: species 2 and 3 (confusable) call together, so
    # the only valid FP is species 9 on the call of species 8 (3.0-3.5 s).
    from speechbrain_rfcx.data import synthetic

    sr = 1000
    calls = [
        synthetic._Call(2, 1, 1000, 1000, 500.0, 600.0, 0, {}),
        synthetic._Call(3, 1, 1200, 600, 560.0, 760.0, 1, {}),
        synthetic._Call(8, 1, 3000, 500, 700.0, 1100.0, 2, {}),
    ]
    recording = synthetic._Recording(np.zeros(5 * sr), calls, None, None)
    partners = synthetic._confusable_partners(SPECIES)
    for seed in range(10):
        rng = np.random.default_rng(seed)
        boxes = synthetic._fp_boxes(recording, SPECIES, partners, 3, 5.0, sr, rng)
        assert [(b.species_id, b.t_min, b.t_max) for b in boxes] == [(9, 3.0, 3.5)]


def test_label_proportions():
    # A larger, very short-clip set to check the label statistics.
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        summary = generate_rfcx_dataset(
            folder, n_train=100, n_test=1, duration=2.0, sample_rate=8000, seed=2
        )
        tp = pd.read_csv(summary["train_tp"], dtype={"recording_id": str})
        fp = pd.read_csv(summary["train_fp"], dtype={"recording_id": str})
        calls = pd.read_csv(summary["train_all_calls"], dtype={"recording_id": str})
    tp_ids, fp_ids = set(tp.recording_id), set(fp.recording_id)
    assert len(tp_ids) == 25  # a quarter of 100
    assert 0.65 <= len(fp_ids) / 100 <= 0.95
    assert tp_ids & fp_ids and fp_ids - tp_ids  # both, and FP only
    assert 100 - len(tp_ids | fp_ids) >= 2  # a few with neither
    assert set(calls.songtype_id) == {1, 4}
    silent = 100 - calls.recording_id.nunique()
    assert 2 <= silent <= 25  # about 10 % with no species calling


def test_tp_fraction_sets_the_share_of_labelled_recordings(tmp_path):
    summary = generate_rfcx_dataset(
        tmp_path, n_train=40, n_test=1, duration=2.0, sample_rate=8000, tp_fraction=0.75
    )
    tp = pd.read_csv(summary["train_tp"], dtype={"recording_id": str})
    assert tp.recording_id.nunique() == 30
    assert tp.groupby("recording_id").species_id.nunique().max() == 1
    with pytest.raises(ValueError, match="tp_fraction"):
        generate_rfcx_dataset(tmp_path / "x", n_train=4, n_test=1, tp_fraction=1.5)


def test_test_ground_truth_matches_boxes(small):
    folder, _ = small
    truth = _read(folder, "test_ground_truth.csv").set_index("recording_id")
    boxes = _read(folder, "test_boxes.csv")
    assert list(truth.index) == _stems(folder, "test")
    assert set(np.unique(truth.to_numpy())) <= {0, 1}
    assert truth.sum(axis=1).between(1, 4).all()
    for rid, row in truth.iterrows():
        labelled = {int(c[1:]) for c in truth.columns if row[c] == 1}
        assert labelled == set(boxes[boxes.recording_id == rid].species_id)


# ---------------------------------------------------------------- behaviour


def test_deterministic_per_seed(tmp_path):
    first = generate_rfcx_dataset(tmp_path / "a", **TINY)
    second = generate_rfcx_dataset(tmp_path / "b", **TINY)
    other = generate_rfcx_dataset(tmp_path / "c", **{**TINY, "seed": 6})
    names = ["train_tp.csv", "train_fp.csv", "train_all_calls.csv", "test_boxes.csv"]
    names += ["sample_submission.csv", "test_ground_truth.csv"]
    for name in names:
        assert filecmp.cmp(tmp_path / "a" / name, tmp_path / "b" / name, False)
    assert (tmp_path / "a" / "train_all_calls.csv").read_text() != (
        tmp_path / "c" / "train_all_calls.csv"
    ).read_text()
    for split in ("train", "test"):
        stems = _stems(tmp_path / "a", split)
        assert stems == _stems(tmp_path / "b", split)
        assert not set(stems) & set(_stems(tmp_path / "c", split))
        for stem in stems:
            a, _ = sf.read(tmp_path / "a" / split / f"{stem}.flac", dtype="int16")
            b, _ = sf.read(tmp_path / "b" / split / f"{stem}.flac", dtype="int16")
            assert np.array_equal(a, b)
    assert first["n_train_calls"] == second["n_train_calls"]
    assert other["generated"] is True


def test_splits_do_not_depend_on_each_others_size(tmp_path):
    generate_rfcx_dataset(tmp_path / "a", **TINY)
    generate_rfcx_dataset(tmp_path / "b", **{**TINY, "n_test": 5})
    generate_rfcx_dataset(tmp_path / "c", **{**TINY, "n_train": 7})
    assert _stems(tmp_path / "a", "train") == _stems(tmp_path / "b", "train")
    assert _stems(tmp_path / "a", "test") == _stems(tmp_path / "c", "test")
    name = "train_all_calls.csv"
    assert filecmp.cmp(tmp_path / "a" / name, tmp_path / "b" / name, False)
    name = "test_boxes.csv"
    assert filecmp.cmp(tmp_path / "a" / name, tmp_path / "c" / name, False)


def test_second_call_is_idempotent(tmp_path, caplog):
    first = generate_rfcx_dataset(tmp_path, **TINY)
    stamp = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    with caplog.at_level("INFO", logger="speechbrain_rfcx.data.synthetic"):
        second = generate_rfcx_dataset(tmp_path, **TINY)
    assert second["generated"] is False
    assert "already complete" in caplog.text
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == stamp
    for key in ("n_tp_rows", "n_fp_rows", "n_train_calls", "n_test_calls"):
        assert second[key] == first[key]
    info = json.loads((tmp_path / INFO_FILENAME).read_text())
    assert info["arguments"]["seed"] == TINY["seed"]


def test_refuses_other_content_unless_overwrite(tmp_path):
    generate_rfcx_dataset(tmp_path, **TINY)
    changed = {**TINY, "seed": 9}
    with pytest.raises(SyntheticDatasetError, match="other arguments"):
        generate_rfcx_dataset(tmp_path, **changed)
    summary = generate_rfcx_dataset(tmp_path, overwrite=True, **changed)
    assert summary["generated"] is True
    assert len(_stems(tmp_path, "train")) == TINY["n_train"]
    info = json.loads((tmp_path / INFO_FILENAME).read_text())
    assert info["arguments"]["seed"] == 9


def test_interrupted_run_is_detected(tmp_path):
    generate_rfcx_dataset(tmp_path, **TINY)
    (tmp_path / INFO_FILENAME).unlink()  # as if killed before the last write
    with pytest.raises(SyntheticDatasetError, match="interrupted"):
        generate_rfcx_dataset(tmp_path, **TINY)
    next(tmp_path.glob("train/*.flac")).unlink()
    (tmp_path / "stray.txt").write_text("x")
    summary = generate_rfcx_dataset(tmp_path, overwrite=True, **TINY)
    assert summary["generated"] and len(_stems(tmp_path, "train")) == 4


def test_incomplete_dataset_is_detected(tmp_path):
    generate_rfcx_dataset(tmp_path, **TINY)
    next(tmp_path.glob("test/*.flac")).unlink()
    with pytest.raises(SyntheticDatasetError, match="incomplete"):
        generate_rfcx_dataset(tmp_path, **TINY)


def test_refuses_foreign_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SyntheticDatasetError, match="other files"):
        generate_rfcx_dataset(tmp_path, **TINY)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize(
    "change, field",
    [
        ({"n_species": 0}, "n_species"),
        ({"n_species": 25}, "n_species"),
        ({"sample_rate": 4000}, "sample_rate"),
        ({"duration": 1.0}, "duration"),
        ({"n_train": -1}, "n_train"),
        ({"seed": "one"}, "seed"),
        ({"n_train": 0, "n_test": 0}, "n_train"),
    ],
)
def test_bad_arguments(tmp_path, change, field):
    with pytest.raises(ValueError, match=field):
        generate_rfcx_dataset(tmp_path, **{**TINY, **change})


def test_fewer_species(tmp_path):
    summary = generate_rfcx_dataset(tmp_path, **{**TINY, "n_species": 3})
    truth = pd.read_csv(summary["test_ground_truth"])
    assert list(truth.columns) == ["recording_id", "s0", "s1", "s2"]
    for name in BOX_FILES:
        assert pd.read_csv(tmp_path / name).species_id.between(0, 2).all()


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["--out", str(out), "--n-train", "3", "--n-test", "2", "--seed", "4"]
    main(args + ["--duration", "3", "--sample-rate", "8000"])
    printed = capsys.readouterr().out
    assert "generated 3 train / 2 test" in printed
    assert len(_stems(out, "train")) == 3 and len(_stems(out, "test")) == 2
    assert sf.info(next(out.glob("test/*.flac"))).samplerate == 8000
    main(args + ["--duration", "3", "--sample-rate", "8000"])
    assert "already complete" in capsys.readouterr().out
