"""SEDBrain: optimisers for model and loss parameters, whole-recording scoring."""

import functools

import pytest
import torch

from speechbrain_rfcx.brain import SEDBrain
from speechbrain_rfcx.losses import CentreLoss, ClipBCE, SEDLoss
from speechbrain_rfcx.models import create_model


def _brain(loss_opt_class, model=None, **extra_hparams):
    model = model or create_model(
        "crnn_sed",
        n_classes=3,
        sample_rate=8000,
        n_fft=256,
        hop_length=80,
        n_mels=32,
        channels=(4,),
        time_pooling=(2,),
        hidden=4,
    )
    loss = SEDLoss({"clip": ClipBCE(), "centre": CentreLoss(3, model.embedding_dim)})
    hparams = {
        "seed": 1,
        "augment": None,
        "loss_opt_class": loss_opt_class,
        "lr_scheduler": functools.partial(torch.optim.lr_scheduler.StepLR, step_size=2),
        "sample_rate": 8000,
        "valid_window": 1.0,
        "valid_hop": 0.5,
        "valid_batch_windows": 4,
        **extra_hparams,
    }
    brain = SEDBrain(
        modules={"model": model, "loss": loss},
        opt_class=functools.partial(torch.optim.Adam, lr=1e-3),
        hparams=hparams,
        run_opts={"device": "cpu"},
    )
    brain.init_optimizers()
    return brain, model, loss


def _ids(params):
    return {id(p) for p in params}


def test_centres_get_their_own_optimiser():
    brain, model, loss = _brain(functools.partial(torch.optim.Adam, lr=1e-4))
    model_opt, loss_opt = brain.optimizers_dict["model"], brain.optimizers_dict["loss"]
    assert _ids(model_opt.param_groups[0]["params"]) == _ids(model.parameters())
    assert _ids(loss_opt.param_groups[0]["params"]) == _ids(loss.parameters())
    assert loss_opt.param_groups[0]["lr"] == 1e-4
    assert brain.lr_scheduler.optimizer is model_opt


def test_without_a_loss_optimiser_everything_trains_together():
    brain, model, loss = _brain(None)
    assert set(brain.optimizers_dict) == {"model"}
    params = brain.optimizer.param_groups[0]["params"]
    assert _ids(params) == _ids(model.parameters()) | _ids(loss.parameters())


def test_validation_scores_whole_recordings_by_their_best_window():
    brain, model, _ = _brain(None)
    model.eval()
    wavs = 0.01 * torch.randn(2, 8000 * 3)
    lens = torch.tensor([1.0, 0.5])
    scores = brain.score(wavs, lens)
    assert scores["clip_logits"].shape == (2, 3)
    assert [w.shape[0] for w in scores["window_logits"]] == [5, 2]
    for b, windows in enumerate(scores["window_logits"]):
        assert torch.equal(scores["clip_logits"][b], windows.amax(0))
    alone = brain.score(wavs[1:, : 8000 * 3 // 2], torch.ones(1))["clip_logits"]
    torch.testing.assert_close(alone[0], scores["clip_logits"][1])


@pytest.mark.parametrize("full_pass", [True, False])
def test_valid_full_pass_chooses_one_pass_or_every_window(full_pass):
    cnn = create_model(
        "panns_cnn14",
        n_classes=3,
        sample_rate=8000,
        n_fft=256,
        hop_length=80,
        n_mels=32,
        channels=(4, 8),
    ).eval()
    brain, model, _ = _brain(None, model=cnn, valid_full_pass=full_pass)
    shapes = []
    model.register_forward_hook(lambda m, args, out: shapes.append(args[0].shape))
    scores = brain.score(0.01 * torch.randn(2, 8000 * 3), torch.tensor([1.0, 0.5]))
    if full_pass:  # the batch of recordings, once (padded to whole frames)
        assert shapes == [(2, 24000)]
    else:  # 5 + 2 windows of 1 s, 4 per pass
        assert shapes == [(4, 8000), (3, 8000)]
    assert [w.shape[0] for w in scores["window_logits"]] == [5, 2]
