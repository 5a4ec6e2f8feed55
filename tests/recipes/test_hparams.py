"""Every hparams file loads, builds its model, and its loss fits the model."""

import pathlib

import pytest
import torch
from hyperpyyaml import load_hyperpyyaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
RECIPE_HPARAMS = sorted((ROOT / "recipes" / "RFCX" / "hparams").glob("*.yaml"))
MODEL_BLOCKS = sorted((ROOT / "hparams" / "models").glob("*.yaml"))


def test_the_recipe_has_the_promised_settings():
    names = {p.stem for p in RECIPE_HPARAMS}
    assert {
        "efficientnet_b0",
        "panns_cnn14",
        "conformer",
        "transformer",
        "small_cpu",
        "cpu_fullband",
    } <= names


@pytest.mark.parametrize("path", RECIPE_HPARAMS, ids=lambda p: p.stem)
def test_recipe_hparams_build_a_model_that_trains(path, tmp_path):
    with open(path) as f:
        hparams = load_hyperpyyaml(f, {"output_root": str(tmp_path)})
    model, loss = hparams["model"], hparams["loss"]
    assert hparams["modules"]["model"] is model
    rate = hparams["sample_rate"]
    wavs = torch.randn(2, rate) * 0.1
    lens = torch.tensor([1.0, 0.8])
    out = model(wavs, lens)
    c = hparams["n_classes"]
    assert out["clip_logits"].shape == (2, c)
    t = hparams["frame_targets"]
    targets = {
        "clip_target": torch.tensor([[1.0] + [0.0] * (c - 1)] * 2),
        "frame_target": torch.zeros(2, t, c),
        "frame_mask": torch.zeros(2, t),
        "label_mask": torch.ones(2, c),
        "frame_label_mask": torch.ones(2, t, c),
        "lens": lens,
    }
    total, parts = loss(out, targets)  # embedding_dim of the loss fits the model
    total.backward()
    assert torch.isfinite(total) and set(parts) >= {"clip"}
    assert hparams["valid_window"] > 0 and hparams["crop_seconds"] > 0


@pytest.mark.parametrize("path", MODEL_BLOCKS, ids=lambda p: p.stem)
def test_model_blocks_build_with_overrides(path):
    with open(path) as f:
        block = load_hyperpyyaml(
            f, {"n_classes": 5, "sample_rate": 16000, "n_mels": 64}
        )
    out = block["model"](torch.randn(1, 16000))
    assert out["clip_logits"].shape == (1, 5)
    assert out["embedding"].shape[1] == block["model"].embedding_dim
