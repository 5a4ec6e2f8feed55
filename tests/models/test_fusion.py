"""BatchNorm folding: same outputs, fewer layers, never a silent change."""

import pytest
import torch
from torch import nn

from speechbrain_rfcx.models import create_model
from speechbrain_rfcx.models.fusion import conv_bn_pairs, fold_batch_norms

SR = 16000
COMMON = dict(n_classes=5, sample_rate=SR, n_fft=512, hop_length=128, n_mels=32)


def randomize_norms(model):
    """Trained-looking BatchNorm statistics and affine parameters."""
    gen = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=gen))
            module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=gen))
    return model


def count_norms(model):
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@pytest.mark.parametrize(
    "name, options",
    [
        ("timm_sed", dict(backbone="test_efficientnet")),
        ("panns_cnn14", dict(channels=(8, 16, 16))),
        ("crnn_sed", dict(channels=(8, 16, 16), hidden=8)),
    ],
)
def test_folded_model_gives_the_same_outputs(name, options):
    torch.manual_seed(0)
    model = randomize_norms(create_model(name, **COMMON, **options)).eval()
    keys, norms = set(model.state_dict()), count_norms(model)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    probe = torch.randn(1, SR)
    folded, n_folded = fold_batch_norms(model, probe, torch.ones(1))
    assert n_folded > 0
    assert count_norms(folded) == count_norms(model) - n_folded
    assert count_norms(model) > count_norms(folded) >= 1  # bn0 reads features
    # another input, a batch with padding: still the same outputs
    wavs = torch.randn(2, 2 * SR)
    lens = torch.tensor([1.0, 0.6])
    with torch.no_grad():
        expected, got = model(wavs, lens), folded(wavs, lens)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], atol=1e-4, rtol=1e-4)
    # the original is untouched (it is what gets exported)
    assert set(model.state_dict()) == keys and count_norms(model) == norms
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())


class SharedConvOutput(nn.Module):
    """The convolution's output feeds the BatchNorm *and* a residual sum:
    folding the norm into the convolution would change the residual."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(2, 2, 3, padding=1)
        self.bn = nn.BatchNorm1d(2)

    def forward(self, x):
        y = self.conv(x)
        return self.bn(y) + y


def test_a_fold_that_changes_outputs_is_refused_with_a_warning():
    model = randomize_norms(SharedConvOutput()).eval()
    x = torch.randn(1, 2, 16)
    assert conv_bn_pairs(model, x) == [("conv", "bn")]
    with pytest.warns(UserWarning, match="running the model unfolded"):
        folded, n_folded = fold_batch_norms(model, x)
    assert folded is model and n_folded == 0


def test_training_mode_is_refused():
    with pytest.raises(ValueError, match="eval mode"):
        fold_batch_norms(nn.Sequential(nn.Conv1d(1, 1, 1), nn.BatchNorm1d(1)), None)
