"""The model registry: ``register_model`` names a model class, ``create_model``
builds one by name (so hparams name a model in one line and tests parametrize
over every model, as timm's do) and ``list_models`` lists them.

Authors
 * speechbrain-rfcx contributors
"""

_MODEL_REGISTRY = {}


def register_model(name):
    """Class decorator adding a model class to the registry under ``name``.

    Arguments
    ---------
    name : str
        Registry name, used by ``create_model``.

    Returns
    -------
    Callable
        The decorator (returns the class unchanged).

    Example
    -------
    >>> import torch
    >>> @register_model("doc_example_model")
    ... class DocExample(torch.nn.Module):
    ...     pass
    >>> "doc_example_model" in list_models()
    True
    >>> _ = _MODEL_REGISTRY.pop("doc_example_model")
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"model name must be a non-empty string, got {name!r}")

    def decorator(cls):
        known = _MODEL_REGISTRY.get(name)
        if known is not None and _class_id(known) != _class_id(cls):
            raise ValueError(
                f"model name {name!r} is already registered to {_class_id(known)}"
            )
        _MODEL_REGISTRY[name] = cls
        return cls

    return decorator


def _class_id(cls):
    """File stem and qualified name: stable when a module is imported twice
    (e.g. pytest's importlib mode, notebook reloads)."""
    return f"{cls.__module__.rsplit('.', 1)[-1]}.{cls.__qualname__}"


def create_model(name, **kwargs):
    """Builds the registered model ``name`` with keyword arguments ``kwargs``.

    Arguments
    ---------
    name : str
        A name from ``list_models()``.
    **kwargs
        Passed to the model class.

    Returns
    -------
    torch.nn.Module
        The model.

    Example
    -------
    >>> import torch
    >>> model = create_model("transformer_sed", n_classes=3, sample_rate=16000,
    ...     n_mels=16, n_fft=256, hop_length=128, d_model=16, nhead=2,
    ...     num_layers=1, d_ffn=32)
    >>> model(torch.randn(1, 4000))["clip_logits"].shape
    torch.Size([1, 3])
    """
    if name not in _MODEL_REGISTRY:
        raise ValueError(f"unknown model {name!r}; available: {list_models()}")
    return _MODEL_REGISTRY[name](**kwargs)


def list_models():
    """Sorted names of the registered models.

    Returns
    -------
    list of str
        The names.

    Example
    -------
    >>> "timm_sed" in list_models()
    True
    """
    return sorted(_MODEL_REGISTRY)
