"""An optional TorchScript path for timm backbones at inference.

A timm backbone in eval mode is scripted and frozen by
:func:`freeze_backbone`: ``torch.jit.freeze`` inlines its weights, folds its
BatchNorms and fuses what it can, so EfficientNet-B0's backbone runs a 60 s
recording about 1.4x faster on a 2-core CPU than eagerly, with a shorter
warm-up; in bfloat16 (``bf16=True``) about 2-3x. Saved once in a cache
(:func:`cached_path`, keyed by the checkpoint's bytes and the model block), it
loads with ``torch.jit.load`` alone: ``TimmSED(torchscript_backbone=FILE)``
never imports timm (2-3 s of every start). Nothing is compiled with a C
compiler, at export or at run time. A frozen backbone holds the SHA-1 of the
weights it was made from, and :class:`~speechbrain_rfcx.models.timm_sed.TimmSED`
refuses a checkpoint whose backbone weights differ.

The cache is ``$RFCX_CACHE_DIR``, else ``$XDG_CACHE_HOME/speechbrain-rfcx``,
else ``~/.cache/speechbrain-rfcx``; deleting it only costs the next start
the time to make the files again.

Authors
 * speechbrain-rfcx contributors
"""

import copy
import hashlib
import io
import os
import warnings

import torch

from speechbrain_rfcx._io import write_atomically

FORMAT = 2  # bump when a cached file's contract changes
CACHE_ENV = "RFCX_CACHE_DIR"
SUFFIX = ".torchscript.pt"


def state_sha1(state):
    """SHA-1 of a state dict: its names and tensor bytes, in sorted order.

    Example
    -------
    >>> a = {"w": torch.ones(2), "b": torch.zeros(1)}
    >>> state_sha1(a) == state_sha1(dict(reversed(list(a.items()))))
    True
    >>> state_sha1(a) == state_sha1({"w": torch.ones(2), "b": torch.ones(1)})
    False
    """
    digest = hashlib.sha1()
    for name, tensor in sorted(state.items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class FrozenFeatures(torch.nn.Module):
    """A backbone's ``forward_features`` as ``forward``, with what
    ``TimmSED`` reads of it (its width and time reduction) and the SHA-1 of
    the weights it was made from, kept as attributes through freezing. With
    ``bf16`` the backbone runs in bfloat16 (input cast, fp32 output)."""

    def __init__(self, backbone, num_features, reduction, weights_sha1, bf16):
        super().__init__()
        self.backbone = backbone
        self.num_features = int(num_features)
        self.reduction = int(reduction)
        self.weights_sha1 = weights_sha1
        self.bf16 = bool(bf16)

    def forward(self, x):
        if self.bf16:
            return self.backbone.forward_features(x.to(torch.bfloat16)).float()
        return self.backbone.forward_features(x)


KEPT = ["num_features", "reduction", "weights_sha1", "bf16"]


def freeze_backbone(backbone, num_features, reduction, bf16=False):
    """A frozen TorchScript module running ``backbone.forward_features``.

    Arguments
    ---------
    backbone : torch.nn.Module
        A timm model (or any scriptable module with ``forward_features``);
        its weights are copied into the frozen module, it is left as it is
        (apart from being put in eval mode).
    num_features, reduction : int
        The feature map's width and time reduction, kept as attributes.
    bf16 : bool
        Run in bfloat16 (weights and activations): about 2x faster again on
        CPUs with AVX512-BF16 or AMX, outputs within about 1 % (see
        ``benchmarks/RESULTS.md``).

    Returns
    -------
    torch.jit.ScriptModule
        Frozen, eval mode, on the CPU.

    Example
    -------
    >>> class Net(torch.nn.Sequential):
    ...     def forward_features(self, x):
    ...         return self.forward(x)
    >>> net = Net(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4)).eval()
    >>> frozen = freeze_backbone(net, 4, 1)
    >>> x = torch.randn(1, 1, 8, 8)
    >>> torch.allclose(frozen(x), net(x), atol=1e-5), frozen.num_features
    (True, 4)
    >>> half = freeze_backbone(net, 4, 1, bf16=True)
    >>> half(x).dtype, torch.allclose(half(x), net(x), atol=0.05)
    (torch.float32, True)
    """
    sha1 = state_sha1(backbone.state_dict())
    backbone = backbone.eval()
    if bf16:
        backbone = copy.deepcopy(backbone).to(torch.bfloat16)
    wrapper = FrozenFeatures(backbone, num_features, reduction, sha1, bf16).eval()
    with warnings.catch_warnings():  # TorchScript is deprecated, not removed
        warnings.simplefilter("ignore")
        with torch.no_grad():
            frozen = torch.jit.freeze(torch.jit.script(wrapper), preserved_attrs=KEPT)
    if torch.backends.mkldnn.is_available():
        _convolutions_through_onednn(frozen.graph)
    return frozen


_CONV2D = """
graph(%x, %w, %b, %stride, %padding, %dilation, %groups):
    %y = aten::conv2d(%x, %w, %b, %stride, %padding, %dilation, %groups)
    return (%y)"""
_ONEDNN_CONV2D = """
graph(%x, %w, %b, %stride, %padding, %dilation, %groups):
    %y = aten::mkldnn_convolution(%x, %w, %b, %padding, %stride, %dilation, %groups)
    return (%y)"""


def _convolutions_through_onednn(graph):
    """Every convolution of a frozen graph runs oneDNN's kernel. With one
    thread, ``conv2d`` sends 1x1 convolutions of a single input to a
    generic kernel that copies channels-last inputs (EfficientNet-B0's
    backbone then runs about 10 % slower, and one thread per scoring file
    is how ``rfcx-detect`` uses the cores); the results are the same.
    Graphs with a ``padding="same"`` convolution are left as they are."""
    for node in graph.findAllNodes("aten::conv2d"):
        if node.inputsAt(4).type().kind() != "ListType":
            return
    torch._C._jit_pass_custom_pattern_based_rewrite_graph(
        _CONV2D, _ONEDNN_CONV2D, graph
    )


def save_frozen(module, path):
    """Write a frozen module to ``path`` whole or not at all."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(module, buffer)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_atomically(path, buffer.getvalue())


def load_frozen(path):
    """A module written by :func:`save_frozen`, on the CPU."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch.jit.load(str(path), map_location="cpu")
    missing = [name for name in KEPT if not hasattr(module, name)]
    if missing:
        raise ValueError(f"{path}: not a frozen backbone (no {', '.join(missing)})")
    return module


def cache_folder(environ=None):
    """Where frozen backbones are kept (see the module's docstring), from
    ``environ`` (default ``os.environ``).

    Example
    -------
    >>> cache_folder({"RFCX_CACHE_DIR": "/scratch/rfcx", "XDG_CACHE_HOME": "/c"})
    '/scratch/rfcx'
    >>> cache_folder({"XDG_CACHE_HOME": "/c"})
    '/c/speechbrain-rfcx'
    """
    environ = os.environ if environ is None else environ
    if environ.get(CACHE_ENV):
        return environ[CACHE_ENV]
    base = environ.get("XDG_CACHE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache"
    )
    return os.path.join(base, "speechbrain-rfcx")


def cached_path(weights_file, model_yaml, bf16=False):
    """The cache file of the frozen backbone of these weights and model block
    (it may not exist yet): named by a SHA-256 of the checkpoint's bytes, the
    block, the precision, the torch version and :data:`FORMAT`."""
    digest = hashlib.sha256()
    with open(weights_file, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    digest.update(model_yaml.encode())
    precision = "bf16" if bf16 else "fp32"
    digest.update(f"{precision} torch {torch.__version__} format {FORMAT}".encode())
    return os.path.join(cache_folder(), digest.hexdigest()[:32] + SUFFIX)
