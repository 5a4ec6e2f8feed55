"""rfcx-detect and rfcx-submit end to end, with an exported stand-in model."""

import json
import os
import re
import shutil
import subprocess
import sys
import types

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

import speechbrain_rfcx
import speechbrain_rfcx.cli as cli
import speechbrain_rfcx.interface as interface
import speechbrain_rfcx.runs as runs
from speechbrain_rfcx.detections.tables import read_audacity_labels, read_raven_table
from speechbrain_rfcx.interface import SpeciesDetector

RATE = 1000
FREQS = (100.0, 200.0)  # class c <-> a tone at FREQS[c]
BANDS = {0: (80.0, 120.0), 1: (180.0, 230.0)}


class TwoTones(torch.nn.Module):
    """Frame logit of class c: 20 * (amplitude of its tone in a 0.1 s frame - 0.4);
    embedding: the two tones' mean amplitudes over the window."""

    autocast_seen = []  # the CPU autocast dtype of every call (None: off)

    def forward(self, wavs, lens=None):
        on = torch.is_autocast_enabled("cpu")
        self.autocast_seen.append(torch.get_autocast_dtype("cpu") if on else None)
        frames = wavs[:, : wavs.shape[1] // 100 * 100].reshape(wavs.shape[0], -1, 100)
        amplitude = torch.fft.rfft(frames).abs()[..., [10, 20]] * 2 / 100
        logits = 20.0 * (amplitude - 0.4)
        return {
            "clip_logits": logits.amax(1),
            "frame_logits": logits,
            "embedding": amplitude.mean(1),
        }


@pytest.fixture
def model_dir(tmp_path, monkeypatch):
    """An exported detector folder of the stand-in (window 2 s, hop 1 s)."""
    module = types.ModuleType("rfcx_cli_standin")
    module.TwoTones = TwoTones
    monkeypatch.setitem(sys.modules, module.__name__, module)
    detector = SpeciesDetector(
        modules={"model": TwoTones()},
        hparams={
            "sample_rate": RATE,
            "window": 2.0,
            "hop": 1.0,
            "n_classes": 2,
            "species_bands": BANDS,
            "model_yaml": "model: !new:rfcx_cli_standin.TwoTones\n",
        },
        run_opts={"device": "cpu"},
    )
    return detector.export(str(tmp_path / "model"))


def write_tones(path, duration, events):
    t = np.arange(int(round(duration * RATE))) / RATE
    wav = np.zeros_like(t)
    for species, t0, t1 in events:
        inside = (t >= t0 - 1e-9) & (t < t1 - 1e-9)
        wav += inside * 0.8 * np.sin(2 * np.pi * FREQS[species] * t)
    sf.write(path, wav.astype("float32"), RATE, subtype="FLOAT")


PLANTED = {
    "a.wav": [(0, 1.0, 2.5)],
    os.path.join("site", "b.wav"): [(1, 3.0, 4.0), (0, 0.5, 0.8)],
}


@pytest.fixture
def audio_dir(tmp_path):
    folder = tmp_path / "audio"
    (folder / "site").mkdir(parents=True)
    for name, events in PLANTED.items():
        write_tones(folder / name, 5.0, events)
    (folder / "site" / "broken.flac").write_bytes(b"not audio at all")
    (folder / "notes.txt").write_text("ignored")
    return folder


def _detect(capsys, *args):
    status = cli.detect_main([str(a) for a in args])
    return status, capsys.readouterr().err


def test_detect_folder_end_to_end(audio_dir, model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    status, err = _detect(
        capsys, audio_dir, "--model", model_dir, "--out", out,
        "--format", "raven,csv", "--format", "audacity",
    )  # fmt: skip
    assert status == 2
    assert "broken.flac" in err and "1 of 3 file(s) could not be read" in err
    assert not list(out.rglob("broken*"))
    for name, events in PLANTED.items():
        stem = os.path.splitext(name)[0]
        expected = sorted(
            (t0, s, t1, *BANDS[s]) for s, t0, t1 in events
        )  # sorted by start time, as the tables are
        raven = read_raven_table(out / f"{stem}.Table.1.selections.txt")
        got = [(d.t_min, d.species_id, d.t_max, d.f_min, d.f_max) for d in raven]
        np.testing.assert_allclose(got, expected, atol=1e-5)
        labels = read_audacity_labels(out / f"{stem}.labels.txt")
        assert [d.species_id for d in labels] == [e[1] for e in expected]
        table = pd.read_csv(out / f"{stem}.detections.csv")
        assert list(table["t_min"]) == pytest.approx([e[0] for e in expected])
    summary = pd.read_csv(out / "clip_scores.csv")
    assert list(summary.columns) == ["recording_id", "s0", "s1"]
    assert list(summary["recording_id"]) == ["a", os.path.join("site", "b")]
    scores = summary[["s0", "s1"]].to_numpy()
    assert scores[0, 0] > 0.99 and scores[0, 1] < 0.01  # a: species 0 only
    assert (scores[1] > 0.99).all()  # b: both


def test_rerun_skips_finished_files(
    audio_dir, model_dir, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "out"
    _detect(capsys, audio_dir, "--model", model_dir, "--out", out)
    table = out / "a.Table.1.selections.txt"
    before = table.stat().st_mtime_ns
    scored = []
    real = interface.ensemble_detect_file

    def counting(detectors, path, **kwargs):
        scored.append(os.path.basename(path))
        return real(detectors, path, **kwargs)

    monkeypatch.setattr(interface, "ensemble_detect_file", counting)
    status, err = _detect(capsys, audio_dir, "--model", model_dir, "--out", out)
    assert status == 2 and scored == ["broken.flac"]
    assert "2 file(s) already done" in err
    assert table.stat().st_mtime_ns == before
    # an interrupted run: one table missing -> only that file is scored again
    table.unlink()
    (audio_dir / "site" / "broken.flac").unlink()
    scored.clear()
    status, _ = _detect(capsys, audio_dir, "--model", model_dir, "--out", out)
    assert status == 0 and scored == ["a.wav"] and table.is_file()
    assert len(pd.read_csv(out / "clip_scores.csv")) == 2


def test_embeddings_per_window_in_parquet_or_csv_and_resumed(
    audio_dir, model_dir, tmp_path, capsys, monkeypatch
):
    (audio_dir / "site" / "broken.flac").unlink()
    out = tmp_path / "out"
    status, _ = _detect(
        capsys, audio_dir, "--model", model_dir, "--out", out, "--embeddings"
    )
    assert status == 0
    table = pd.read_parquet(out / "embeddings" / "a.parquet")
    assert list(table.columns) == [
        "recording_id",
        "file",
        "start_s",
        "end_s",
        "e0",
        "e1",
    ]
    assert set(table["recording_id"]) == {"a"}
    assert table["file"].iloc[0] == str(audio_dir / "a.wav")
    assert list(table["start_s"]) == [0.0, 1.0, 2.0, 3.0]  # window 2 s, hop 1 s
    assert list(table["end_s"]) == [2.0, 3.0, 4.0, 5.0]
    # the species-0 tone lasts 1.0-2.5 s: 0.8 amplitude over 1.5 s of the
    # window at 1 s, 0.5 s of the window at 2 s, none at 3 s
    np.testing.assert_allclose(table["e0"], [0.4, 0.6, 0.2, 0.0], atol=0.02)
    np.testing.assert_allclose(table["e1"], 0.0, atol=0.02)
    b = pd.read_parquet(out / "embeddings" / "site" / "b.parquet")
    assert b["e1"].iloc[3] > 0.35 and b["recording_id"].iloc[0] == "site/b"

    # CSV instead of Parquet: the same numbers
    status, _ = _detect(
        capsys, audio_dir, "--model", model_dir, "--out", tmp_path / "csv",
        "--embeddings", "--embeddings-format", "csv",
    )  # fmt: skip
    assert status == 0
    as_csv = pd.read_csv(tmp_path / "csv" / "embeddings" / "a.csv")
    np.testing.assert_allclose(as_csv[["e0", "e1"]], table[["e0", "e1"]], atol=1e-6)

    # a run killed before one file's embeddings were written redoes that file only
    scored = []
    real = interface.ensemble_detect_file
    monkeypatch.setattr(
        interface,
        "ensemble_detect_file",
        lambda d, path, **kw: (
            scored.append(os.path.basename(path)) or real(d, path, **kw)
        ),
    )
    (out / "embeddings" / "a.parquet").unlink()
    status, _ = _detect(
        capsys, audio_dir, "--model", model_dir, "--out", out, "--embeddings"
    )
    assert status == 0 and scored == ["a.wav"]
    assert (out / "embeddings" / "a.parquet").is_file()


def test_embeddings_format_errors(audio_dir, model_dir, tmp_path, capsys, monkeypatch):
    args = [audio_dir, "--model", model_dir, "--out", tmp_path / "out"]
    with pytest.raises(SystemExit):
        _detect(capsys, *args, "--embeddings-format", "csv")
    assert "--embeddings-format needs --embeddings" in capsys.readouterr().err
    # without pyarrow (and matplotlib): CSV by default, Parquet and plots refused
    import speechbrain_rfcx._optional as optional

    real = optional.installed
    monkeypatch.setattr(
        optional, "installed", lambda m: m not in ("pyarrow", "matplotlib") and real(m)
    )
    assert runs.default_embedding_format() == "csv"
    with pytest.raises(SystemExit):
        _detect(capsys, *args, "--embeddings", "--embeddings-format", "parquet")
    assert (
        "needs pyarrow: pip install 'speechbrain-rfcx[parquet]'"
        in capsys.readouterr().err
    )
    with pytest.raises(SystemExit):
        _detect(capsys, *args, "--plot")
    assert "--plot needs matplotlib" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.filterwarnings("ignore:At least one mel filterbank")  # 1 kHz audio
def test_thresholds_file_ensemble_and_plot(tmp_path, model_dir, capsys):
    audio = tmp_path / "one.wav"
    write_tones(audio, 4.0, [(0, 1.0, 2.0), (1, 2.0, 3.0)])
    thresholds = tmp_path / "thresholds.csv"
    thresholds.write_text("species_id,threshold\n0,0.99999\n")
    out = tmp_path / "out"
    status, _ = _detect(
        capsys, audio, "--model", model_dir, model_dir, "--out", out,
        "--thresholds", thresholds, "--threshold", "0.5", "--plot",
        "--tta", "shift",
    )  # fmt: skip
    assert status == 0
    # species 0 peaks at sigmoid(8) = 0.99966 < 0.99999: only species 1 is left
    detections = read_raven_table(out / "one.Table.1.selections.txt")
    assert [(d.species_id, d.t_min, d.t_max) for d in detections] == [
        (1, pytest.approx(2.0), pytest.approx(3.0))
    ]
    assert (out / "one.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_detect_rejects_bad_arguments(tmp_path, model_dir, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.detect_main([str(tmp_path), "--model", model_dir, "--out", "o",
                         "--format", "excel"])  # fmt: skip
    assert exit_info.value.code == 2
    assert "--format 'excel'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.detect_main([str(tmp_path / "missing"), "--model", model_dir, "--out", "o"])
    assert "neither a file nor a folder" in capsys.readouterr().err
    write_tones(tmp_path / "a.wav", 3.0, [])
    for extra in (
        ["--chunk-seconds", "1.5"],
        ["--window", "4", "--chunk-seconds", "3"],
    ):
        with pytest.raises(SystemExit):
            cli.detect_main([str(tmp_path / "a.wav"), "--model", model_dir,
                             "--out", str(tmp_path / "o"), *extra])  # fmt: skip
        assert "--chunk-seconds" in capsys.readouterr().err
    assert not list((tmp_path / "o").glob("*"))  # refused before any scoring


def test_precision_option_runs_the_model_under_autocast(
    audio_dir, model_dir, tmp_path, capsys
):
    scores = {}
    for precision, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        TwoTones.autocast_seen.clear()
        out = tmp_path / precision
        status, _ = _detect(capsys, audio_dir, "--model", model_dir, "--out", out,
                            "--precision", precision)  # fmt: skip
        assert status == 2  # broken.flac
        # the two readable files (the load-time BatchNorm check runs in fp32)
        assert TwoTones.autocast_seen[-2:] == [dtype, dtype]
        scores[precision] = pd.read_csv(out / "clip_scores.csv")
    assert list(scores["bf16"]["recording_id"]) == list(scores["fp32"]["recording_id"])
    assert np.allclose(scores["bf16"].iloc[:, 1:], scores["fp32"].iloc[:, 1:])


def test_precision_auto_is_bf16_only_on_a_cpu_computing_it_natively(
    audio_dir, model_dir, tmp_path, capsys, monkeypatch
):
    monkeypatch.delenv(cli.PRECISION_ENV)  # the tests' fp32 default
    for native, dtype, name in ((True, torch.bfloat16, "bf16"), (False, None, "fp32")):
        monkeypatch.setattr(cli, "cpu_has_native_bf16", lambda native=native: native)
        TwoTones.autocast_seen.clear()
        out = tmp_path / name
        status, _ = _detect(capsys, audio_dir, "--model", model_dir, "--out", out)
        assert status == 2  # broken.flac
        assert TwoTones.autocast_seen[-2:] == [dtype, dtype]
        record = json.loads((out / runs.RUN_RECORD).read_text())
        assert record["precision"] == name  # what ran, not "auto"
    monkeypatch.setattr(cli, "cpu_has_native_bf16", lambda: True)
    assert cli.resolved_precision("auto", "cuda:1") == "fp32"
    assert cli.resolved_precision("fp16", "cuda") == "fp16"
    monkeypatch.setenv(cli.PRECISION_ENV, "fp64")
    with pytest.raises(SystemExit):
        cli.detect_main([str(audio_dir), "--model", model_dir, "--out", str(out)])
    assert "RFCX_PRECISION" in capsys.readouterr().err


def test_each_file_scored_at_once_gets_its_share_of_the_cores(
    audio_dir, model_dir, tmp_path, capsys
):
    before = torch.get_num_threads()
    try:
        for extra, expected in (
            (["--num-workers", "2"], max(1, cli._default_threads() // 2)),
            (["--num-workers", "1"], cli._default_threads()),
            (["--num-workers", "2", "--threads", "3"], 3),
        ):
            out = tmp_path / f"out{len(extra)}_{extra[1]}"
            _detect(capsys, audio_dir, "--model", model_dir, "--out", out, *extra)
            assert torch.get_num_threads() == expected, extra
    finally:
        torch.set_num_threads(before)


def test_files_decoded_ahead_give_the_same_outputs(
    audio_dir, model_dir, tmp_path, capsys, monkeypatch
):
    """The files a command decodes while it loads the model are scored
    exactly as when each is read in turn: stereo, resampled, broken."""
    from speechbrain_rfcx.data import audio

    tones = np.sin(2 * np.pi * FREQS[0] * np.arange(3 * RATE) / RATE)
    sf.write(audio_dir / "stereo.wav", np.stack([tones, 0 * tones], 1), RATE)
    fast = np.sin(2 * np.pi * FREQS[1] * np.arange(6 * RATE) / (2 * RATE))
    sf.write(audio_dir / "fast.flac", fast, 2 * RATE)  # resampled to RATE
    served = []
    take = audio.DecodedAhead.take

    def spied_take(self, path):
        got = take(self, path)
        served.append(got is not None)
        return got

    def decode_all_first(paths):
        audio.decode_ahead(paths, cli.DECODE_AHEAD_BYTES).wait()

    monkeypatch.setattr(audio.DecodedAhead, "take", spied_take)
    outputs, errors = {}, {}
    for ahead in (False, True):
        if ahead:
            monkeypatch.setattr(cli, "_decode_ahead", decode_all_first)
        else:
            monkeypatch.setattr(cli, "_decode_ahead", lambda paths: None)
        out = tmp_path / f"ahead_{ahead}"
        status, errors[ahead] = _detect(capsys, audio_dir, "--model", model_dir,
                                        "--out", out, "--format", "raven,csv")  # fmt: skip
        assert status == 2  # broken.flac, named either way
        outputs[ahead] = {
            p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()
        }
    assert served.count(True) == 4  # every readable file came from the thread
    assert "broken.flac" in errors[True] and "broken.flac" in errors[False]
    assert sorted(outputs[True]) == sorted(outputs[False])
    for name, data in outputs[False].items():
        assert outputs[True][name] == data, name
    assert audio._decoded_ahead is None  # let go at the end of the run


def test_every_format_libsndfile_reads_is_found_and_scored(tmp_path, model_dir, capsys):
    folder = tmp_path / "formats"
    folder.mkdir()
    names = ["a.aiff", "b.AU", "c.caf", "d.w64", "e.rf64"]
    for name in names:
        write_tones(folder / name, 3.0, [(0, 1.0, 2.0)])
    (folder / "notes.md").write_text("not audio")
    status, _ = _detect(capsys, folder, "--model", model_dir, "--out", tmp_path / "o")
    assert status == 0
    summary = pd.read_csv(tmp_path / "o" / "clip_scores.csv")
    assert sorted(summary.recording_id) == ["a", "b", "c", "d", "e"]
    assert (summary.s0 > 0.99).all() and (summary.s1 < 0.01).all()


def test_outputs_follow_the_umask(audio_dir, model_dir, tmp_path, capsys):
    previous = os.umask(0o027)
    try:
        _detect(capsys, audio_dir, "--model", model_dir, "--out", tmp_path / "o",
                "--format", "raven,csv")  # fmt: skip
    finally:
        os.umask(previous)
    written = [p for p in (tmp_path / "o").rglob("*") if p.is_file()]
    assert len(written) >= 5  # 2 x 2 tables and clip_scores.csv
    assert {p.stat().st_mode & 0o777 for p in written} == {0o640}


def test_help_and_argument_errors_answer_without_torch(tmp_path):
    """--help and argument errors are answered before torch is imported."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no audio here")
    (tmp_path / "audio").mkdir()
    (tmp_path / "audio" / "x.wav").write_bytes(b"")  # found, never read
    probe = (
        "import sys\n"
        "from speechbrain_rfcx.cli import detect_main, submit_main\n"
        "main = submit_main if sys.argv[1] == 'submit' else detect_main\n"
        "try:\n"
        "    main(sys.argv[2:])\n"
        "except SystemExit as e:\n"
        "    print('exit', e.code, 'torch' in sys.modules)\n"
    )
    cases = [
        (["detect", "--help"], "exit 0", "--model DIR"),
        (["submit", "--help"], "exit 0", "--test-folder"),
        (["detect", "--version"], "exit 0", "rfcx-detect 0."),
        (["detect", str(tmp_path / "empty"), "--model", "m", "--out", "o"],
         "exit 2", "holds no audio files"),
        (["detect", str(tmp_path / "none"), "--model", "m", "--out", "o",
          "--format", "excel"], "exit 2", "--format 'excel'"),
        (["submit", "--test-folder", str(tmp_path / "none"), "--model", "m",
          "--out", "s.csv"], "exit 2", "is not a folder"),
        (["detect", str(tmp_path / "audio"), "--model", "m", "--out",
          str(tmp_path / "o"), "--num-workers", "0"], "exit 2",
         "--num-workers must be >= 1"),
        (["detect", str(tmp_path / "audio"), "--model", "m", "--out",
          str(tmp_path / "o"), "--precision", "fp64"], "exit 2",
         "--precision (or $RFCX_PRECISION) must be one of auto"),
    ]  # fmt: skip
    for argv, status, message in cases:
        done = subprocess.run(
            [sys.executable, "-c", probe, *argv], capture_output=True, text=True
        )
        assert done.stdout.splitlines()[-1] == f"{status} False", (argv, done)
        assert message in done.stdout + done.stderr, argv


def test_submit_follows_sample_submission(tmp_path, model_dir, capsys):
    test = tmp_path / "test"
    test.mkdir()
    for name, events in {"r1": [(0, 1, 2)], "r2": [(1, 2, 3)], "r3": []}.items():
        write_tones(test / f"{name}.wav", 3.0, events)
    sample = tmp_path / "sample_submission.csv"
    sample.write_text("recording_id,s0,s1\nr3,0,0\nr1,0,0\nr2,0,0\n")
    out = tmp_path / "submission.csv"
    args = ["--model", model_dir, "--test-folder", test, "--out", out]
    status = cli.submit_main([str(a) for a in args + ["--sample-submission", sample]])
    assert status == 0
    submission = pd.read_csv(out)
    assert list(submission.columns) == ["recording_id", "s0", "s1"]
    assert list(submission["recording_id"]) == ["r3", "r1", "r2"]
    detector = SpeciesDetector.from_hparams(model_dir)
    for row in submission.itertuples(index=False):
        expected = detector.detect_file(test / f"{row.recording_id}.wav")["clip_probs"]
        assert [row.s0, row.s1] == pytest.approx(expected.tolist(), abs=1e-9)

    priors = tmp_path / "priors.csv"
    priors.write_text("species_id,prior\n0,0.2\n1,0.5\n")
    status = cli.submit_main([str(a) for a in args + ["--priors", priors]])
    assert status == 0
    rescaled = pd.read_csv(out)
    assert list(rescaled["recording_id"]) == ["r1", "r2", "r3"]  # file order
    means = rescaled[["s0", "s1"]].mean().to_numpy()
    np.testing.assert_allclose(means, [0.2, 0.5], atol=1e-6)

    (test / "r4.flac").write_bytes(b"broken")
    status = cli.submit_main([str(a) for a in args])
    assert status == 2 and "no submission written" in capsys.readouterr().err


def test_submit_checks_every_input_before_scoring(
    tmp_path, model_dir, capsys, monkeypatch
):
    test = tmp_path / "test"
    test.mkdir()
    for name in ("r1", "r2"):
        write_tones(test / f"{name}.wav", 3.0, [])
    three = tmp_path / "three"
    SpeciesDetector(
        modules={"model": TwoTones()},
        hparams={"sample_rate": RATE, "window": 2.0, "hop": 1.0, "n_classes": 3,
                 "model_yaml": "model: !new:rfcx_cli_standin.TwoTones\n"},
        run_opts={"device": "cpu"},
    ).export(str(three))  # fmt: skip
    scored = []
    monkeypatch.setattr(
        interface, "ensemble_detect_file", lambda *a, **k: scored.append(a)
    )

    def write(name, text):
        (tmp_path / name).write_text(text)
        return str(tmp_path / name)

    cases = [
        (["--prior-strength", "2"], "--prior-strength must lie in [0, 1]"),
        (["--priors", write("p0.csv", "species_id,prior\n0,0.2\n1,0\n")],
         "p0.csv line 3: prior '0' is not a number in (0, 1)"),
        (["--priors", write("pn.csv", "species_id,prior\n0,0.2\n1,nan\n")],
         "pn.csv line 3: prior 'nan'"),
        (["--priors", write("p2.csv", "species_id,prior\n0,0.2\n0,0.3\n")],
         "p2.csv line 3: species 0 is listed twice (first on line 2)"),
        (["--priors", write("pf.csv", "species_id,prior\n0.5,0.2\n1,0.3\n")],
         "pf.csv line 2: species_id '0.5' is not an integer"),
        (["--priors", write("pm.csv", "species_id,prior\n0,0.2\n")],
         "pm.csv: no prior for species 1"),
        (["--sample-submission", write("s1.csv", "recording_id,s0,s1\nr1,0,0\n")],
         "1 scored recording(s) are not in"),
        (["--sample-submission", write("s2.csv", "recording_id,s0\nr1,0\nr2,0\n")],
         "lacks column(s) s1"),
        (["--sample-submission", write("s3.csv", "")], "s3.csv: the file is empty"),
        (["--model", str(three)],
         "must score the same species"),
    ]  # fmt: skip
    for extra, message in cases:
        args = ["--model", model_dir, "--test-folder", test,
                "--out", tmp_path / "submission.csv", *extra]  # fmt: skip
        with pytest.raises(SystemExit) as exit_info:
            cli.submit_main([str(a) for a in args])
        assert exit_info.value.code == 2, extra
        assert message in capsys.readouterr().err, extra
    assert scored == [] and not (tmp_path / "submission.csv").exists()


def test_scoring_options_are_checked_before_scoring(
    tmp_path, model_dir, audio_dir, capsys
):
    for extra, message in (
        (["--chunk-seconds", "inf"], "--chunk-seconds must be a positive, finite"),
        (["--min-duration", "-1"], "--min-duration must be a non-negative, finite"),
        (["--merge-gap", "inf"], "--merge-gap must be a non-negative, finite"),
        (["--windowed", "--window", "0.00001"], "at least one sample at 1000 Hz"),
        (["--hop", "nan"], "hop must be a positive, finite number"),
        (["--windowed", "--window", "1e9"], "--chunk-seconds (60.0) must be at least"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            cli.detect_main([str(audio_dir), "--model", model_dir,
                             "--out", str(tmp_path / "o"), *extra])  # fmt: skip
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err, extra
    assert not list((tmp_path / "o").glob("*"))  # nothing scored or written
    detector = SpeciesDetector.from_hparams(model_dir)
    wav = audio_dir / "a.wav"
    for options, message in (
        (dict(window=-1), "window must be a positive, finite number"),
        (dict(hop=0), "hop must be a positive, finite number"),
        (dict(chunk_seconds=float("nan")), "chunk_seconds must be a positive"),
        (dict(tta="shift"), "tta must be a list of items"),
        (dict(batch_size=0), "batch_size must be an integer >= 1"),
    ):
        with pytest.raises(ValueError, match=re.escape(message)):
            detector.detect_file(wav, **options)


def test_an_output_folder_of_other_settings_is_refused_or_redone(
    tmp_path, model_dir, audio_dir, capsys
):
    out = tmp_path / "out"
    base = [str(audio_dir), "--model", model_dir, "--out", str(out)]
    assert cli.detect_main(base) == 2  # broken.flac
    capsys.readouterr()
    record = json.loads((out / "rfcx_detect_run.json").read_text())
    assert record["version"] == speechbrain_rfcx.__version__
    assert record["threshold"] == 0.5 and len(record["models"]) == 1
    table = out / "a.Table.1.selections.txt"
    before = table.read_bytes()
    other = SpeciesDetector.from_hparams(model_dir)  # same weights, other bands
    other.hparams.species_bands = {0: (50.0, 150.0), 1: (150.0, 250.0)}
    banded = other.export(str(tmp_path / "banded"))
    for extra, named in (
        (["--threshold", "0.7"], "threshold: 0.5 then, 0.7 now"),
        (["--tta", "shift"], "tta"),
        (["--min-duration", "0.2"], "min_duration"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            cli.detect_main(base + extra)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert "made with other settings" in err and named in err, extra
    with pytest.raises(SystemExit):
        cli.detect_main([str(audio_dir), "--model", banded, "--out", str(out)])
    assert "models" in capsys.readouterr().err
    assert table.read_bytes() == before  # nothing was mixed in
    # --overwrite scores every file again with the new settings
    status = cli.detect_main([str(audio_dir), "--model", banded, "--out", str(out),
                              "--overwrite"])  # fmt: skip
    assert status == 2 and "already done" not in capsys.readouterr().err
    summary = pd.read_csv(out / "clip_scores.csv")
    assert len(summary) == 2  # one row per readable file, no stale rows
    assert "50.0" in (out / "a.Table.1.selections.txt").read_text()  # new bands
    # with the same settings too, --overwrite scores every file again
    again = [str(audio_dir), "--model", banded, "--out", str(out)]
    assert cli.detect_main(again) == 2
    assert "already done" in capsys.readouterr().err
    assert cli.detect_main(again + ["--overwrite"]) == 2
    assert "already done" not in capsys.readouterr().err


def test_broken_model_folders_and_devices_are_named(
    tmp_path, model_dir, audio_dir, capsys
):
    text = open(os.path.join(model_dir, "detector.yaml")).read()
    cases = [
        (text.replace("TwoTones", "NoSuchModel"), [], "cannot build its model"),
        (text.replace("n_classes: 2", "n_classes: twenty"), [],
         "n_classes must be a positive integer, got 'twenty'"),
        (text, ["--device", "banana"], "'banana' is not a device name"),
    ]  # fmt: skip
    if not torch.cuda.is_available():
        cases.append((text, ["--device", "cuda"], "no CUDA GPU is available"))
    for yaml_text, extra, message in cases:
        broken = tmp_path / "broken"
        shutil.copytree(model_dir, broken, dirs_exist_ok=True)
        (broken / "detector.yaml").write_text(yaml_text)
        with pytest.raises(SystemExit) as exit_info:
            cli.detect_main([str(audio_dir), "--model", str(broken),
                             "--out", str(tmp_path / "o"), *extra])  # fmt: skip
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err, message


def test_bad_thresholds_csv_is_named_by_line(tmp_path, model_dir, audio_dir, capsys):
    for text, message in (
        ("species_id,threshold\n0,high\n", "line 2: threshold 'high' is not"),
        ("species_id,threshold\n1,0.2\n1,0.3\n", "line 3: species 1 is listed twice"),
        ("species_id,threshold\nx,0.2\n", "line 2: species_id 'x' is not an integer"),
    ):
        (tmp_path / "t.csv").write_text(text)
        with pytest.raises(SystemExit):
            cli.detect_main([str(audio_dir), "--model", model_dir,
                             "--out", str(tmp_path / "o"),
                             "--thresholds", str(tmp_path / "t.csv")])  # fmt: skip
        assert message in capsys.readouterr().err, text


def test_unknown_bands_get_the_full_band_and_bad_tta_is_named(
    tmp_path, model_dir, capsys
):
    detector = SpeciesDetector.from_hparams(model_dir)
    detector.hparams.species_bands = None
    bandless = detector.export(str(tmp_path / "bandless"))
    audio = tmp_path / "one.wav"
    write_tones(audio, 3.0, [(1, 1.0, 2.0)])
    status, _ = _detect(capsys, audio, "--model", bandless, "--out", tmp_path / "o")
    assert status == 0
    (detection,) = read_raven_table(tmp_path / "o" / "one.Table.1.selections.txt")
    assert (detection.f_min, detection.f_max) == (0.0, RATE / 2)
    with pytest.raises(SystemExit):
        cli.detect_main(
            [
                str(audio),
                "--model",
                bandless,
                "--out",
                str(tmp_path / "o2"),
                "--tta",
                "rev",
            ]
        )
    assert "tta item 'rev'" in capsys.readouterr().err


def test_score_files_keeps_order_bounds_files_in_flight_and_reports_errors(
    monkeypatch,
):
    """Two workers: results in input order, an unreadable file gives its
    error in its place, and never more than workers + 1 files in flight."""
    import threading
    import time

    from speechbrain_rfcx.data.audio import AudioError

    lock = threading.Lock()
    state = {"running": 0, "most": 0, "submitted": 0}

    def fake_detect(detectors, path, **options):
        with lock:
            state["running"] += 1
            state["most"] = max(state["most"], state["running"])
        time.sleep(0.02)
        with lock:
            state["running"] -= 1
        if path == "bad":
            raise AudioError("bad: cannot decode")
        return {"path": path, **options}

    monkeypatch.setattr(interface, "ensemble_detect_file", fake_detect)
    paths = [f"f{i}" for i in range(9)]
    paths[4] = "bad"

    def counted(items):
        for item in items:
            state["submitted"] += 1
            yield item

    scored = runs.score_files([], counted(paths), {"tta": ()}, workers=2)
    results = []
    for result, error in scored:
        # the generator never runs more than workers + 1 files ahead
        assert state["submitted"] - len(results) <= 3
        results.append((result, error))
    assert state["most"] == 2  # two files were scored at the same time
    assert [r["path"] if r else str(e) for r, e in results] == [
        "f0", "f1", "f2", "f3", "bad: cannot decode", "f5", "f6", "f7", "f8",
    ]  # fmt: skip
    assert results[0][0]["tta"] == ()
