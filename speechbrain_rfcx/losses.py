"""Losses for sound-event detection of species in soundscapes.

Every loss is a small ``torch.nn.Module`` called as ``loss(outputs, targets)``,
where ``outputs`` is the model contract dict (``clip_logits`` (B, C),
``frame_logits`` (B, T', C), ``embedding`` (B, D)) and ``targets`` the batch
targets dict of the contract declared in ``speechbrain_rfcx.data.crops``
(``clip_target``, ``frame_target``, ``frame_mask``, ``label_mask``,
``frame_label_mask``, and ``lens``). :class:`SEDLoss` sums any of them with weights,
so a recipe picks its loss in hyperpyyaml.

Frame targets have their own time resolution T; they are aligned to the model's
T' frames with :func:`align_frames` (a model frame is positive if any target
frame it covers is positive). Frames past a crop's valid length (``lens``) never
contribute; they are the frames the model masks, by the same rule
(:func:`speechbrain_rfcx.frames.frame_mask`). Masked variants average only over
cells whose label is known (TP -> 1, FP -> 0, unlabelled ignored); with no known
cell the loss is 0 with a zero gradient, never NaN.

Authors
 * speechbrain-rfcx contributors
"""

import math

import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss

from speechbrain_rfcx.frames import frame_mask

__all__ = [
    "align_frames",
    "ClipBCE",
    "FocalBCE",
    "FrameBCE",
    "FrameMaskBCE",
    "CentreLoss",
    "SEDLoss",
]


def align_frames(x, n_frames):
    """Aligns frame-level targets to ``n_frames`` frames by adaptive max pooling.

    Output frame ``i`` takes the maximum over the input frames it covers, so a
    model frame is positive when any target frame under it is positive. With
    ``n_frames`` larger than T, frames are repeated.

    Arguments
    ---------
    x : torch.Tensor
        Frame values, shape (B, T, ...) (e.g. (B, T) masks or (B, T, C) targets).
    n_frames : int
        Number of output frames (the model's T').

    Returns
    -------
    torch.Tensor
        Shape (B, n_frames, ...), same dtype as ``x``.

    Example
    -------
    >>> x = torch.tensor([[0.0, 1.0, 0.0, 0.0, 0.0, 0.5]])
    >>> align_frames(x, 3)
    tensor([[1.0000, 0.0000, 0.5000]])
    """
    if x.dim() < 2:
        raise ValueError(
            f"align_frames needs x of shape (B, T, ...), got {tuple(x.shape)}"
        )
    n_frames = int(n_frames)
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    if x.shape[1] == n_frames:
        return x
    batch, n_in = x.shape[:2]
    rest = x.shape[2:]
    values = x if x.is_floating_point() else x.float()
    # (B, T, *rest) -> (B * prod(rest), 1, T): pool each channel over time
    channels = values.reshape(batch, n_in, -1).transpose(1, 2)
    pooled = F.adaptive_max_pool1d(channels, n_frames)
    pooled = pooled.transpose(1, 2).reshape(batch, n_frames, *rest)
    return pooled.to(x.dtype)


def _get(mapping, key, owner, kind="targets"):
    """Fetches ``mapping[key]`` or raises a ValueError naming the missing key."""
    if key not in mapping:
        raise ValueError(
            f"{owner} needs {kind}['{key}'], which is missing "
            f"(got keys {sorted(mapping)})"
        )
    return mapping[key]


def _check_same_shape(a, b, name_a, name_b):
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} has shape {tuple(a.shape)} but {name_b} has shape "
            f"{tuple(b.shape)}; they must match"
        )


def _weighted_mean(values, weights):
    """sum(w * v) / sum(w); 0 with zero gradient when all weights are 0."""
    total = weights.sum()
    tiny = torch.finfo(values.dtype).tiny
    return (values * weights).sum() / total.clamp_min(tiny)


def _clip_cell_mean(cell_loss, targets, masked, name, unlabelled_weight=0.0):
    """Mean of a (B, C) clip loss over every cell, or with ``masked`` over the
    known cells (``label_mask`` = 1: TP or FP), unlabelled cells weighing
    ``unlabelled_weight``."""
    if not masked:
        return cell_loss.mean()
    label_mask = _get(targets, "label_mask", f"{name}(masked=True)")
    _check_same_shape(label_mask, cell_loss, "label_mask", "clip_logits")
    known = label_mask.to(cell_loss.dtype)
    return _weighted_mean(cell_loss, known + unlabelled_weight * (1.0 - known))


def _frame_weights(targets, n_frames, batch, owner):
    """Valid-frame mask (B, n_frames) from targets['lens'] (all 1 if absent)."""
    lens = targets.get("lens")
    if lens is None:
        return torch.ones(batch, n_frames)
    if lens.shape != (batch,):
        raise ValueError(
            f"{owner}: targets['lens'] has shape {tuple(lens.shape)}, "
            f"expected ({batch},)"
        )
    return frame_mask(lens, n_frames)


class ClipBCE(torch.nn.Module):
    """Binary cross-entropy of clip logits against clip targets.

    Arguments
    ---------
    pos_weight : float, list or torch.Tensor, optional
        Weight of positive examples, one per class or a single value (see
        ``torch.nn.functional.binary_cross_entropy_with_logits``).
    masked : bool
        If True, only (crop, species) cells with ``label_mask`` = 1 contribute
        (TP = 1, FP = 0, unlabelled ignored); the loss is the mean over those
        cells (soft mask values act as weights).
    unlabelled_weight : float
        With ``masked``, the weight of the unlabelled cells, which count as
        negatives (target 0): 0 ignores them, 1 is TP-only supervision. A
        small weight keeps a weak "most species are absent" prior while the
        many unlabelled calls of real data barely count against their species.

    Example
    -------
    >>> loss = ClipBCE(masked=True)
    >>> outputs = {"clip_logits": torch.zeros(1, 2)}
    >>> targets = {
    ...     "clip_target": torch.tensor([[1.0, 0.0]]),
    ...     "label_mask": torch.tensor([[1.0, 0.0]]),
    ... }
    >>> round(loss(outputs, targets).item(), 4)  # log(2)
    0.6931
    """

    def __init__(self, pos_weight=None, masked=False, unlabelled_weight=0.0):
        super().__init__()
        self.masked = bool(masked)
        if not 0.0 <= unlabelled_weight <= 1.0:
            raise ValueError(
                f"unlabelled_weight must be in [0, 1], got {unlabelled_weight!r}"
            )
        self.unlabelled_weight = float(unlabelled_weight)
        if pos_weight is not None:
            pos_weight = torch.as_tensor(pos_weight, dtype=torch.float)
            if bool((pos_weight <= 0).any()):
                raise ValueError(f"pos_weight must be > 0, got {pos_weight.tolist()}")
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, outputs, targets):
        """Returns the scalar loss for a batch (see the class docstring)."""
        logits = _get(outputs, "clip_logits", "ClipBCE", "outputs")
        target = _get(targets, "clip_target", "ClipBCE")
        _check_same_shape(logits, target, "clip_logits", "clip_target")
        pos_weight = self.pos_weight
        if pos_weight is not None:
            if pos_weight.numel() not in (1, logits.shape[-1]):
                raise ValueError(
                    f"pos_weight has {pos_weight.numel()} values, expected 1 or "
                    f"{logits.shape[-1]} (one per class)"
                )
            pos_weight = pos_weight.to(logits.dtype)
        cell_loss = F.binary_cross_entropy_with_logits(
            logits, target.to(logits.dtype), pos_weight=pos_weight, reduction="none"
        )
        return _clip_cell_mean(
            cell_loss, targets, self.masked, "ClipBCE", self.unlabelled_weight
        )


class FocalBCE(torch.nn.Module):
    """Sigmoid focal loss (Lin et al. 2017) of clip logits against clip targets.

    Uses ``torchvision.ops.sigmoid_focal_loss``; with ``gamma=0`` and
    ``alpha=None`` it equals :class:`ClipBCE`.

    Arguments
    ---------
    gamma : float
        Focusing exponent (>= 0): down-weights well-classified cells.
    alpha : float, optional
        Weight of positives in [0, 1] (negatives get 1 - alpha); None: no weight.
    masked : bool
        As in :class:`ClipBCE`: average only over cells with ``label_mask`` = 1.

    Example
    -------
    >>> loss = FocalBCE(gamma=2.0)
    >>> outputs = {"clip_logits": torch.zeros(1, 1)}
    >>> targets = {"clip_target": torch.ones(1, 1)}
    >>> round(loss(outputs, targets).item(), 4)  # 0.5 ** 2 * log(2)
    0.1733
    """

    def __init__(self, gamma=2.0, alpha=None, masked=False):
        super().__init__()
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        if alpha is not None and not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1] or None, got {alpha}")
        self.gamma = float(gamma)
        self.alpha = alpha
        self.masked = bool(masked)

    def forward(self, outputs, targets):
        """Returns the scalar loss for a batch (see the class docstring)."""
        logits = _get(outputs, "clip_logits", "FocalBCE", "outputs")
        target = _get(targets, "clip_target", "FocalBCE")
        _check_same_shape(logits, target, "clip_logits", "clip_target")
        cell_loss = sigmoid_focal_loss(
            logits,
            target.to(logits.dtype),
            alpha=-1 if self.alpha is None else float(self.alpha),
            gamma=self.gamma,
            reduction="none",
        )
        return _clip_cell_mean(cell_loss, targets, self.masked, "FocalBCE")


class FrameBCE(torch.nn.Module):
    """Binary cross-entropy of frame logits against aligned frame targets.

    ``frame_target`` (B, T, C) is aligned to the model's T' frames with
    :func:`align_frames`; frames past each crop's valid length are ignored.
    The loss is the mean over the remaining (frame, species) cells.

    Arguments
    ---------
    masked : bool
        If True, only cells inside a TP or FP box of that species
        (``frame_label_mask`` = 1, aligned like the targets) contribute.

    Example
    -------
    >>> loss = FrameBCE()
    >>> outputs = {"frame_logits": torch.zeros(1, 2, 1)}
    >>> targets = {
    ...     "frame_target": torch.tensor([[[1.0], [0.0], [0.0], [0.0]]]),
    ...     "lens": torch.tensor([1.0]),
    ... }
    >>> round(loss(outputs, targets).item(), 4)  # log(2)
    0.6931
    """

    def __init__(self, masked=False):
        super().__init__()
        self.masked = bool(masked)

    def forward(self, outputs, targets):
        """Returns the scalar loss for a batch (see the class docstring)."""
        logits = _get(outputs, "frame_logits", "FrameBCE", "outputs")
        target = _get(targets, "frame_target", "FrameBCE")
        if logits.dim() != 3 or target.dim() != 3:
            raise ValueError(
                "FrameBCE needs frame_logits and frame_target of shape (B, T, C), "
                f"got {tuple(logits.shape)} and {tuple(target.shape)}"
            )
        batch, n_frames, n_classes = logits.shape
        if target.shape[0] != batch or target.shape[2] != n_classes:
            raise ValueError(
                f"frame_target has shape {tuple(target.shape)}, incompatible with "
                f"frame_logits {tuple(logits.shape)} (batch and classes must match)"
            )
        target = align_frames(target.to(logits.dtype), n_frames)
        cell_loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        valid = _frame_weights(targets, n_frames, batch, "FrameBCE")
        weights = valid.to(logits)[:, :, None].expand_as(cell_loss)
        if self.masked:
            known = _get(targets, "frame_label_mask", "FrameBCE(masked=True)")
            _check_same_shape(
                known, targets["frame_target"], "frame_label_mask", "frame_target"
            )
            weights = weights * align_frames(known.to(logits.dtype), n_frames)
        return _weighted_mean(cell_loss, weights)


class FrameMaskBCE(torch.nn.Module):
    """Frame-mask loss: does any species call in this frame?

    A learned ``Linear(n_classes -> 1)`` maps each frame's logits to one
    "any species calling" logit, trained with BCE against ``frame_mask``
    aligned to the model's frames; frames past each crop's valid length are
    ignored. The linear layer is a parameter of this module: optimise and
    checkpoint the loss module along with the model.

    Arguments
    ---------
    n_classes : int
        Number of species C (size of the frame logits' last dimension).

    Example
    -------
    >>> loss = FrameMaskBCE(n_classes=3)
    >>> outputs = {"frame_logits": torch.randn(2, 4, 3)}
    >>> targets = {"frame_mask": torch.zeros(2, 8), "lens": torch.ones(2)}
    >>> loss(outputs, targets).shape
    torch.Size([])
    """

    def __init__(self, n_classes):
        super().__init__()
        if int(n_classes) < 1:
            raise ValueError(f"n_classes must be >= 1, got {n_classes}")
        self.n_classes = int(n_classes)
        self.any_species = torch.nn.Linear(self.n_classes, 1)

    def forward(self, outputs, targets):
        """Returns the scalar loss for a batch (see the class docstring)."""
        logits = _get(outputs, "frame_logits", "FrameMaskBCE", "outputs")
        frame_mask = _get(targets, "frame_mask", "FrameMaskBCE")
        if logits.dim() != 3 or logits.shape[2] != self.n_classes:
            raise ValueError(
                f"frame_logits must have shape (B, T', {self.n_classes}), "
                f"got {tuple(logits.shape)}"
            )
        batch, n_frames, _ = logits.shape
        if frame_mask.dim() != 2 or frame_mask.shape[0] != batch:
            raise ValueError(
                f"frame_mask must have shape ({batch}, T), "
                f"got {tuple(frame_mask.shape)}"
            )
        any_logit = self.any_species(logits).squeeze(-1)
        target = align_frames(frame_mask.to(any_logit.dtype), n_frames)
        frame_loss = F.binary_cross_entropy_with_logits(
            any_logit, target, reduction="none"
        )
        valid = _frame_weights(targets, n_frames, batch, "FrameMaskBCE")
        return _weighted_mean(frame_loss, valid.to(frame_loss))


class CentreLoss(torch.nn.Module):
    """Centre loss (Wen et al. 2016): pulls clip embeddings to their class centre.

    For each crop, the squared Euclidean distance between its ``embedding`` and
    the centre of each of its positive classes (``clip_target`` >= 0.5) is
    averaged over those classes; the loss is the mean over crops with at least
    one positive (crops without positives contribute nothing; 0 if none has).

    The centres are an ``nn.Parameter`` of shape (n_classes, embedding_dim),
    registered at construction, so ``.to(device)``, ``state_dict`` and
    SpeechBrain's ``Checkpointer`` handle them; give the loss module's
    parameters to an optimiser (e.g. their own Adam) so the centres move.

    Arguments
    ---------
    n_classes : int
        Number of classes C.
    embedding_dim : int
        Size D of the clip embedding.
    init_std : float
        Centres start as N(0, init_std^2) draws; 0 starts them at the origin.

    Example
    -------
    >>> loss = CentreLoss(n_classes=2, embedding_dim=3, init_std=0.0)
    >>> outputs = {"embedding": torch.tensor([[1.0, 2.0, 2.0]])}
    >>> targets = {"clip_target": torch.tensor([[1.0, 0.0]])}
    >>> loss(outputs, targets).item()  # 1 + 4 + 4
    9.0
    """

    def __init__(self, n_classes, embedding_dim, init_std=1.0):
        super().__init__()
        if int(n_classes) < 1 or int(embedding_dim) < 1:
            raise ValueError(
                f"n_classes and embedding_dim must be >= 1, got {n_classes} and "
                f"{embedding_dim}"
            )
        if init_std < 0:
            raise ValueError(f"init_std must be >= 0, got {init_std}")
        self.centres = torch.nn.Parameter(
            torch.randn(int(n_classes), int(embedding_dim)) * float(init_std)
        )

    def forward(self, outputs, targets):
        """Returns the scalar loss for a batch (see the class docstring)."""
        embedding = _get(outputs, "embedding", "CentreLoss", "outputs")
        target = _get(targets, "clip_target", "CentreLoss")
        n_classes, dim = self.centres.shape
        if embedding.dim() != 2 or embedding.shape[1] != dim:
            raise ValueError(
                f"embedding must have shape (B, {dim}), got {tuple(embedding.shape)}"
            )
        if target.shape != (embedding.shape[0], n_classes):
            raise ValueError(
                f"clip_target must have shape ({embedding.shape[0]}, {n_classes}), "
                f"got {tuple(target.shape)}"
            )
        centres = self.centres.to(embedding.dtype)
        # (B, C): squared distance of each embedding to every centre
        sq_dist = (embedding[:, None, :] - centres[None, :, :]).pow(2).sum(-1)
        positives = (target >= 0.5).to(sq_dist.dtype)
        n_pos = positives.sum(dim=1, keepdim=True)
        # each crop with positives weighs 1 in total, shared among its classes
        weights = positives / n_pos.clamp_min(1.0)
        return _weighted_mean(sq_dist, weights)


class SEDLoss(torch.nn.Module):
    """Weighted sum of named loss terms, each called as ``term(outputs, targets)``.

    Arguments
    ---------
    terms : dict
        Name -> loss module (e.g. ``{"clip": ClipBCE(), ...}``). Terms are kept
        in a ``ModuleDict``, so their parameters (frame-mask layer, centres)
        belong to this module.
    weights : dict, optional
        Name -> weight; a term without a weight gets 1.0. A weight whose name
        is not a term raises ValueError.

    Example
    -------
    >>> loss = SEDLoss({"clip": ClipBCE(), "focal": FocalBCE()}, {"focal": 0.5})
    >>> outputs = {"clip_logits": torch.zeros(1, 1)}
    >>> targets = {"clip_target": torch.ones(1, 1)}
    >>> total, parts = loss(outputs, targets)
    >>> round(total.item(), 4), sorted(parts)  # log 2 + 0.5 * 0.25 * log 2
    (0.7798, ['clip', 'focal'])
    """

    def __init__(self, terms, weights=None):
        super().__init__()
        if not terms:
            raise ValueError("SEDLoss needs at least one term")
        weights = dict(weights or {})
        unknown = sorted(set(weights) - set(terms))
        if unknown:
            raise ValueError(
                f"SEDLoss weights name unknown term(s) {unknown}; terms are "
                f"{sorted(terms)}"
            )
        for name, module in terms.items():
            if not isinstance(module, torch.nn.Module):
                raise ValueError(
                    f"SEDLoss term '{name}' must be a torch.nn.Module, "
                    f"got {type(module).__name__}"
                )
        self.terms = torch.nn.ModuleDict(terms)
        self.weights = {}
        for name in terms:
            weight = float(weights.get(name, 1.0))
            if not math.isfinite(weight):
                raise ValueError(
                    f"SEDLoss weight '{name}' must be finite, got {weight}"
                )
            self.weights[name] = weight

    def forward(self, outputs, targets):
        """Returns ``(total, {name: detached unweighted value})``."""
        total = 0.0
        parts = {}
        for name, term in self.terms.items():
            value = term(outputs, targets)
            parts[name] = value.detach()
            total = total + self.weights[name] * value
        return total, parts
