"""Inference-time folding of BatchNorm layers into the convolutions before them.

In eval mode a BatchNorm is a fixed per-channel affine map, so a convolution
followed directly by one equals a single convolution with rescaled weights
and a bias. Folding removes one pass over every feature map: EfficientNet-B0
runs a 60 s recording about 1.8x faster on a 2-core CPU (see
``benchmarks/RESULTS.md``). The pairs are found by running an example input
through the model (no assumption about module order or names), and the folded
model is checked against the original on that input.

Authors
 * speechbrain-rfcx contributors
"""

import copy
import sys
import warnings

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

CONVOLUTIONS = (nn.Conv1d, nn.Conv2d)
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def _timm_batch_norm_act():
    """timm's ``BatchNormAct2d`` (batch norm, dropout, activation), or None
    when timm was never imported: then no model holds one, and models
    without timm load without its import time."""
    layers = sys.modules.get("timm.layers")
    return getattr(layers, "BatchNormAct2d", None)


def _without_norm(bn):
    """What is left of a BatchNorm module once folded away."""
    if type(bn) is _timm_batch_norm_act():
        return nn.Sequential(bn.drop, bn.act)
    return nn.Identity()


def _foldable(bn):
    return (
        type(bn) in BATCH_NORMS or type(bn) is _timm_batch_norm_act()
    ) and bn.track_running_stats


def conv_bn_pairs(model, *example_inputs):
    """Names of (convolution, BatchNorm) pairs where the BatchNorm's input is
    the convolution's output, found by running ``example_inputs``.

    Example
    -------
    >>> net = nn.Sequential(nn.Conv1d(1, 2, 3), nn.BatchNorm1d(2), nn.ReLU())
    >>> conv_bn_pairs(net.eval(), torch.randn(1, 1, 8))
    [('0', '1')]
    """
    return _pairs_and_outputs(model, *example_inputs)[0]


def _pairs_and_outputs(model, *example_inputs):
    """:func:`conv_bn_pairs` and the model's outputs on ``example_inputs``."""
    produced_by, pairs, handles, keep_alive = {}, [], [], []

    def after_conv(name):
        def hook(module, inputs, output):
            produced_by[id(output)] = name
            keep_alive.append(output)  # ids stay unique while we look

        return hook

    def before_norm(name):
        def hook(module, inputs):
            source = produced_by.get(id(inputs[0]))
            if source is not None:
                pairs.append((source, name))

        return hook

    for name, module in model.named_modules():
        if isinstance(module, CONVOLUTIONS):
            handles.append(module.register_forward_hook(after_conv(name)))
        elif _foldable(module):
            handles.append(module.register_forward_pre_hook(before_norm(name)))
    try:
        with torch.no_grad():
            outputs = model(*example_inputs)
    finally:
        for handle in handles:
            handle.remove()
    seen_convs = [conv for conv, _ in pairs]
    return [(c, b) for c, b in pairs if seen_convs.count(c) == 1], outputs


def _sharing_copy(module):
    """A copy of ``module``'s tree of modules that shares its parameters and
    buffers: replacing a child or a parameter of the copy leaves ``module``
    as it is, and no tensor is copied. TorchScript children, which folding
    cannot enter, are shared as they are."""
    if isinstance(module, torch.jit.ScriptModule):
        return module
    copied = copy.copy(module)
    copied._modules = {
        name: None if child is None else _sharing_copy(child)
        for name, child in module._modules.items()
    }
    copied._parameters = dict(module._parameters)
    copied._buffers = dict(module._buffers)
    copied._non_persistent_buffers_set = set(module._non_persistent_buffers_set)
    for name, value in vars(module).items():  # hooks added to one stay on it
        if name.endswith("hooks") and isinstance(value, dict):
            setattr(copied, name, type(value)(value))
    return copied


def _set_module(model, name, module):
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def fold_batch_norms(model, *example_inputs, rtol=1e-3):
    """A copy of ``model`` (eval mode) with BatchNorms folded into convolutions.

    Only BatchNorms fed directly by a convolution are folded (plain
    ``BatchNorm1d``/``2d`` and timm's ``BatchNormAct2d``, whose activation
    stays). If the folded copy's outputs on ``example_inputs`` differ from
    the original's by more than ``rtol`` of their range, a warning is given
    and the original is returned unchanged. The copy has new weights for the
    folded convolutions and shares every other parameter and buffer with
    ``model`` (nothing else is copied; ``model`` is left as it is).

    Arguments
    ---------
    model : torch.nn.Module
        Model in eval mode; returns a tensor or a dict of tensors.
    *example_inputs
        Inputs of one forward call (e.g. a second of audio).
    rtol : float
        Tolerance of the check, relative to each output's largest magnitude.

    Returns
    -------
    folded : torch.nn.Module
        The folded copy (or ``model``).
    n_folded : int
        Number of BatchNorms folded.

    Example
    -------
    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    >>> _ = net[1].running_mean.uniform_(), net[1].running_var.uniform_(1, 2)
    >>> x = torch.randn(2, 1, 8, 8)
    >>> folded, n = fold_batch_norms(net.eval(), x)
    >>> n, type(folded[1]).__name__, torch.allclose(folded(x), net(x), atol=1e-5)
    (1, 'Identity', True)
    """
    if model.training:
        raise ValueError("fold_batch_norms needs a model in eval mode")
    pairs, before = _pairs_and_outputs(model, *example_inputs)
    if not pairs:
        return model, 0
    folded = _sharing_copy(model)
    for conv_name, bn_name in pairs:
        conv, bn = folded.get_submodule(conv_name), folded.get_submodule(bn_name)
        with torch.no_grad():
            conv.weight, conv.bias = fuse_conv_bn_weights(
                conv.weight,
                conv.bias,
                bn.running_mean,
                bn.running_var,
                bn.eps,
                bn.weight,
                bn.bias,
            )
        _set_module(folded, bn_name, _without_norm(bn))
    with torch.no_grad():
        after = folded(*example_inputs)
    if not isinstance(before, dict):
        before, after = {"output": before}, {"output": after}
    for key, value in before.items():
        if not torch.is_tensor(value) or not value.is_floating_point():
            continue
        scale = float(value.abs().max()) or 1.0
        error = float((after[key] - value).abs().max())
        if error > rtol * scale:
            warnings.warn(
                f"folding BatchNorms changed output {key!r} by {error:.3g} "
                f"(largest value {scale:.3g}): running the model unfolded"
            )
            return model, 0
    return folded, len(pairs)
