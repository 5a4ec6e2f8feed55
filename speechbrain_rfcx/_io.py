"""Small private I/O helpers shared by the modules that write user files."""

import json
import os
import secrets


def write_atomically(path, data):
    """Write ``data`` (str or bytes) to ``path`` through a temporary file.

    The file appears whole or not at all: a crash or an error leaves any
    previous version of ``path`` untouched and no partial file behind. Its
    permissions follow the umask, as for any file a program creates.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "out.txt")
    >>> write_atomically(path, "done\\n")
    >>> open(path).read()
    'done\\n'
    """
    folder = os.path.dirname(os.path.abspath(path))
    while True:  # mkstemp would make the file 0600 whatever the umask
        tmp = os.path.join(folder, f".tmp-{secrets.token_hex(8)}.part")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
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


def read_record(path):
    """The JSON record a step left at ``path``, or None when there is none.

    A step (preparation, synthetic generation, a training run) writes its
    record with :func:`write_record`, last when the record says "done", and
    compares what it is given with the record it finds to decide whether the
    work is already done.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "record.json")
    >>> read_record(path) is None
    True
    >>> write_record(path, {"options": {"seed": 1}, "result": {"n": 3}})
    >>> read_record(path)["result"]
    {'n': 3}
    """
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def write_record(path, record):
    """Writes the JSON ``record`` to ``path`` whole or not at all (see
    :func:`read_record`).

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "record.json")
    >>> write_record(path, {"b": 1, "a": [2]})
    >>> read_record(path)
    {'a': [2], 'b': 1}
    """
    write_atomically(path, json.dumps(record, indent=1, sort_keys=True))


def remove_stale_temporaries(folder):
    """Delete temporary files that a killed :func:`write_atomically` left behind.

    Returns the number removed. Only our own ``.tmp-*.part`` names are touched.

    Example
    -------
    >>> import tempfile
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
