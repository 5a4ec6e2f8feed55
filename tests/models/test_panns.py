"""Loading official PANNs CNN14 checkpoints (fake ones with the official layout)."""

import pytest
import torch

from speechbrain_rfcx.models import PANNsCNN14, create_model, load_panns_checkpoint

CHANNELS = [1, 64, 128, 256, 512, 1024, 2048]
AUDIOSET_CLASSES = 527
FEATURES = dict(sample_rate=16000, n_fft=512, hop_length=128)


def bn_state(prefix, size, gen):
    return {
        f"{prefix}.weight": torch.rand(size, generator=gen) + 0.5,
        f"{prefix}.bias": torch.randn(size, generator=gen),
        f"{prefix}.running_mean": torch.randn(size, generator=gen),
        f"{prefix}.running_var": torch.rand(size, generator=gen) + 0.5,
        f"{prefix}.num_batches_tracked": torch.tensor(1234),
    }


def official_state_dict(variant, seed=0):
    """Key names and shapes of the official Cnn14 / Cnn14_DecisionLevelAtt
    (32 kHz, window 1024, 64 mel bins, 527 AudioSet classes), random values."""
    gen = torch.Generator().manual_seed(seed)
    state = {
        "spectrogram_extractor.stft.conv_real.weight": torch.randn(
            513, 1, 1024, generator=gen
        ),
        "spectrogram_extractor.stft.conv_imag.weight": torch.randn(
            513, 1, 1024, generator=gen
        ),
        "logmel_extractor.melW": torch.rand(513, 64, generator=gen),
    }
    state.update(bn_state("bn0", 64, gen))
    for block in range(1, 7):
        c_in, c_out = CHANNELS[block - 1], CHANNELS[block]
        prefix = f"conv_block{block}"
        state[f"{prefix}.conv1.weight"] = torch.randn(c_out, c_in, 3, 3, generator=gen)
        state[f"{prefix}.conv2.weight"] = torch.randn(c_out, c_out, 3, 3, generator=gen)
        state.update(bn_state(f"{prefix}.bn1", c_out, gen))
        state.update(bn_state(f"{prefix}.bn2", c_out, gen))
    state["fc1.weight"] = torch.randn(2048, 2048, generator=gen)
    state["fc1.bias"] = torch.randn(2048, generator=gen)
    if variant == "Cnn14":
        state["fc_audioset.weight"] = torch.randn(AUDIOSET_CLASSES, 2048, generator=gen)
        state["fc_audioset.bias"] = torch.randn(AUDIOSET_CLASSES, generator=gen)
    else:
        for layer in ("att", "cla"):
            state[f"att_block.{layer}.weight"] = torch.randn(
                AUDIOSET_CLASSES, 2048, 1, generator=gen
            )
            state[f"att_block.{layer}.bias"] = torch.randn(
                AUDIOSET_CLASSES, generator=gen
            )
        state.update(bn_state("att_block.bn_att", AUDIOSET_CLASSES, gen))
    return state


def our_name(official_key):
    """The mapping documented by load_panns_checkpoint, written out by hand."""
    renames = {
        "fc1.": "neck.fc1.",
        "att_block.att.": "head.att.",
        "att_block.cla.": "head.cla.",
    }
    for old, new in renames.items():
        if official_key.startswith(old):
            return new + official_key[len(old) :]
    return official_key


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("panns")
    files = {}
    for variant in ("Cnn14", "Cnn14_DecisionLevelAtt"):
        state = official_state_dict(variant)
        path = folder / f"{variant}.pth"
        torch.save({"model": state, "iteration": 600000}, path)
        files[variant] = (path, state)
    return files


@pytest.mark.parametrize(
    "variant, n_mels, n_classes",
    [
        ("Cnn14", 64, 24),
        ("Cnn14", 128, 24),
        ("Cnn14_DecisionLevelAtt", 64, 24),
        ("Cnn14_DecisionLevelAtt", 128, AUDIOSET_CLASSES),
    ],
)
def test_official_checkpoint_loads(checkpoints, variant, n_mels, n_classes):
    path, file_state = checkpoints[variant]
    torch.manual_seed(0)
    model = PANNsCNN14(n_classes=n_classes, n_mels=n_mels, **FEATURES)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = load_panns_checkpoint(model, path)
    after = model.state_dict()

    bn0_keys = {k for k in before if k.startswith("bn0.")}
    head_keys = {k for k in before if k.startswith("head.")}
    expected_replaced = set()
    if n_mels != 64:
        expected_replaced |= bn0_keys
    if variant == "Cnn14" or n_classes != AUDIOSET_CLASSES:
        expected_replaced |= head_keys
    assert set(report["replaced"]) == expected_replaced
    assert report["adapted"] == []
    assert set(report["loaded"]) | expected_replaced == set(before)
    assert not set(report["loaded"]) & expected_replaced

    frontend = {k for k in file_state if k.split(".")[0].endswith("_extractor")}
    unused_head = (
        {"fc_audioset.weight", "fc_audioset.bias"}
        if variant == "Cnn14"
        else {k for k in file_state if k.startswith("att_block.bn_att.")}
    )
    mismatched = {k for k in file_state if our_name(k) in expected_replaced}
    assert set(report["ignored"]) == frontend | unused_head | mismatched

    official_of = {our_name(k): k for k in file_state}
    for key in report["loaded"]:
        assert torch.equal(after[key], file_state[official_of[key]]), key
    for key in expected_replaced:
        assert torch.equal(after[key], before[key]), key


def test_frequency_channel_adapts_first_conv(checkpoints):
    path, file_state = checkpoints["Cnn14_DecisionLevelAtt"]
    model = create_model(
        "panns_cnn14",
        n_classes=24,
        n_mels=64,
        frequency_channel=True,
        pretrained_path=path,
        **FEATURES,
    )
    report = model.pretrained_report
    assert report["adapted"] == ["conv_block1.conv1.weight"]
    weight = model.conv_block1.conv1.weight.detach()
    assert weight.shape == (64, 2, 3, 3)
    assert torch.equal(weight[:, :1], file_state["conv_block1.conv1.weight"])
    assert torch.equal(weight[:, 1:], torch.zeros(64, 1, 3, 3))
    assert torch.equal(
        model.conv_block6.conv2.weight, file_state["conv_block6.conv2.weight"]
    )


def test_bad_checkpoints_raise(tmp_path):
    model = PANNsCNN14(n_classes=2, n_mels=32, **FEATURES)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_panns_checkpoint(model, tmp_path / "missing.pth")
    no_conv = tmp_path / "no_conv.pth"
    torch.save({"model": {"fc1.bias": torch.zeros(2048)}}, no_conv)
    with pytest.raises(ValueError, match="conv_block1"):
        load_panns_checkpoint(model, no_conv)
    not_a_state = tmp_path / "list.pth"
    torch.save([1, 2, 3], not_a_state)
    with pytest.raises(ValueError, match="state dict"):
        load_panns_checkpoint(model, not_a_state)
