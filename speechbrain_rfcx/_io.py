"""Small private I/O helpers shared by the modules that write user files."""

import os
import tempfile


def write_atomically(path, data):
    """Write ``data`` (str or bytes) to ``path`` through a temporary file.

    The file appears whole or not at all: a crash or an error leaves any
    previous version of ``path`` untouched and no partial file behind.

    Example
    -------
    >>> path = os.path.join(tempfile.mkdtemp(), "out.txt")
    >>> write_atomically(path, "done\\n")
    >>> open(path).read()
    'done\\n'
    """
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".part")
    try:
        if isinstance(data, bytes):
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        else:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
                f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def remove_stale_temporaries(folder):
    """Delete temporary files that a killed :func:`write_atomically` left behind.

    Returns the number removed. Only our own ``.tmp-*.part`` names are touched.

    Example
    -------
    >>> folder = tempfile.mkdtemp()
    >>> _ = open(os.path.join(folder, ".tmp-abc.part"), "w").write("half")
    >>> remove_stale_temporaries(folder)
    1
    """
    removed = 0
    for root, _, names in os.walk(folder):
        for name in names:
            if name.startswith(".tmp-") and name.endswith(".part"):
                os.remove(os.path.join(root, name))
                removed += 1
    return removed
