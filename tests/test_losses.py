"""Tests for speechbrain_rfcx.losses: expected values are computed by hand."""

import math

import pytest
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.checkpoints import Checkpointer

from speechbrain_rfcx.losses import (
    CentreLoss,
    ClipBCE,
    FocalBCE,
    FrameBCE,
    FrameMaskBCE,
    SEDLoss,
    align_frames,
)


def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def bce(x, y, pos_weight=1.0):
    """Plain-math BCE of one logit x against target y."""
    p = sigmoid(x)
    return -(pos_weight * y * math.log(p) + (1.0 - y) * math.log(1.0 - p))


def focal(x, y, gamma, alpha=None):
    """Plain-math focal loss of one logit x against a binary target y."""
    p = sigmoid(x)
    p_true = p if y == 1 else 1.0 - p
    weight = 1.0 if alpha is None else (alpha if y == 1 else 1.0 - alpha)
    return -weight * (1.0 - p_true) ** gamma * math.log(p_true)


# ---------------------------------------------------------------- helpers


def test_align_frames_max_pools_over_covered_frames():
    x = torch.tensor([[0.0, 0.0, 1.0, 0.0, 0.0, 0.3]])
    assert align_frames(x, 3).tolist() == [[0.0, 1.0, pytest.approx(0.3)]]
    # 5 -> 2 frames: bins [0, 3) and [2, 5) overlap on frame 2
    assert align_frames(torch.tensor([[0.0, 0.0, 1.0, 0.0, 0.0]]), 2).tolist() == [
        [1.0, 1.0]
    ]
    assert align_frames(torch.tensor([[1.0, 0.0, 0.0, 0.0, 0.0]]), 2).tolist() == [
        [1.0, 0.0]
    ]
    # upsampling repeats frames
    assert align_frames(torch.tensor([[0.2, 0.7]]), 4).tolist() == [
        [pytest.approx(0.2), pytest.approx(0.2), pytest.approx(0.7)]
        + [pytest.approx(0.7)]
    ]


def test_align_frames_keeps_trailing_dims_and_dtype():
    x = torch.zeros(2, 4, 3)
    x[0, 3, 1] = 1.0
    x[1, 0, 2] = 1.0
    out = align_frames(x, 2)
    expected = torch.zeros(2, 2, 3)
    expected[0, 1, 1] = 1.0
    expected[1, 0, 2] = 1.0
    assert torch.equal(out, expected)
    bool_mask = torch.tensor([[False, True, False, False]])
    out_bool = align_frames(bool_mask, 2)
    assert out_bool.dtype == torch.bool
    assert out_bool.tolist() == [[True, False]]
    assert align_frames(x, 4) is x


def test_align_frames_rejects_bad_input():
    with pytest.raises(ValueError, match="n_frames"):
        align_frames(torch.zeros(1, 4), 0)
    with pytest.raises(ValueError, match=r"\(B, T"):
        align_frames(torch.zeros(4), 2)


# ---------------------------------------------------------------- clip losses


def test_clip_bce_hand_value_and_pos_weight():
    logits = [[0.5, -1.0], [2.0, 0.0]]
    target = [[1.0, 0.0], [0.25, 1.0]]
    outputs = {"clip_logits": torch.tensor(logits)}
    targets = {"clip_target": torch.tensor(target)}
    cells = [
        (x, y) for row_x, row_y in zip(logits, target) for x, y in zip(row_x, row_y)
    ]
    expected = sum(bce(x, y) for x, y in cells) / 4
    assert ClipBCE()(outputs, targets).item() == pytest.approx(expected, rel=1e-6)

    pos_weight = [3.0, 0.5]
    expected_pw = (
        sum(
            bce(x, y, pos_weight[j])
            for row_x, row_y in zip(logits, target)
            for j, (x, y) in enumerate(zip(row_x, row_y))
        )
        / 4
    )
    value = ClipBCE(pos_weight=pos_weight)(outputs, targets).item()
    assert value == pytest.approx(expected_pw, rel=1e-6)
    with pytest.raises(ValueError, match="pos_weight"):
        ClipBCE(pos_weight=[1.0, 2.0, 3.0])(outputs, targets)
    with pytest.raises(ValueError, match="pos_weight"):
        ClipBCE(pos_weight=-1.0)


def test_masked_clip_bce_ignores_unlabelled_cells():
    logits = torch.tensor([[0.5, -1.0, 3.0], [2.0, 0.0, -4.0]], requires_grad=True)
    target = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    label_mask = torch.tensor([[1.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    targets = {"clip_target": target, "label_mask": label_mask}
    loss = ClipBCE(masked=True)({"clip_logits": logits}, targets)
    expected = (bce(0.5, 1.0) + bce(3.0, 0.0) + bce(2.0, 0.0)) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-6)

    loss.backward()
    unknown = label_mask == 0
    assert torch.all(logits.grad[unknown] == 0)
    assert torch.all(logits.grad[~unknown] != 0)

    changed = logits.detach().clone()
    changed[unknown] = torch.tensor([50.0, -30.0, 7.0])
    loss_changed = ClipBCE(masked=True)({"clip_logits": changed}, targets)
    assert loss_changed.item() == loss.item()


def test_unlabelled_weight_counts_unlabelled_cells_as_weak_negatives():
    logits = torch.tensor([[0.5, -1.0, 3.0], [2.0, 0.0, -4.0]])
    target = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    label_mask = torch.tensor([[1.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    targets = {"clip_target": target, "label_mask": label_mask}
    outputs = {"clip_logits": logits}
    loss = ClipBCE(masked=True, unlabelled_weight=0.25)(outputs, targets)
    known = bce(0.5, 1.0) + bce(3.0, 0.0) + bce(2.0, 0.0)
    # unlabelled cells are negatives (their target is 0), a quarter weight each
    unknown = bce(-1.0, 0.0) + bce(0.0, 0.0) + bce(-4.0, 0.0)
    expected = (known + 0.25 * unknown) / (3 + 0.25 * 3)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # the two ends: 0 is the masked loss, 1 the plain (TP-only) loss
    assert ClipBCE(masked=True, unlabelled_weight=0.0)(outputs, targets).item() == (
        pytest.approx(ClipBCE(masked=True)(outputs, targets).item())
    )
    assert ClipBCE(masked=True, unlabelled_weight=1.0)(outputs, targets).item() == (
        pytest.approx(ClipBCE()(outputs, targets).item())
    )
    with pytest.raises(ValueError, match="unlabelled_weight"):
        ClipBCE(masked=True, unlabelled_weight=1.5)


def test_masked_clip_bce_with_no_known_cell_is_zero_without_nan():
    logits = torch.randn(2, 3, generator=torch.Generator().manual_seed(0))
    logits.requires_grad_(True)
    targets = {"clip_target": torch.ones(2, 3), "label_mask": torch.zeros(2, 3)}
    for loss_fn in (ClipBCE(masked=True), FocalBCE(masked=True)):
        logits.grad = None
        loss = loss_fn({"clip_logits": logits}, targets)
        loss.backward()
        assert loss.item() == 0.0
        assert torch.all(logits.grad == 0)


def test_clip_bce_errors_name_the_field():
    outputs = {"clip_logits": torch.zeros(2, 3)}
    with pytest.raises(ValueError, match="clip_target"):
        ClipBCE()(outputs, {"clip_target": torch.zeros(2, 4)})
    with pytest.raises(ValueError, match="label_mask"):
        ClipBCE(masked=True)(outputs, {"clip_target": torch.zeros(2, 3)})
    with pytest.raises(ValueError, match="clip_logits"):
        ClipBCE()({}, {"clip_target": torch.zeros(2, 3)})


def test_focal_bce_with_gamma_zero_equals_bce():
    gen = torch.Generator().manual_seed(1)
    outputs = {"clip_logits": torch.randn(4, 5, generator=gen) * 3}
    targets = {
        "clip_target": torch.rand(4, 5, generator=gen),
        "label_mask": (torch.rand(4, 5, generator=gen) > 0.5).float(),
    }
    for masked in (False, True):
        focal_value = FocalBCE(gamma=0.0, masked=masked)(outputs, targets)
        bce_value = ClipBCE(masked=masked)(outputs, targets)
        assert focal_value.item() == pytest.approx(bce_value.item(), rel=1e-6)


def test_focal_bce_hand_value():
    logits = [[1.5, -0.5], [-2.0, 0.3]]
    target = [[1.0, 0.0], [1.0, 1.0]]
    outputs = {"clip_logits": torch.tensor(logits)}
    targets = {"clip_target": torch.tensor(target)}
    cells = [
        (x, y) for row_x, row_y in zip(logits, target) for x, y in zip(row_x, row_y)
    ]
    for alpha in (None, 0.25):
        expected = sum(focal(x, y, 2.0, alpha) for x, y in cells) / 4
        value = FocalBCE(gamma=2.0, alpha=alpha)(outputs, targets).item()
        assert value == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="gamma"):
        FocalBCE(gamma=-1.0)
    with pytest.raises(ValueError, match="alpha"):
        FocalBCE(alpha=1.5)


# ---------------------------------------------------------------- frame losses


def test_frame_bce_aligns_targets_and_honours_lens():
    # T = 4 target frames -> T' = 2 model frames, one class
    frame_target = torch.tensor(
        [[[0.0], [1.0], [0.0], [0.0]], [[0.0], [0.0], [1.0], [0.0]]]
    )
    logits = torch.tensor([[[0.5], [-1.0]], [[2.0], [1.0]]], requires_grad=True)
    targets = {"frame_target": frame_target, "lens": torch.tensor([1.0, 0.5])}
    loss = FrameBCE()({"frame_logits": logits}, targets)
    # aligned targets: crop 0 -> [1, 0]; crop 1 -> [0, 1] but its frame 1 is padding
    expected = (bce(0.5, 1.0) + bce(-1.0, 0.0) + bce(2.0, 0.0)) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert logits.grad[1, 1, 0] == 0
    assert torch.all(logits.grad[0] != 0) and logits.grad[1, 0, 0] != 0


def test_masked_frame_bce_uses_frame_label_mask():
    frame_target = torch.zeros(1, 4, 2)
    frame_target[0, 0, 0] = 1.0
    known = torch.zeros(1, 4, 2)
    known[0, 0:2, 0] = 1.0  # a TP box of class 0 on target frames 0-1
    known[0, 3, 1] = 1.0  # an FP box of class 1 on target frame 3
    logits = torch.tensor([[[0.7, -0.2], [1.1, 0.4]]], requires_grad=True)
    targets = {
        "frame_target": frame_target,
        "frame_label_mask": known,
        "lens": torch.ones(1),
    }
    loss = FrameBCE(masked=True)({"frame_logits": logits}, targets)
    # known model cells: (frame 0, class 0) target 1 and (frame 1, class 1) target 0
    expected = (bce(0.7, 1.0) + bce(0.4, 0.0)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert logits.grad[0, 0, 1] == 0 and logits.grad[0, 1, 0] == 0
    with pytest.raises(ValueError, match="frame_label_mask"):
        FrameBCE(masked=True)({"frame_logits": logits}, {"frame_target": frame_target})


def test_frame_mask_bce_hand_value_and_gradients():
    loss_fn = FrameMaskBCE(n_classes=2)
    with torch.no_grad():
        loss_fn.any_species.weight.copy_(torch.tensor([[1.0, -2.0]]))
        loss_fn.any_species.bias.fill_(0.5)
    logits = torch.tensor(
        [[[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]], [[0.5, 0.5], [-1.0, 0.0], [0.0, 0.0]]],
        requires_grad=True,
    )
    frame_mask = torch.tensor(
        [[1.0, 0.0, 0.0, 0.0, 1.0, 1.0], [0.0, 1.0, 0.0] + [0.0] * 3]
    )
    targets = {"frame_mask": frame_mask, "lens": torch.tensor([1.0, 0.5])}
    loss = loss_fn({"frame_logits": logits}, targets)

    def any_logit(a, b):
        return 1.0 * a - 2.0 * b + 0.5

    # aligned masks (6 -> 3 frames): crop 0 [1, 0, 1]; crop 1 [1, 0, 0], 2 frames valid
    expected = (
        bce(any_logit(1.0, 0.0), 1.0)
        + bce(any_logit(0.0, 1.0), 0.0)
        + bce(any_logit(2.0, 2.0), 1.0)
        + bce(any_logit(0.5, 0.5), 1.0)
        + bce(any_logit(-1.0, 0.0), 0.0)
    ) / 5
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert torch.all(logits.grad[1, 2] == 0)
    assert torch.all(logits.grad[1, :2] != 0)
    assert loss_fn.any_species.weight.grad is not None
    assert any(p is loss_fn.any_species.weight for p in loss_fn.parameters())
    with pytest.raises(ValueError, match="frame_logits"):
        FrameMaskBCE(n_classes=3)({"frame_logits": logits}, targets)
    with pytest.raises(ValueError, match="frame_mask"):
        loss_fn({"frame_logits": logits}, {"frame_mask": torch.zeros(3, 6)})


# ---------------------------------------------------------------- centre loss


def make_centre_loss():
    loss_fn = CentreLoss(n_classes=3, embedding_dim=2)
    with torch.no_grad():
        loss_fn.centres.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [-2.0, 0.0]]))
    return loss_fn


def test_centre_loss_hand_value():
    loss_fn = make_centre_loss()
    embedding = torch.tensor([[1.0, 2.0], [0.0, 1.0], [5.0, 5.0]])
    clip_target = torch.tensor(
        [
            [1.0, 0.0, 0.0],  # class 0: 1 + 4 = 5
            [0.0, 0.9, 0.6],  # classes 1, 2: (1 + 0 + 4 + 1) / 2 = 3
            [0.0, 0.4, 0.0],  # no positive (0.4 < 0.5): ignored
        ]
    )
    loss = loss_fn({"embedding": embedding}, {"clip_target": clip_target})
    assert loss.item() == pytest.approx((5.0 + 3.0) / 2)


def test_centre_loss_without_positives_is_zero():
    loss_fn = make_centre_loss()
    embedding = torch.ones(2, 2, requires_grad=True)
    loss = loss_fn({"embedding": embedding}, {"clip_target": torch.zeros(2, 3)})
    loss.backward()
    assert loss.item() == 0.0
    assert torch.all(embedding.grad == 0)
    assert torch.all(loss_fn.centres.grad == 0)


def test_centre_loss_errors_name_the_field():
    loss_fn = make_centre_loss()
    with pytest.raises(ValueError, match="embedding"):
        loss_fn({"embedding": torch.zeros(2, 5)}, {"clip_target": torch.zeros(2, 3)})
    with pytest.raises(ValueError, match="clip_target"):
        loss_fn({"embedding": torch.zeros(2, 2)}, {"clip_target": torch.zeros(2, 4)})


def test_centres_move_towards_embeddings_after_to():
    torch.manual_seed(0)
    loss_fn = CentreLoss(n_classes=3, embedding_dim=4).to(torch.float64)
    assert loss_fn.centres.dtype == torch.float64
    optimizer = torch.optim.Adam(loss_fn.parameters(), lr=0.1)
    embedding = torch.tensor([[2.0, 0.0, 1.0, -1.0], [0.0, 3.0, 0.0, 1.0]]).double()
    targets = {"clip_target": torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])}
    start = loss_fn.centres.detach().clone()
    losses = []
    for _ in range(5):
        optimizer.zero_grad()
        loss = loss_fn({"embedding": embedding}, targets)
        loss.backward()
        assert loss_fn.centres.grad.abs().sum() > 0
        optimizer.step()
        losses.append(loss.item())
    moved = (loss_fn.centres.detach() - start).abs().sum(dim=1)
    assert moved[0] > 0 and moved[2] > 0
    assert moved[1] == 0  # no crop of class 1: its centre gets no gradient
    assert all(later < earlier for earlier, later in zip(losses, losses[1:]))


def test_centres_survive_state_dict_and_checkpointer(tmp_path):
    torch.manual_seed(0)
    trained = CentreLoss(n_classes=3, embedding_dim=4)
    assert "centres" in trained.state_dict()
    fresh = CentreLoss(n_classes=3, embedding_dim=4)
    assert not torch.equal(fresh.centres, trained.centres)
    fresh.load_state_dict(trained.state_dict())
    assert torch.equal(fresh.centres, trained.centres)

    loss = SEDLoss({"centre": trained})
    checkpointer = Checkpointer(tmp_path, recoverables={"loss": loss})
    checkpointer.save_checkpoint()
    saved = trained.centres.detach().clone()
    with torch.no_grad():
        trained.centres.add_(1.0)
    restored = SEDLoss({"centre": CentreLoss(n_classes=3, embedding_dim=4)})
    Checkpointer(tmp_path, recoverables={"loss": restored}).recover_if_possible()
    assert torch.equal(restored.terms["centre"].centres, saved)


# ---------------------------------------------------------------- combination


def make_batch():
    gen = torch.Generator().manual_seed(3)
    outputs = {
        "clip_logits": torch.randn(2, 3, generator=gen),
        "frame_logits": torch.randn(2, 4, 3, generator=gen),
        "embedding": torch.randn(2, 5, generator=gen),
    }
    targets = {
        "clip_target": torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]),
        "frame_target": (torch.rand(2, 8, 3, generator=gen) > 0.7).float(),
        "frame_mask": (torch.rand(2, 8, generator=gen) > 0.5).float(),
        "label_mask": torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]]),
        "frame_label_mask": torch.ones(2, 8, 3),
        "lens": torch.tensor([1.0, 0.75]),
    }
    return outputs, targets


def test_sed_loss_is_the_weighted_sum_of_its_terms():
    torch.manual_seed(0)
    terms = {
        "clip": ClipBCE(masked=True),
        "frame": FrameBCE(),
        "frame_mask": FrameMaskBCE(n_classes=3),
        "centre": CentreLoss(n_classes=3, embedding_dim=5),
    }
    outputs, targets = make_batch()
    separate = {name: term(outputs, targets).item() for name, term in terms.items()}
    loss = SEDLoss(terms, {"clip": 2.0, "frame_mask": 0.5, "centre": 0.01})
    total, parts = loss(outputs, targets)
    expected = (
        2.0 * separate["clip"]
        + separate["frame"]
        + 0.5 * separate["frame_mask"]
        + 0.01 * separate["centre"]
    )
    assert total.item() == pytest.approx(expected, rel=1e-6)
    assert {name: value.item() for name, value in parts.items()} == pytest.approx(
        separate, rel=1e-6
    )
    assert all(not value.requires_grad for value in parts.values())
    parameters = list(loss.parameters())
    assert any(p is terms["centre"].centres for p in parameters)
    assert any(p is terms["frame_mask"].any_species.weight for p in parameters)


def test_sed_loss_rejects_unknown_weight():
    with pytest.raises(ValueError, match="centre"):
        SEDLoss({"clip": ClipBCE()}, {"centre": 1.0})
    with pytest.raises(ValueError, match="clip"):
        SEDLoss({"clip": lambda outputs, targets: 0.0})


def test_sed_loss_builds_from_hyperpyyaml():
    yaml = """
loss: !new:speechbrain_rfcx.losses.SEDLoss
    terms:
        clip: !new:speechbrain_rfcx.losses.ClipBCE
        frame_mask: !new:speechbrain_rfcx.losses.FrameMaskBCE
            n_classes: 3
        centre: !new:speechbrain_rfcx.losses.CentreLoss
            n_classes: 3
            embedding_dim: 5
    weights:
        clip: 1.0
        frame_mask: 0.5
        centre: 5.0e-5
"""
    loss = load_hyperpyyaml(yaml)["loss"]
    outputs, targets = make_batch()
    total, parts = loss(outputs, targets)
    expected = parts["clip"] + 0.5 * parts["frame_mask"] + 5.0e-5 * parts["centre"]
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
