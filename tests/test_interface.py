"""SpeciesDetector: loading from a real training folder, export, inference."""

import pathlib
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest
import soundfile as sf
import torch

from speechbrain_rfcx.data.annotations import read_rfcx_csv, species_bands
from speechbrain_rfcx.inference import score_file
from speechbrain_rfcx.interface import (
    ModelFolderError,
    SpeciesDetector,
    ensemble_detect_file,
)

RECIPE = pathlib.Path(__file__).resolve().parents[1] / "recipes" / "RFCX"
TINY = {
    "synthetic_n_train": 40,
    "synthetic_n_test": 4,
    "synthetic_duration": 6.0,
    "n_folds": 4,
    "batch_size": 8,
    "steps_per_epoch": 2,
    "valid_batch_size": 4,
    "number_of_epochs": 1,
    "valid_hop": 1.0,  # differs from the window (the 2 s crop) on purpose
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A real fold folder: the small CPU recipe, 1 epoch of 2 steps."""
    root = tmp_path_factory.mktemp("trained")
    options = [f"--{k}={v}" for k, v in dict(TINY, output_root=root).items()]
    run = subprocess.run(
        [sys.executable, "train.py", "hparams/small_cpu.yaml", *options],
        cwd=RECIPE,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return root


def _fold(root):
    return root / "small_cpu" / "1" / "fold0"


def _test_file(root):
    return sorted((root / "synthetic_rfcx" / "test").glob("*.flac"))[0]


def test_loads_training_folder_with_best_weights_and_bands(trained):
    detector = SpeciesDetector.from_hparams(str(_fold(trained)))
    assert detector.sample_rate == 16000
    assert (detector.hparams.window, detector.hparams.hop) == (2.0, 1.0)
    expected_bands = species_bands(
        read_rfcx_csv(trained / "synthetic_rfcx" / "train_tp.csv")
    )
    assert detector.species_bands == expected_bands
    (ckpt,) = (_fold(trained) / "save").glob("CKPT+*")
    saved = torch.load(ckpt / "model.ckpt", map_location="cpu")
    for name, value in detector.mods.model.state_dict().items():
        assert torch.equal(value, saved[name]), name
    assert not detector.mods.model.training

    # scoring runs a copy with BatchNorms folded in: same probabilities
    def norms(model):
        return sum(
            isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
            for m in model.modules()
        )

    assert 1 <= norms(detector.scoring_model) < norms(detector.mods.model)
    wavs = torch.randn(2, 64000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        unfolded = torch.sigmoid(detector.mods.model(wavs)["clip_logits"])
    torch.testing.assert_close(
        detector.detect_batch(wavs)["clip_probs"], unfolded, atol=1e-5, rtol=1e-4
    )

    result = detector.detect_file(_test_file(trained))
    assert result["clip_probs"].shape == (24,)
    assert ((result["clip_probs"] >= 0) & (result["clip_probs"] <= 1)).all()
    assert result["frame_probs"].shape == (len(result["frame_times"]), 24)
    assert np.all(np.diff(result["frame_times"]) > 0)
    assert result["frame_times"][-1] < result["duration"] == pytest.approx(6.0)


def test_fold_and_export_detect_after_the_data_is_deleted(trained, tmp_path):
    """A fold folder is a complete detector: the training data is not needed."""
    data = trained / "synthetic_rfcx"
    expected_bands = species_bands(read_rfcx_csv(data / "train_tp.csv"))
    assert expected_bands
    audio = tmp_path / "a.flac"
    shutil.copy(_test_file(trained), audio)
    gone = tmp_path / "gone"
    shutil.move(data, gone)  # as if deleted; put back for the other tests
    try:
        exported = tmp_path / "exported"
        from_fold = SpeciesDetector.from_hparams(str(_fold(trained)))
        from_fold.export(str(exported))
        from_export = SpeciesDetector.from_hparams(str(exported))
        results = []
        for detector in (from_fold, from_export):
            assert detector.species_bands == expected_bands
            assert (detector.hparams.window, detector.hparams.hop) == (2.0, 1.0)
            results.append(detector.detect_file(audio))
        assert results[0]["frame_probs"].shape[1] == 24
        np.testing.assert_array_equal(
            results[0]["frame_probs"], results[1]["frame_probs"]
        )
    finally:
        shutil.move(gone, data)


def test_interface_imports_nothing_of_the_recipe_plumbing():
    code = (
        "import sys, speechbrain_rfcx.interface; "
        "print(sorted(m for m in sys.modules if m.startswith('speechbrain_rfcx')))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    # nor the training augmentations (test-time speed change: speechbrain_rfcx.speed)
    for plumbing in ("experiment", "data.synthetic", "data.prepare", "augment"):
        assert f"speechbrain_rfcx.{plumbing}'" not in run.stdout, plumbing


def _copy_with_extra_checkpoint(trained, tmp_path, lwlrap):
    """A copy of the fold whose second checkpoint has zero weights."""
    copy = tmp_path / "copy"
    shutil.copytree(trained / "small_cpu" / "1", copy)
    save = copy / "fold0" / "save"
    (original,) = save.glob("CKPT+*")
    other = save / "CKPT+2099-01-01+00-00-00+00"
    shutil.copytree(original, other)
    state = torch.load(other / "model.ckpt", map_location="cpu")
    torch.save({k: torch.zeros_like(v) for k, v in state.items()}, other / "model.ckpt")
    meta = (other / "CKPT.yaml").read_text().splitlines()
    meta = [f"lwlrap: {lwlrap}" if m.startswith("lwlrap:") else m for m in meta]
    (other / "CKPT.yaml").write_text("\n".join(meta) + "\n")
    return copy / "fold0"


@pytest.mark.parametrize("other_lwlrap, zero_weights", [(-1.0, False), (2.0, True)])
def test_checkpoint_with_the_best_lwlrap_is_loaded(
    trained, tmp_path, other_lwlrap, zero_weights
):
    fold = _copy_with_extra_checkpoint(trained, tmp_path, other_lwlrap)
    detector = SpeciesDetector.from_hparams(str(fold))
    weights = [
        v for v in detector.mods.model.state_dict().values() if v.is_floating_point()
    ]
    all_zero = all(bool((w == 0).all()) for w in weights)
    assert all_zero == zero_weights


def test_export_reloads_to_identical_outputs(trained, tmp_path):
    exported = tmp_path / "exported"
    detector = SpeciesDetector.from_hparams(str(_fold(trained)), savedir=str(exported))
    assert sorted(p.name for p in exported.iterdir()) == ["detector.yaml", "model.ckpt"]
    assert str(trained) not in (exported / "detector.yaml").read_text()
    moved = tmp_path / "elsewhere"
    shutil.move(exported, moved)  # self-contained: works from any place
    reloaded = SpeciesDetector.from_hparams(str(moved))
    assert reloaded.species_bands == detector.species_bands
    assert (reloaded.hparams.window, reloaded.hparams.hop) == (2.0, 1.0)
    path = _test_file(trained)
    a = detector.detect_file(path, tta=("shift",))
    b = reloaded.detect_file(path, tta=("shift",))
    np.testing.assert_array_equal(a["clip_probs"], b["clip_probs"])
    np.testing.assert_array_equal(a["frame_probs"], b["frame_probs"])
    wavs = torch.randn(2, 16000, generator=torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(
        detector.detect_batch(wavs)["clip_probs"],
        reloaded.detect_batch(wavs)["clip_probs"],
    )


def test_bad_folders_are_rejected(trained, tmp_path):
    with pytest.raises(ModelFolderError, match="neither detector.yaml"):
        SpeciesDetector.from_hparams(str(tmp_path))
    fold = tmp_path / "fold"
    fold.mkdir()
    shutil.copy(_fold(trained) / "hyperparams.yaml", fold)
    with pytest.raises(ModelFolderError, match="no checkpoint"):
        SpeciesDetector.from_hparams(str(fold))
    exported = tmp_path / "exported"
    SpeciesDetector.from_hparams(str(_fold(trained))).export(str(exported))
    (exported / "model.ckpt").unlink()
    with pytest.raises(ModelFolderError, match="model.ckpt is missing"):
        SpeciesDetector.from_hparams(str(exported))


# --- stand-in model: exact, fast ---------------------------------------------

RATE = 1000


class ToneDetector(torch.nn.Module):
    """One class: amplitude of 100 Hz in 0.1 s frames, logit 20 * (a - 0.4)."""

    def forward(self, wavs, lens=None):
        frames = wavs[:, : wavs.shape[1] // 100 * 100].reshape(wavs.shape[0], -1, 100)
        amplitude = torch.fft.rfft(frames).abs()[..., 10:11] * 2 / 100
        logits = 20.0 * (amplitude - 0.4)
        return {"clip_logits": logits.amax(1), "frame_logits": logits}


@pytest.fixture
def standin_module(monkeypatch):
    module = types.ModuleType("rfcx_interface_standin")
    module.ToneDetector = ToneDetector
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return module.__name__


def _standin(module_name, **hparams):
    settings = dict(sample_rate=RATE, window=2.0, hop=1.0, n_classes=1)
    settings.update(hparams)
    settings["model_yaml"] = f"model: !new:{module_name}.ToneDetector\n"
    return SpeciesDetector(
        modules={"model": ToneDetector()}, hparams=settings, run_opts={"device": "cpu"}
    )


def test_reads_audio_at_the_model_rate_and_downmixes(tmp_path, standin_module):
    """A 2 kHz stereo file: the tone is found where it was planted."""
    t = np.arange(8000) / 2000
    tone = 0.8 * np.sin(2 * np.pi * 100 * t) * ((t >= 1.0) & (t < 2.5))
    stereo = np.stack([tone, tone], axis=1).astype("float32")
    sf.write(tmp_path / "a.wav", stereo, 2000, subtype="FLOAT")
    result = _standin(standin_module).detect_file(tmp_path / "a.wav")
    assert result["frame_probs"].shape == (40, 1)
    above = result["frame_times"][result["frame_probs"][:, 0] > 0.5]
    assert above.min() == pytest.approx(1.05) and above.max() == pytest.approx(2.45)


def test_defaults_come_from_hparams_and_export_of_standin(tmp_path, standin_module):
    t = np.arange(5000) / RATE
    sf.write(
        tmp_path / "a.wav",
        (0.8 * np.sin(2 * np.pi * 100 * t)).astype("float32"),
        RATE,
        subtype="FLOAT",
    )
    detector = _standin(standin_module, species_bands={0: [100.0, 150.0]})
    expected = score_file(ToneDetector(), str(tmp_path / "a.wav"), RATE, 2.0, 1.0)
    got = detector.detect_file(tmp_path / "a.wav")
    np.testing.assert_array_equal(got["frame_probs"], expected["frame_probs"])
    reloaded = SpeciesDetector.from_hparams(detector.export(str(tmp_path / "x")))
    assert reloaded.species_bands == {0: (100.0, 150.0)}
    both = ensemble_detect_file([detector, reloaded], tmp_path / "a.wav")
    np.testing.assert_allclose(both["frame_probs"], expected["frame_probs"])
    with pytest.raises(ValueError, match="hop must be a positive"):
        _standin(standin_module, hop=0.0)


def test_torchscript_backbone_cached_same_outputs_and_weights(
    trained, tmp_path, monkeypatch, caplog
):
    """``torchscript=True`` (rfcx-detect's default on the CPU): the timm
    backbone runs frozen, cached per weights; scores equal the eager model's
    within float rounding, the weights (export, fingerprint) are unchanged,
    a cached start imports no timm, a broken cache file is made again."""
    from speechbrain_rfcx.cli import detect_main
    from speechbrain_rfcx.models.torchscript import load_frozen

    cache = tmp_path / "cache"
    monkeypatch.setenv("RFCX_CACHE_DIR", str(cache))
    fold = str(_fold(trained))
    audio = tmp_path / "rec" / "field.wav"
    audio.parent.mkdir()
    rng = np.random.default_rng(3)
    sf.write(audio, 0.1 * rng.standard_normal(16000 * 7), 16000)

    eager = SpeciesDetector.from_hparams(fold)
    assert not eager.mods.model.backbone_is_frozen
    first = SpeciesDetector.from_hparams(fold, torchscript=True)
    assert first.mods.model.backbone_is_frozen
    (cached,) = cache.glob("*.torchscript.pt")
    second = SpeciesDetector.from_hparams(fold, torchscript=True)
    assert second.mods.model.backbone_is_frozen
    expected = eager.detect_file(audio)
    for detector in (first, second):
        got = detector.detect_file(audio)
        np.testing.assert_allclose(
            got["frame_probs"], expected["frame_probs"], atol=1e-5
        )
        np.testing.assert_allclose(got["clip_probs"], expected["clip_probs"], atol=1e-5)
        state = detector.mods.model.state_dict()
        assert sorted(state) == sorted(eager.mods.model.state_dict())
        for name, value in eager.mods.model.state_dict().items():
            assert torch.equal(state[name], value), name
    exported = SpeciesDetector.from_hparams(
        second.export(tmp_path / "exported"), torchscript=False
    )
    np.testing.assert_allclose(
        exported.detect_file(audio)["clip_probs"], expected["clip_probs"], atol=1e-6
    )
    with pytest.raises(RuntimeError, match="frozen TorchScript"):
        second.mods.model.train()
    bf16 = SpeciesDetector.from_hparams(
        fold, run_opts={"device": "cpu", "precision": "bf16"}, torchscript=True
    )
    assert bf16.mods.model.backbone.bf16 and len(list(cache.glob("*.pt"))) == 2
    np.testing.assert_allclose(
        bf16.detect_file(audio)["clip_probs"], expected["clip_probs"], atol=0.02
    )

    # a start from the cache never imports timm
    probe = (
        "import sys\nfrom speechbrain_rfcx.interface import SpeciesDetector\n"
        f"d = SpeciesDetector.from_hparams({fold!r}, torchscript=True)\n"
        "print(d.mods.model.backbone_is_frozen, 'timm' in sys.modules)\n"
    )
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert run.stdout.split() == ["True", "False"], run.stderr[-2000:]

    # rfcx-detect: the same clip scores frozen and with --eager
    scores = {}
    for name, extra in (("frozen", []), ("eager", ["--eager"])):
        out = tmp_path / name
        assert detect_main([str(audio.parent), "--model", fold, "--out", str(out),
                            "--format", "csv", *extra]) == 0  # fmt: skip
        scores[name] = np.loadtxt(out / "clip_scores.csv", delimiter=",",
                                  skiprows=1, usecols=range(1, 25))  # fmt: skip
    np.testing.assert_allclose(scores["frozen"], scores["eager"], atol=2e-6)

    cached.write_bytes(b"not a TorchScript file")
    with caplog.at_level("WARNING"):
        again = SpeciesDetector.from_hparams(fold, torchscript=True)
    assert "cannot use the cached TorchScript backbone" in caplog.text
    assert again.mods.model.backbone_is_frozen
    assert load_frozen(cached).num_features > 0  # made again
    np.testing.assert_allclose(
        again.detect_file(audio)["clip_probs"], expected["clip_probs"], atol=1e-5
    )

    # a cache that cannot be written: said, and frozen in memory all the same
    blocked = tmp_path / "a_file"
    blocked.write_text("")
    monkeypatch.setenv("RFCX_CACHE_DIR", str(blocked / "cache"))
    caplog.clear()
    with caplog.at_level("WARNING"):
        unsaved = SpeciesDetector.from_hparams(fold, torchscript=True)
    assert "cannot cache the TorchScript backbone" in caplog.text
    assert unsaved.mods.model.backbone_is_frozen
