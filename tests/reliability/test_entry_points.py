"""Bad and odd input through the user-facing entry points.

One matrix of input files x entry points (``rfcx-detect``, ``rfcx-submit``,
``SpeciesDetector.detect_file``): broken files are named in a clear error and
never stop the good files (detect) nor leave a partial submission (submit);
odd but valid audio (channels, rates, short, NaN/Inf, silence) is scored
normally. Then empty inputs, unwritable outputs, broken model folders, and a
``rfcx-detect`` run killed midway and resumed.

The stand-in detector scores tones: at 1 kHz, class c is a sine at
``FREQS[c]``; the frame logit is ``20 * (amplitude in a 0.1 s frame - 0.4)``,
so scores can be computed by hand.
"""

import math
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

import speechbrain_rfcx.cli as cli
from speechbrain_rfcx.data.audio import AudioError
from speechbrain_rfcx.detections.tables import read_raven_table
from speechbrain_rfcx.interface import ModelFolderError, SpeciesDetector
from speechbrain_rfcx.runs import ClipScoreJournal

RATE = 1000  # the stand-in model's rate
FREQS = (100.0, 200.0)
FRAME = 0.1  # seconds per model frame
STANDIN = "rfcx_entry_points_standin"
STANDIN_SOURCE = '''
import time
import torch


class Tones(torch.nn.Module):
    """Frame logit of class c: 20 * (amplitude of FREQS[c] in 0.1 s - 0.4)."""

    def __init__(self, delay=0.0):
        super().__init__()
        self.delay = delay  # seconds slept per call (to kill a run midway)

    def forward(self, wavs, lens=None):
        time.sleep(self.delay)
        frames = wavs.reshape(wavs.shape[0], -1, 100)
        amplitude = torch.fft.rfft(frames).abs()[..., [10, 20]] * 2 / 100
        logits = 20.0 * (amplitude - 0.4)
        return {"clip_logits": logits.amax(1), "frame_logits": logits}
'''


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


@pytest.fixture(scope="module")
def standin_path(tmp_path_factory):
    """A folder holding the stand-in model's module, importable here and in
    subprocesses (PYTHONPATH)."""
    folder = tmp_path_factory.mktemp("standin")
    (folder / f"{STANDIN}.py").write_text(STANDIN_SOURCE)
    sys.path.insert(0, str(folder))
    yield str(folder)
    sys.path.remove(str(folder))
    sys.modules.pop(STANDIN, None)


def export_standin(folder, delay=0.0):
    """An exported detector folder of the stand-in (window 2 s, hop 1 s)."""
    model_yaml = f"model: !new:{STANDIN}.Tones\n  delay: {delay}\n"
    module = __import__(STANDIN)
    detector = SpeciesDetector(
        modules={"model": module.Tones(delay)},
        hparams={
            "sample_rate": RATE,
            "window": 2.0,
            "hop": 1.0,
            "n_classes": 2,
            "model_yaml": model_yaml,
        },
        run_opts={"device": "cpu"},
    )
    return detector.export(str(folder))


@pytest.fixture(scope="module")
def model_dir(standin_path, tmp_path_factory):
    return export_standin(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def detector(model_dir):
    return SpeciesDetector.from_hparams(model_dir)


# --- audio makers --------------------------------------------------------------


def tones(duration, events, rate=RATE, amplitude=0.8):
    """Mono float64 audio with a sine per (species, t0, t1)."""
    t = np.arange(int(round(duration * rate))) / rate
    wav = np.zeros_like(t)
    for species, t0, t1 in events:
        inside = (t >= t0 - 1e-9) & (t < t1 - 1e-9)
        wav += inside * amplitude * np.sin(2 * np.pi * FREQS[species] * t)
    return wav


# a 3 s reference signal: species 0 from 0.5 to 1.5 s, species 1 from 2 to 3 s,
# at an amplitude (0.45: logit 1) where probabilities are far from saturation
REFERENCE_EVENTS = [(0, 0.5, 1.5), (1, 2.0, 3.0)]
REFERENCE_AMPLITUDE = 0.45


def oracle_path(path, kind):
    """Where the oracle version of an input file goes: outside its folder."""
    return path.parent.parent / f"oracle_{kind}_{path.name}.wav"


def write_reference(path, rate=RATE, channels=1):
    """The reference signal at ``rate``; extra channels hold other content whose
    mean with channel 0 (the downmix) is written next to the input folder."""
    wav = tones(3.0, REFERENCE_EVENTS, rate, REFERENCE_AMPLITUDE)
    subtype = "FLOAT" if path.suffix == ".wav" else None  # FLAC: 16-bit PCM
    if channels > 1:
        rng = np.random.default_rng(channels)
        extra = 0.3 * rng.standard_normal((len(wav), channels - 1))
        data = np.column_stack([wav, extra]).astype("float32")
        sf.write(path, data, rate, subtype=subtype)
        sf.write(oracle_path(path, "mono"), data.mean(axis=1), rate, subtype="FLOAT")
    else:
        sf.write(path, wav.astype("float32"), rate, subtype=subtype)


def _truncated_flac(path):
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, 3 * RATE)
    sf.write(path, noise, RATE, format="FLAC")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _nonfinite(path):
    """Reference signal with NaN, +Inf and -Inf spread over it; the same file
    with those samples set to zero goes next to the input folder."""
    wav = tones(3.0, REFERENCE_EVENTS, amplitude=REFERENCE_AMPLITUDE)
    wav = wav.astype("float32")
    rng = np.random.default_rng(3)
    bad = rng.choice(len(wav), size=60, replace=False)
    wav[bad[:20]], wav[bad[20:40]], wav[bad[40:]] = np.nan, np.inf, -np.inf
    sf.write(path, wav, RATE, subtype="FLOAT")
    zeroed = np.nan_to_num(wav, posinf=0, neginf=0)
    sf.write(oracle_path(path, "zeroed"), zeroed, RATE, subtype="FLOAT")


# name -> (file name, maker, expected duration in s or None for a broken file)
BROKEN = {
    "truncated flac": ("case.flac", _truncated_flac),
    "corrupt flac": (
        "case.flac",
        lambda p: p.write_bytes(np.random.default_rng(1).bytes(5000)),
    ),
    "zero-length": ("case.flac", lambda p: p.write_bytes(b"")),
    "text as wav": ("case.wav", lambda p: p.write_text("species_id,t_min\n3,1.5\n")),
}
VALID = {
    "stereo": ("case.wav", lambda p: write_reference(p, channels=2), 3.0),
    "4 channels": ("case.wav", lambda p: write_reference(p, channels=4), 3.0),
    "8 kHz": ("case.flac", lambda p: write_reference(p, rate=8000), 3.0),
    "16 kHz": ("case.wav", lambda p: write_reference(p, rate=16000), 3.0),
    "22.05 kHz": ("case.wav", lambda p: write_reference(p, rate=22050), 3.0),
    "44.1 kHz": ("case.wav", lambda p: write_reference(p, rate=44100), 3.0),
    "96 kHz": ("case.wav", lambda p: write_reference(p, rate=96000), 3.0),
    "shorter than a window": (
        "case.flac",
        lambda p: sf.write(p, tones(0.5, [(0, 0.0, 0.5)]), RATE, format="FLAC"),
        0.5,
    ),
    "shorter than a frame": (
        "case.wav",
        lambda p: sf.write(p, tones(0.03, [(0, 0.0, 0.03)]), RATE),
        0.03,
    ),
    "nan and inf": ("case.wav", _nonfinite, 3.0),
    "silence": (
        "case.flac",
        lambda p: sf.write(p, np.zeros(3 * RATE), RATE, format="FLAC"),
        3.0,
    ),
}
CASES = sorted(BROKEN) + sorted(VALID)
ENTRY_POINTS = ["rfcx-detect", "rfcx-submit", "detect_file"]
GOOD = {"good1.wav": [(0, 1.0, 2.0)], "good2.flac": [(1, 0.0, 1.0)]}


def make_input_folder(folder, case):
    """The case's file plus two good files; returns the case file's path."""
    folder.mkdir()
    for name, events in GOOD.items():
        sf.write(folder / name, tones(3.0, events), RATE, subtype="PCM_16")
    name, maker = (BROKEN.get(case) or VALID[case])[:2]
    path = folder / name
    maker(path)
    return path


def reference_scores(detector, case, path, tmp_path):
    """What the case file must score like, from another file (None: no oracle
    file, the expectation is computed by hand)."""
    if case in ("stereo", "4 channels"):
        return detector.detect_file(oracle_path(path, "mono")), 1e-5
    if case == "nan and inf":
        return detector.detect_file(oracle_path(path, "zeroed")), 1e-6
    if case.endswith("Hz"):
        native = tmp_path / "native.wav"
        write_reference(native)
        return detector.detect_file(native), 0.005
    return None, None


def hand_computed_clip_probs(case):
    """Clip probabilities computed from the stand-in's formula."""
    if case == "silence":  # amplitude 0: logit -8 for both species
        return [sigmoid(-8), sigmoid(-8)]
    if case == "shorter than a window":  # full 0.1 s frames of species 0 at 0.8
        return [sigmoid(8), sigmoid(-8)]
    return None


def check_scored(result, duration):
    """Valid audio scored normally: finite probabilities, frames inside."""
    clip, frames, times = (
        result["clip_probs"],
        result["frame_probs"],
        result["frame_times"],
    )
    assert clip.shape == (2,) and frames.shape == (len(times), 2)
    for probs in (clip, frames):
        assert np.isfinite(probs).all() and (probs >= 0).all() and (probs <= 1).all()
    assert result["duration"] == pytest.approx(duration)
    assert len(times) >= 1 and np.all(np.diff(times) > 0)
    assert times[0] > 0 and times[-1] < duration


def _run(main, capsys, *args):
    status = main([str(a) for a in args])
    return status, capsys.readouterr().err


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("case", CASES)
def test_input_matrix(case, entry, model_dir, detector, tmp_path, capsys):
    folder = tmp_path / "in"
    path = make_input_folder(folder, case)
    broken = case in BROKEN

    if entry == "detect_file":
        if broken:
            with pytest.raises(AudioError, match=re.escape(str(path))):
                detector.detect_file(path)
            return
        result = detector.detect_file(path)
        check_scored(result, VALID[case][2])
        reference, atol = reference_scores(detector, case, path, tmp_path)
        if reference is not None:
            np.testing.assert_allclose(result["clip_probs"], reference["clip_probs"],
                                       atol=atol)  # fmt: skip
            np.testing.assert_allclose(result["frame_times"], reference["frame_times"])
            np.testing.assert_allclose(
                result["frame_probs"], reference["frame_probs"], atol=2 * atol
            )
        expected = hand_computed_clip_probs(case)
        if expected is not None:
            np.testing.assert_allclose(result["clip_probs"], expected, rtol=1e-3)
        return

    if entry == "rfcx-detect":
        out = tmp_path / "out"
        status, err = _run(cli.detect_main, capsys, folder, "--model", model_dir,
                           "--out", out, "--format", "raven,csv")  # fmt: skip
        summary = pd.read_csv(out / "clip_scores.csv").set_index("recording_id")
        expected_ids = sorted(["good1", "good2"] + ([] if broken else ["case"]))
        assert sorted(summary.index) == expected_ids
        for stem in expected_ids:
            assert (out / f"{stem}.Table.1.selections.txt").is_file()
            assert (out / f"{stem}.detections.csv").is_file()
        # the good files are scored as if alone: good1 holds species 0 only
        assert summary.loc["good1", "s0"] > 0.99 > 0.01 > summary.loc["good1", "s1"]
        if broken:
            assert status == 2
            assert f"skipped {path}" in err and "1 of 3 file(s)" in err
            assert not list(out.glob("case*"))
            return
        assert status == 0 and "could not be read" not in err
        scores = summary.loc["case", ["s0", "s1"]].to_numpy(dtype=float)
        assert np.isfinite(scores).all() and (scores >= 0).all() and (scores <= 1).all()
        np.testing.assert_allclose(
            scores, detector.detect_file(path)["clip_probs"], atol=1e-6
        )  # the 6 decimals of the table
        duration = VALID[case][2]
        frame = min(FRAME, duration)
        for detection in read_raven_table(out / "case.Table.1.selections.txt"):
            assert 0 <= detection.t_min < detection.t_max <= duration + frame / 2
        return

    out = tmp_path / "submission.csv"
    out.write_text("recording_id,s0,s1\nearlier,0.5,0.5\n")
    before = out.read_bytes()
    status, err = _run(cli.submit_main, capsys, "--model", model_dir,
                       "--test-folder", folder, "--out", out)  # fmt: skip
    if broken:
        assert status == 2
        assert str(path) in err and "no submission written" in err
        assert out.read_bytes() == before
        assert [p.name for p in tmp_path.iterdir() if p.is_file()] == [out.name]
        return
    assert status == 0
    submission = pd.read_csv(out).set_index("recording_id")
    assert sorted(submission.index) == ["case", "good1", "good2"]
    scores = submission.to_numpy(dtype=float)
    assert np.isfinite(scores).all() and (scores >= 0).all() and (scores <= 1).all()
    np.testing.assert_allclose(
        submission.loc["case"].to_numpy(dtype=float),
        detector.detect_file(path)["clip_probs"],
        atol=1e-9,
    )


# --- empty inputs, unwritable outputs, broken model folders ----------------------


@pytest.mark.parametrize("entry", ["rfcx-detect", "rfcx-submit"])
def test_an_input_folder_without_audio_is_a_usage_error(
    entry, model_dir, tmp_path, capsys
):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "notes.txt").write_text("no audio here")
    out = tmp_path / "out"
    args = [folder, "--model", model_dir, "--out", out]
    if entry == "rfcx-submit":
        args = ["--test-folder", folder, "--model", model_dir, "--out", out]
    main = cli.detect_main if entry == "rfcx-detect" else cli.submit_main
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"{folder} holds no audio files" in err
    assert not out.exists()


@pytest.mark.parametrize("entry", ["rfcx-detect", "rfcx-submit"])
def test_an_output_path_below_a_file_is_a_usage_error(
    entry, model_dir, tmp_path, capsys
):
    folder = tmp_path / "in"
    make_input_folder(folder, "silence")
    blocker = tmp_path / "a_file"
    blocker.write_text("a regular file, so nothing can be created below it")
    if entry == "rfcx-detect":
        main, bad = cli.detect_main, blocker / "out"
        args = [folder, "--model", model_dir, "--out", bad]
    else:
        main, bad = cli.submit_main, blocker / "sub" / "submission.csv"
        args = ["--test-folder", folder, "--model", model_dir, "--out", bad]
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--out" in err and str(blocker) in err and "cannot create" in err
    assert blocker.read_text().startswith("a regular file")


def _no_folder(folder):
    pass


def _empty_folder(folder):
    folder.mkdir()


def _no_weights(folder):
    os.remove(folder / "model.ckpt")


def _corrupt_weights(folder):
    (folder / "model.ckpt").write_bytes(b"\x80\x02 not a torch file")


def _foreign_weights(folder):
    import torch

    torch.save({"backbone.weight": torch.zeros(3)}, folder / "model.ckpt")


def _empty_yaml(folder):
    (folder / "detector.yaml").write_text("")


def _unparsable_yaml(folder):
    (folder / "detector.yaml").write_text("model: [unclosed\n")


def _yaml_without_rate(folder):
    path = folder / "detector.yaml"
    text = path.read_text()
    path.write_text(re.sub(r"(?m)^sample_rate:.*\n", "", text))


# name -> (how to break an exported folder, text the message must hold)
BROKEN_MODELS = {
    "missing folder": (_no_folder, "holds neither detector.yaml"),
    "empty folder": (_empty_folder, "holds neither detector.yaml"),
    "no weights": (_no_weights, "model.ckpt is missing"),
    "corrupt weights": (_corrupt_weights, "cannot load the model weights"),
    "foreign weights": (_foreign_weights, "cannot load the model weights"),
    "empty yaml": (_empty_yaml, "detector.yaml: not a detector description"),
    "unparsable yaml": (_unparsable_yaml, "detector.yaml: not valid YAML"),
    "yaml without sample_rate": (_yaml_without_rate, "no 'sample_rate'"),
}


@pytest.mark.parametrize("entry", ["rfcx-detect", "rfcx-submit", "from_hparams"])
@pytest.mark.parametrize("case", sorted(BROKEN_MODELS))
def test_a_broken_model_folder_is_named(case, entry, standin_path, tmp_path, capsys):
    model = tmp_path / "model"
    if case not in ("missing folder", "empty folder"):
        export_standin(model)
    breaker, message = BROKEN_MODELS[case]
    breaker(model)
    if entry == "from_hparams":
        with pytest.raises(ModelFolderError, match=re.escape(message)) as error:
            SpeciesDetector.from_hparams(str(model))
        assert str(model) in str(error.value)
        return
    folder = tmp_path / "in"
    make_input_folder(folder, "silence")
    out = tmp_path / "out"
    if entry == "rfcx-detect":
        main, args = cli.detect_main, [folder, "--out", out, "--model", model]
    else:
        main = cli.submit_main
        args = ["--test-folder", folder, "--out", out, "--model", model]
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert str(model) in err and message in err
    assert not out.exists() or (out.is_dir() and not any(out.iterdir()))


# --- kill and resume -----------------------------------------------------------


def _output_files(folder):
    """Every file by relative path (a rerun removes stale temporary files too)."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _recordings(folder):
    """Twelve 3 s recordings (one in a subfolder for every third), a tone each."""
    (folder / "site").mkdir(parents=True)
    rng = np.random.default_rng(5)
    names = [f"r{i:02d}.wav" for i in range(8)] + [f"site/s{i}.flac" for i in range(4)]
    for name in names:
        species, start = int(rng.integers(2)), float(rng.integers(0, 2))
        wav = tones(3.0, [(species, start, start + 1.0)])
        wav += 0.05 * rng.standard_normal(len(wav))
        sf.write(folder / name, wav, RATE, subtype="PCM_16")
    return names


def _detect_command(standin_path, launcher=()):
    """``rfcx-detect`` as a user runs it (behind ``launcher``, e.g. torchrun)
    and the environment that finds the stand-in model."""
    script = os.path.join(os.path.dirname(sys.executable), "rfcx-detect")
    if not os.path.isfile(script):
        script = os.path.join(standin_path, "rfcx_detect_script.py")
        with open(script, "w") as f:
            f.write("from speechbrain_rfcx.cli import detect\ndetect()\n")
        command = [sys.executable, script]
    else:
        command = [script]
    if launcher:
        command = [*launcher, command[-1]]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [standin_path, os.environ.get("PYTHONPATH", "")]
    ))  # fmt: skip
    return command, env


def _kill_when_written(command, env, out, n_tables):
    """Start ``command`` and kill it (its whole process group) once ``out``
    holds ``n_tables`` label tracks; returns how many it had written."""
    process = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 90
    try:
        while len(list(out.rglob("*.labels.txt"))) < n_tables:
            assert process.poll() is None, "rfcx-detect ended before it was killed"
            assert time.monotonic() < deadline, "rfcx-detect wrote no outputs"
            time.sleep(0.02)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    return len(list(out.rglob("*.labels.txt")))


def test_a_killed_detection_resumes_to_the_same_outputs(standin_path, tmp_path, capsys):
    model = export_standin(tmp_path / "model", delay=0.3)  # 0.3 s per file
    folder = tmp_path / "in"
    names = _recordings(folder)
    options = ["--model", model, "--format", "raven,csv,audacity"]
    command, env = _detect_command(standin_path)
    killed = tmp_path / "killed"
    arguments = [str(folder), "--out", str(killed)] + [str(o) for o in options]
    done_before = _kill_when_written(command + arguments, env, killed, 3)
    assert 3 <= done_before < len(names)

    resumed = subprocess.run(
        command + arguments, env=env, capture_output=True, text=True, timeout=120
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "already done" in resumed.stderr  # the finished files were skipped

    fresh = tmp_path / "fresh"
    status = cli.detect_main(
        [str(folder), "--out", str(fresh)] + [str(o) for o in options]
    )
    capsys.readouterr()
    assert status == 0
    expected = _output_files(fresh)
    # three tables each, clip_scores.csv and the record of the run
    assert len(expected) == 3 * len(names) + 2
    got = _output_files(killed)
    assert sorted(got) == sorted(expected)
    for name, data in expected.items():
        assert got[name] == data, name


def test_two_torchrun_ranks_killed_and_resumed_equal_one_process(
    standin_path, tmp_path, capsys
):
    model = export_standin(tmp_path / "model", delay=0.3)
    folder = tmp_path / "in"
    names = _recordings(folder)
    (folder / "site" / "broken.wav").write_bytes(b"RIFF not really")
    options = ["--model", model, "--format", "raven,csv,audacity", "--combine"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node=2"]  # fmt: skip
    command, env = _detect_command(standin_path, torchrun)
    shared = tmp_path / "shared"
    arguments = [str(folder), "--out", str(shared)] + [str(o) for o in options]
    done_before = _kill_when_written(command + arguments, env, shared, 4)
    assert 4 <= done_before < len(names)
    assert ClipScoreJournal.part_paths(str(shared / "clip_scores.csv"))  # per rank

    resumed = subprocess.run(
        command + arguments, env=env, capture_output=True, text=True, timeout=180
    )
    assert resumed.returncode != 0  # a rank met the broken file
    assert "broken.wav" in resumed.stderr and "already done" in resumed.stderr
    assert f"1 of {len(names) + 1} file(s) could not be read" in resumed.stderr
    assert not ClipScoreJournal.part_paths(str(shared / "clip_scores.csv"))

    single = tmp_path / "single"
    status = cli.detect_main(
        [str(folder), "--out", str(single)] + [str(o) for o in options]
    )
    capsys.readouterr()
    assert status == 2
    expected = _output_files(single)
    # three tables each, the two combined tables, clip_scores.csv, the record
    assert len(expected) == 3 * len(names) + 4
    got = _output_files(shared)
    assert sorted(got) == sorted(expected)
    for name, data in expected.items():
        assert got[name] == data, name
