"""Optional dependencies (the ``train``, ``plot`` and ``parquet`` extras)."""

import importlib.util


def installed(module):
    """Whether ``module`` can be imported (without importing it).

    Example
    -------
    >>> installed("json"), installed("no_such_module_here")
    (True, False)
    """
    return importlib.util.find_spec(module) is not None


def require(module, extra, option):
    """Raise a ``ValueError`` naming ``option`` and the extra to install
    when ``module`` is missing.

    Example
    -------
    >>> require("no_such_module_here", "plot", "--plot")
    Traceback (most recent call last):
    ...
    ValueError: --plot needs no_such_module_here: pip install 'speechbrain-rfcx[plot]'
    """
    if not installed(module):
        raise ValueError(
            f"{option} needs {module}: pip install 'speechbrain-rfcx[{extra}]'"
        )
