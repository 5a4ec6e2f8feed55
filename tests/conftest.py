"""Shared fixtures: tiny synthetic RFCX datasets, generated once per session."""

import os

import pytest

TINY = dict(n_train=48, n_test=8, duration=6.0, sample_rate=16000, seed=7)


def _session_environment(name, value):
    """``os.environ[name] = value`` for the session (subprocesses too), then
    what it was before."""
    previous = os.environ.get(name)
    os.environ[name] = value
    yield value
    if previous is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = previous


@pytest.fixture(scope="session", autouse=True)
def torchscript_cache(tmp_path_factory):
    """Frozen TorchScript backbones of the tests' detectors go to a folder
    of this session (subprocesses too), not to the user's cache."""
    folder = tmp_path_factory.mktemp("torchscript_cache")
    yield from _session_environment("RFCX_CACHE_DIR", str(folder))


@pytest.fixture(scope="session", autouse=True)
def fp32_by_default():
    """The commands' ``--precision auto`` would pick bf16 on some CPUs:
    tests (subprocesses too) run fp32 unless they ask otherwise, so that
    their figures do not depend on the machine."""
    yield from _session_environment("RFCX_PRECISION", "fp32")


@pytest.fixture(scope="session")
def tiny_rfcx(tmp_path_factory):
    """A small RFCX-layout folder (48 train, 8 test recordings of 6 s, 16 kHz)."""
    from speechbrain_rfcx.data.synthetic import generate_rfcx_dataset

    folder = tmp_path_factory.mktemp("tiny_rfcx")
    generate_rfcx_dataset(folder, **TINY)
    return folder


@pytest.fixture(scope="session")
def tiny_prepared(tiny_rfcx, tmp_path_factory):
    """``tiny_rfcx`` prepared into manifests with 4 folds."""
    from speechbrain_rfcx.data.prepare import prepare_rfcx

    save = tmp_path_factory.mktemp("tiny_prepared")
    return prepare_rfcx(tiny_rfcx, save, n_folds=4, seed=1)
