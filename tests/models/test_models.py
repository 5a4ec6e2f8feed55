"""Contract tests over every registered model, plus head and registry tests."""

import math

import pytest
import torch
from torch import nn

from speechbrain_rfcx.losses import FrameBCE, FrameMaskBCE
from speechbrain_rfcx.models import (
    AttentionSEDHead,
    SEDNeck,
    create_model,
    list_models,
    register_model,
)

SR = 16000
N_SAMPLES = 2 * SR
COMMON = dict(n_classes=5, sample_rate=SR, n_fft=512, hop_length=128, n_mels=32)
TINY = {
    "timm_sed": dict(backbone="test_efficientnet"),
    "panns_cnn14": dict(),
    "conformer_sed": dict(d_model=32, nhead=2, num_layers=2, d_ffn=64, kernel_size=7),
    "transformer_sed": dict(d_model=32, nhead=2, num_layers=2, d_ffn=64),
    "crnn_sed": dict(channels=(8, 16, 16), hidden=8),
}
# model frames from feature frames: strided "same" convs round up (timm,
# SpeechBrain front end: 5 and 2 halvings), CNN14's 2x2 average pools round down
MODEL_FRAMES = {
    "timm_sed": lambda t: math.ceil(t / 32),
    "panns_cnn14": lambda t: t // 32,
    "conformer_sed": lambda t: math.ceil(math.ceil(t / 2) / 2),
    "transformer_sed": lambda t: math.ceil(math.ceil(t / 2) / 2),
    "crnn_sed": lambda t: t // 2 // 2,
}


def build(name, **kwargs):
    torch.manual_seed(0)
    options = dict(COMMON, **TINY[name])
    options.update(kwargs)
    return create_model(name, **options)


def batch_with_padding():
    """Two items: a full one and one with 60 % valid samples (noise padding)."""
    gen = torch.Generator().manual_seed(1)
    wavs = 0.1 * torch.randn(2, N_SAMPLES, generator=gen)
    short = int(0.6 * N_SAMPLES)
    lens = torch.tensor([1.0, short / N_SAMPLES])
    return wavs, lens, short


def test_timm_sed_defaults_are_the_original_research_model():
    model = create_model("timm_sed").eval()
    assert model.n_classes == 24 and model.pooling == "attention_max"
    assert model.backbone.default_cfg["architecture"] == "efficientnet_b0"
    assert model.neck.fc1.out_features == 1280
    assert (model.features.sample_rate, model.features.n_mels) == (48000, 128)
    with torch.no_grad():
        out = model(torch.randn(1, 48000))
    # 94 feature frames -> 3 frames after the stride-32 backbone
    assert out["frame_logits"].shape == (1, 3, 24)


def test_registry_has_the_model_families():
    assert {
        "timm_sed",
        "panns_cnn14",
        "conformer_sed",
        "transformer_sed",
        "crnn_sed",
    } <= set(list_models())
    assert set(list_models()) <= set(TINY), "add a tiny config for the new model"


@pytest.mark.parametrize("frequency_channel", [False, True])
@pytest.mark.parametrize("name", list_models())
def test_model_contract(name, frequency_channel):
    model = build(name, frequency_channel=frequency_channel)
    assert model.in_channels == (2 if frequency_channel else 1)
    wavs, lens, short = batch_with_padding()

    model.train()
    out = model(wavs, lens)
    expected_keys = {"clip_logits", "frame_logits", "embedding"}
    if model.head.att is not None:
        expected_keys.add("attention_logits")
    assert set(out) == expected_keys
    n_frames = model.features.n_frames(N_SAMPLES)
    expected_frames = MODEL_FRAMES[name](n_frames)
    assert out["clip_logits"].shape == (2, 5)
    assert out["frame_logits"].shape == (2, expected_frames, 5)
    assert out["embedding"].shape == (2, model.head.cla.in_channels)
    for value in out.values():
        assert torch.isfinite(value).all()

    loss = sum(value.pow(2).mean() for value in out.values())
    loss.backward()
    # the first layer (input normalisation) gets a gradient: the whole graph
    # from features to all outputs is connected
    assert model.bn0.weight.grad.abs().sum() > 0
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    assert not unused, f"parameters without gradient (DDP would fail): {unused}"

    model.eval()
    with torch.no_grad():
        first = model(wavs, lens)
        second = model(wavs, lens)
        silent_pad = wavs.clone()
        silent_pad[1, short:] = 0.0
        other_pad = model(silent_pad, lens)
    with torch.inference_mode():
        inferred = model(wavs, lens)
    for key in first:
        assert torch.equal(first[key], second[key]), f"{key} not deterministic"
        assert torch.equal(first[key], inferred[key]), key
        # what the padding contains never changes the padded item's outputs
        assert torch.equal(first[key][1], other_pad[key][1]), key


@pytest.mark.parametrize("name", list_models())
def test_frame_losses_never_count_a_frame_the_model_masked(name, monkeypatch):
    model = build(name).eval()
    with torch.no_grad():
        n_out = model(torch.zeros(1, N_SAMPLES))["frame_logits"].shape[1]
    # relative lengths just before and just after output-frame boundaries,
    # where two roundings of ``lens * n_frames`` disagree
    edges = torch.linspace(1, n_out - 1, min(n_out - 1, 6)).round()
    lens = torch.cat([(edges - 0.002) / n_out, (edges + 0.002) / n_out, torch.ones(1)])
    wavs = 0.1 * torch.randn(
        len(lens), N_SAMPLES, generator=torch.Generator().manual_seed(2)
    )
    masks = []
    pool = model.head.pool

    def recording_pool(frame_logits, attention_logits=None, mask=None):
        masks.append(mask)
        return pool(frame_logits, attention_logits, mask)

    monkeypatch.setattr(model.head, "pool", recording_pool)
    with torch.no_grad():
        out = model(wavs, lens)
    (model_valid,) = masks
    assert model_valid.shape == out["frame_logits"].shape[:2]
    targets = {
        "frame_target": torch.ones(len(lens), 2 * n_out, 5),
        "frame_mask": torch.ones(len(lens), 2 * n_out),
        "lens": lens,
    }
    for loss in (FrameBCE(), FrameMaskBCE(n_classes=5)):
        logits = out["frame_logits"].clone().requires_grad_()
        loss({"frame_logits": logits}, targets).backward()
        counted = logits.grad.abs().sum(-1) > 0
        assert counted.any(1).all()
        assert not (counted & ~model_valid.bool()).any(), type(loss).__name__


@pytest.mark.parametrize("name", ["conformer_sed", "transformer_sed"])
@pytest.mark.parametrize("pooling", ["attention_max", "cls"])
def test_encoder_models_ignore_padding_length(name, pooling):
    model = build(name, pooling=pooling).eval()
    wavs, lens, short = batch_with_padding()
    with torch.no_grad():
        padded = model(wavs, lens)["clip_logits"][1]
        alone = model(wavs[1:, :short])["clip_logits"][0]
        other = model(wavs[:1])["clip_logits"][0]
    # Only the boundary frames differ (STFT window, conv kernels): the change
    # is far below the difference between two recordings.
    assert (padded - alone).abs().max() < 0.3 * (other - alone).abs().max()


def test_cls_pooling_uses_the_cls_frame():
    model = build("transformer_sed", pooling="cls").eval()
    assert model.cls_token is not None and model.head.att is None
    wavs, lens, _ = batch_with_padding()
    with torch.no_grad():
        feats, rel = model.compute_features(wavs, lens)
        encoded = model.encode(feats, rel)
        out = model(wavs, lens)
    assert encoded.shape[1] == out["frame_logits"].shape[1] + 1
    assert torch.allclose(out["embedding"], encoded[:, 0])
    expected = encoded[:, 0] @ model.head.cla.weight[:, :, 0].T + model.head.cla.bias
    assert torch.allclose(out["clip_logits"], expected, atol=1e-5)


class RecordingZeroAugment(nn.Module):
    """Records the shapes it sees and replaces the features with zeros."""

    def __init__(self):
        super().__init__()
        self.shapes = []

    def forward(self, feats):
        self.shapes.append(tuple(feats.shape))
        return torch.zeros_like(feats)


def test_feature_augment_only_in_training():
    augment = RecordingZeroAugment()
    model = build("timm_sed", dropout=0.0, feature_augment=augment)
    plain = build("timm_sed", dropout=0.0)
    plain.load_state_dict(model.state_dict())
    wavs = torch.randn(2, N_SAMPLES)
    other = torch.randn(2, N_SAMPLES)

    model.eval()
    plain.eval()
    with torch.no_grad():
        assert torch.equal(model(wavs)["clip_logits"], plain(wavs)["clip_logits"])
    assert augment.shapes == []

    model.train()
    with torch.no_grad():
        a, b = model(wavs)["clip_logits"], model(other)["clip_logits"]
    # features of shape (B, T, F); zeroed features make the inputs irrelevant
    assert augment.shapes == [(2, model.features.n_frames(N_SAMPLES), 32)] * 2
    assert torch.allclose(a, b)


def test_feature_augment_must_keep_the_shape():
    model = build("timm_sed", feature_augment=lambda feats: feats[:, :-1]).train()
    with pytest.raises(ValueError, match="feature_augment"):
        model(torch.randn(2, N_SAMPLES))


def hand_pooled(cla, att, pooling):
    """Clip logit of one class from python lists of valid-frame values."""
    weights = [math.exp(math.tanh(a)) for a in att]
    weights = [w / sum(weights) for w in weights]
    if pooling == "attention_max":
        return max(w * c for w, c in zip(weights, cla))
    if pooling == "attention_sum":
        prob = sum(w / (1 + math.exp(-c)) for w, c in zip(weights, cla))
        return math.log(prob / (1 - prob))
    if pooling == "max":
        return max(cla)
    return sum(cla) / len(cla)


@pytest.mark.parametrize("pooling", ["attention_max", "attention_sum", "max", "mean"])
def test_head_pooling_matches_hand_computation(pooling):
    head = AttentionSEDHead(2, 2, pooling=pooling)
    with torch.no_grad():
        # class 0: cla = x0, att = x1; class 1: cla = -x0 + 0.5, att = 2 * x1
        head.cla.weight.copy_(torch.tensor([[[1.0], [0.0]], [[-1.0], [0.0]]]))
        head.cla.bias.copy_(torch.tensor([0.0, 0.5]))
        if head.att is not None:
            head.att.weight.copy_(torch.tensor([[[0.0], [1.0]], [[0.0], [2.0]]]))
            head.att.bias.zero_()
    x0 = [0.3, -1.2, 2.0, 50.0]
    x1 = [0.1, 0.8, -0.4, 50.0]  # the last frame is padding
    x = torch.tensor([list(zip(x0, x1))])
    mask = torch.tensor([[1, 1, 1, 0]])
    clip, frames = head(x, mask)
    assert torch.allclose(frames[0, :, 0], torch.tensor(x0))
    assert torch.allclose(frames[0, :, 1], 0.5 - torch.tensor(x0))
    expected = [
        hand_pooled(x0[:3], x1[:3], pooling),
        hand_pooled([0.5 - v for v in x0[:3]], [2 * v for v in x1[:3]], pooling),
    ]
    assert torch.allclose(clip[0], torch.tensor(expected), atol=1e-5)
    # without a mask every frame counts, the padded one included
    clip_all, _ = head(x)
    assert clip_all[0, 0] != clip[0, 0]


def test_attention_sum_logit_is_finite_when_saturated():
    head = AttentionSEDHead(1, 1, pooling="attention_sum")
    with torch.no_grad():
        head.cla.weight.fill_(1.0)
        head.cla.bias.zero_()
    clip, _ = head(torch.tensor([[[1e4], [1e4]]]))
    assert torch.isfinite(clip).all() and clip.item() > 10


def test_neck_is_freq_mean_then_max_plus_avg_pool_then_fc():
    neck = SEDNeck(1, 1, dropout=0.0)
    with torch.no_grad():
        neck.fc1.weight.fill_(1.0)
        neck.fc1.bias.fill_(0.0)
    # (B=1, D=1, T=3, F=2): frequency means are 1, 3, 8
    fmap = torch.tensor([[[[0.0, 2.0], [3.0, 3.0], [6.0, 10.0]]]])
    out = neck(fmap)
    # max over (pad, 1, 3) + avg with zero padding counted (1+3)/3, etc.
    expected = [3 + 4 / 3, 8 + 12 / 3, 8 + 11 / 3]
    assert torch.allclose(out[0, :, 0], torch.tensor(expected))


def test_frequency_aware_neck_keeps_where_in_the_spectrum():
    neck = SEDNeck(1, 2, dropout=0.0, frequency_bins=2)
    assert neck.fc1.in_features == 2
    with torch.no_grad():
        neck.fc1.weight.copy_(torch.eye(2))
        neck.fc1.bias.zero_()
    # the same pattern in the low or the high frequency row: a mean over
    # frequency cannot tell them apart, the flattening neck can
    low = torch.tensor([[[[5.0, 0.0], [5.0, 0.0], [5.0, 0.0]]]])
    high = low.flip(-1)
    mean_neck = SEDNeck(1, 1, dropout=0.0)
    assert torch.equal(mean_neck(low), mean_neck(high))
    out_low, out_high = neck(low), neck(high)
    assert out_low[0, 1, 0] > 0 and out_low[0, 1, 1] == 0
    assert out_high[0, 1, 1] > 0 and out_high[0, 1, 0] == 0
    with pytest.raises(ValueError, match=r"time, 2\) feature maps"):
        neck(torch.zeros(1, 1, 3, 4))
    with pytest.raises(ValueError, match="frequency_bins"):
        SEDNeck(1, 1, frequency_bins=0)


def test_timm_sed_frequency_pooling_options():
    model = build("timm_sed", frequency_pooling="flatten")
    # 32 mels leave one frequency row after the stride-32 backbone, 64 two
    wide = build("timm_sed", frequency_pooling="flatten", n_mels=64)
    assert wide.neck.frequency_bins == 2
    assert wide.neck.fc1.in_features == 2 * wide.backbone.num_features
    with torch.no_grad():
        out = wide.eval()(torch.randn(1, SR))
    assert out["clip_logits"].shape == (1, 5)
    assert model.neck.frequency_bins == 1
    # probing the feature map's size leaves the BatchNorm statistics untouched
    norms = [m for m in wide.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(int(m.num_batches_tracked) == 0 for m in norms)
    assert wide.backbone.training is False  # eval() above; fresh models train
    assert build("timm_sed", frequency_pooling="flatten").backbone.training
    with pytest.raises(ValueError, match="frequency_pooling"):
        build("timm_sed", frequency_pooling="max")


def test_input_checks():
    model = build("transformer_sed")
    with pytest.raises(ValueError, match="lens"):
        model(torch.randn(2, 8000), torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="lens"):
        model(torch.randn(2, 8000), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="wavs"):
        model(torch.randn(8000))


def test_registry_errors():
    with pytest.raises(ValueError, match="unknown model"):
        create_model("no_such_model")
    with pytest.raises(ValueError, match="already registered"):
        register_model("timm_sed")(nn.Linear)
    with pytest.raises(ValueError, match="pooling"):
        build("timm_sed", pooling="median")
    with pytest.raises(ValueError, match="n_mels"):
        build("panns_cnn14", n_mels=16)


def test_timm_pretrained_path_loads_local_weights(tmp_path):
    import timm

    torch.manual_seed(3)
    source = timm.create_model("test_efficientnet", pretrained=False)
    path = tmp_path / "test_efficientnet.pth"
    torch.save(source.state_dict(), path)

    model = build("timm_sed", pretrained_path=path)
    loaded = model.backbone.state_dict()
    expected = source.state_dict()
    assert set(loaded) == set(expected) - {"classifier.weight", "classifier.bias"}
    for key, value in loaded.items():
        if key == "conv_stem.weight":
            # one input channel: timm sums the RGB filters
            assert torch.allclose(value, expected[key].sum(1, keepdim=True))
        else:
            assert torch.equal(value, expected[key]), key

    with pytest.raises(FileNotFoundError, match="pretrained_path"):
        build("timm_sed", pretrained_path=tmp_path / "missing.pth")


def test_channels_last_backbone_gives_the_same_outputs():
    reference = build("timm_sed", channels_last=False).eval()
    fast = build("timm_sed", channels_last=True).eval()
    fast.load_state_dict(reference.state_dict())
    conv = next(m for m in fast.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    wavs, lens, _ = batch_with_padding()
    with torch.no_grad():
        expected, got = reference(wavs, lens), fast(wavs, lens)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("frequency_pooling", ["mean", "flatten"])
def test_frozen_torchscript_backbone_loads_without_timm_and_checks_weights(
    tmp_path, frequency_pooling
):
    from speechbrain_rfcx.models.torchscript import save_frozen

    trained = build("timm_sed", frequency_pooling=frequency_pooling).eval()
    for module in trained.modules():  # BatchNorm statistics worth folding
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    state = trained.state_dict()
    wavs, lens, _ = batch_with_padding()
    with torch.no_grad():
        expected = trained(wavs, lens)
    path = tmp_path / "backbone.pt"
    save_frozen(trained.freeze_backbone(), path)
    assert trained.backbone_is_frozen and sorted(trained.state_dict()) == sorted(state)

    loaded = build("timm_sed", frequency_pooling=frequency_pooling,
                   torchscript_backbone=str(path))  # fmt: skip
    loaded.load_state_dict(state)
    loaded.eval()
    with torch.no_grad():
        got = loaded(wavs, lens)
    for key in ("clip_logits", "frame_logits", "embedding"):
        torch.testing.assert_close(got[key], expected[key], rtol=1e-4, atol=1e-5)
    for name, value in loaded.state_dict().items():
        assert torch.equal(value, state[name]), name

    other = dict(state)
    name = next(k for k in other if k.startswith("backbone.") and k.endswith("weight"))
    other[name] = other[name] + 1.0
    with pytest.raises(ValueError, match="not those of the frozen"):
        loaded.load_state_dict(other)
    with pytest.raises(RuntimeError, match="cannot|frozen"):
        loaded.train()


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="no oneDNN")
def test_frozen_backbone_runs_every_convolution_through_onednn():
    """One thread per file is how rfcx-detect scores: the frozen graph's
    convolutions (1x1 ones included) all call oneDNN, with the same results;
    a graph with ``padding="same"`` is left as it is."""
    from speechbrain_rfcx.models.torchscript import freeze_backbone

    model = build("timm_sed").eval()
    n_convs = sum(isinstance(m, nn.Conv2d) for m in model.backbone.modules())
    feats = torch.randn(2, 1, 40, 32).contiguous(memory_format=torch.channels_last)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            expected = model.backbone.forward_features(feats)
            frozen = model.freeze_backbone()
            got = frozen(feats)
    finally:
        torch.set_num_threads(before)

    def count(graph, kind):
        return len(graph.findAllNodes(kind))

    assert count(frozen.graph, "aten::conv2d") == 0
    assert count(frozen.graph, "aten::mkldnn_convolution") >= n_convs
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)

    class Same(nn.Sequential):
        def forward_features(self, x):
            return self.forward(x)

    same = Same(nn.Conv2d(1, 4, 3, padding="same"), nn.Conv2d(4, 4, 1)).eval()
    frozen = freeze_backbone(same, 4, 1)
    assert count(frozen.graph, "aten::conv2d") >= 2
    assert count(frozen.graph, "aten::mkldnn_convolution") == 0
    x = torch.randn(1, 1, 8, 8)
    torch.testing.assert_close(frozen(x), same(x), rtol=1e-4, atol=1e-5)


def test_frame_hop_is_declared_by_frame_local_models_only():
    hops = {name: build(name).frame_hop for name in list_models()}
    assert hops == {
        "timm_sed": 128 * 32,
        "panns_cnn14": 128 * 32,
        "conformer_sed": None,
        "transformer_sed": None,
        "crnn_sed": None,
    }
    # a per-input dB floor makes every frame depend on the whole input
    assert build("panns_cnn14", top_db=80.0).frame_hop is None


def test_frame_local_model_frames_depend_on_nearby_audio_only():
    """Frames of a chunk cut at a frame boundary equal the whole input's frames
    away from the chunk's edges: what whole-recording inference relies on."""
    model = build("panns_cnn14", channels=(4, 8, 8)).eval()
    hop = model.frame_hop  # 128 samples x 4
    wav = 0.1 * torch.randn(1, 4 * SR, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        whole = model(wav)["frame_logits"][0]
        first = 20
        chunk = model(wav[:, first * hop : (first + 60) * hop])["frame_logits"][0]
    torch.testing.assert_close(
        chunk[15:45], whole[first + 15 : first + 45], atol=1e-4, rtol=1e-4
    )
    # off the frame grid (200 samples) the frames no longer line up
    with torch.no_grad():
        shifted = model(wav[:, first * hop + 200 : (first + 60) * hop + 200])
    assert not torch.allclose(
        shifted["frame_logits"][0, 15:45], whole[first + 15 : first + 45], atol=1e-4
    )
