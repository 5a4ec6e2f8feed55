"""The reusable hyperpyyaml blocks (models, loss, augmentation), installed
with the package as ``speechbrain_rfcx.hparams``.

A recipe ``!include``\\ s a block by its path and overrides what differs::

    model_block: !include:<HPARAMS_DIR>/models/timm_sed.yaml
        n_classes: !ref <n_classes>
    model: !ref <model_block[model]>

``rfcx-hparams`` prints the folder and its blocks; ``rfcx-hparams --copy
DIR`` copies them into your project, so that your recipe can ``!include``
them by a relative path.

Example
-------
>>> block_path("models/timm_sed.yaml").endswith("timm_sed.yaml")
True
>>> "loss/sed_loss.yaml" in blocks()
True
"""

import argparse
import os
import shutil

HPARAMS_DIR = os.path.dirname(os.path.abspath(__file__))


def blocks():
    """The blocks, as paths relative to :data:`HPARAMS_DIR` (sorted)."""
    found = []
    for folder, _, files in os.walk(HPARAMS_DIR):
        for name in files:
            if name.endswith(".yaml"):
                path = os.path.join(folder, name)
                found.append(os.path.relpath(path, HPARAMS_DIR).replace(os.sep, "/"))
    return sorted(found)


def block_path(name):
    """The absolute path of block ``name`` (e.g. ``"models/timm_sed.yaml"``)."""
    path = os.path.join(HPARAMS_DIR, name)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"no hparams block {name!r}; the blocks are: {', '.join(blocks())}"
        )
    return path


def copy_blocks(destination):
    """Copy every block under ``destination`` (keeping ``models/`` etc.);
    existing files are kept. Returns the paths written."""
    written = []
    for name in blocks():
        target = os.path.join(destination, name)
        if os.path.exists(target):
            continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(block_path(name), target)
        written.append(target)
    return written


def main(argv=None):
    """``rfcx-hparams [--copy DIR]``."""
    from speechbrain_rfcx import __version__

    parser = argparse.ArgumentParser(
        prog="rfcx-hparams",
        description="Print where the reusable hparams blocks are installed, or "
        "copy them into a folder of your project.",
    )
    parser.add_argument("--copy", metavar="DIR", help="copy the blocks under DIR")
    parser.add_argument("--version", action="version", version=__version__)
    args = parser.parse_args(argv)
    if args.copy:
        written = copy_blocks(args.copy)
        print(f"copied {len(written)} block(s) to {args.copy}")
        return
    print(HPARAMS_DIR)
    for name in blocks():
        print(f"  {name}")
