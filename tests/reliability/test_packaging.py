"""The wheel a user pip-installs: hparams blocks as package data, the declared
requirements and extras, and every console command answering ``--version``."""

import configparser
import email
import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest

import speechbrain_rfcx
import speechbrain_rfcx.hparams

ROOT = pathlib.Path(__file__).resolve().parents[2]
SOURCES = ["setup.py", "pyproject.toml", "README.md", "speechbrain_rfcx", "hparams"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """A wheel built from a copy of the sources (the checkout stays clean)."""
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(
                ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "-q", "-w", str(out), str(source)],
        check=True, capture_output=True,
    )  # fmt: skip
    (path,) = out.glob("speechbrain_rfcx-*.whl")
    return path


def _metadata(wheel, name):
    with zipfile.ZipFile(wheel) as archive:
        (member,) = [n for n in archive.namelist() if n.endswith(".dist-info/" + name)]
        return archive.read(member).decode()


def test_wheel_ships_the_hparams_blocks(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    blocks = {
        "speechbrain_rfcx/hparams/" + p.relative_to(ROOT / "hparams").as_posix()
        for p in (ROOT / "hparams").rglob("*.yaml")
    }
    assert len(blocks) >= 6 and blocks <= names
    assert "speechbrain_rfcx/hparams/__init__.py" in names


def test_wheel_declares_pins_and_extras(wheel):
    metadata = email.message_from_string(_metadata(wheel, "METADATA"))
    requires = metadata.get_all("Requires-Dist")
    speechbrain = next(r for r in requires if r.startswith("speechbrain"))
    assert "<1.2" in speechbrain and ">=1.1.2" in speechbrain
    assert any(r.startswith("ruamel.yaml") for r in requires)
    assert any(r.startswith("torch>=2.7.1") for r in requires)
    for optional in ("tensorboard", "matplotlib", "pyarrow"):
        needed = [r for r in requires if r.startswith(optional)]
        assert needed and all("extra ==" in r for r in needed), optional
    assert {"train", "plot", "parquet"} <= set(metadata.get_all("Provides-Extra"))


def test_installed_blocks_can_be_included_by_a_users_recipe(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q",
         "--disable-pip-version-check", "--target", str(target), str(wheel)],
        check=True, capture_output=True,
    )  # fmt: skip
    probe = (
        "import pathlib, torch\n"
        "from hyperpyyaml import load_hyperpyyaml\n"
        "import speechbrain_rfcx.hparams as blocks\n"
        "assert blocks.HPARAMS_DIR.startswith(%r), blocks.HPARAMS_DIR\n"
        "recipe = pathlib.Path('my_recipe.yaml')\n"
        "recipe.write_text(\n"
        "    'n_classes: 7\\n'\n"
        "    'model_block: !include:' + blocks.block_path('models/timm_sed.yaml') + '\\n'\n"
        "    '    n_classes: !ref <n_classes>\\n'\n"
        "    '    sample_rate: 16000\\n'\n"
        "    '    f_max: 8000.0\\n'\n"
        "    'model: !ref <model_block[model]>\\n')\n"
        "model = load_hyperpyyaml(recipe.open())['model'].eval()\n"
        "out = model(torch.randn(1, 16000), torch.ones(1))\n"
        "print(tuple(out['clip_logits'].shape))\n"
    ) % str(target)
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "(1, 7)"
    # rfcx-hparams --copy: the same blocks, for relative includes
    copied = tmp_path / "copied"
    speechbrain_rfcx.hparams.main(["--copy", str(copied)])
    assert sorted(p.relative_to(copied).as_posix() for p in copied.rglob("*.yaml")) == (
        speechbrain_rfcx.hparams.blocks()
    )


def test_every_console_command_answers_version_without_torch(wheel):
    entry_points = configparser.ConfigParser()
    entry_points.read_string(_metadata(wheel, "entry_points.txt"))
    commands = dict(entry_points["console_scripts"])
    assert len(commands) >= 7 and all(name.startswith("rfcx-") for name in commands)
    for name, target in commands.items():
        module, function = target.split(":")
        probe = (
            "import sys, importlib\n"
            f"sys.argv = [{name!r}, '--version']\n"
            "try:\n"
            f"    getattr(importlib.import_module({module!r}), {function!r})()\n"
            "except SystemExit as e:\n"
            "    print('exit', e.code, 'torch' in sys.modules)\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True
        )
        assert speechbrain_rfcx.__version__ in done.stdout, (name, done.stderr)
        assert done.stdout.split()[-3:] == ["exit", "0", "False"], (name, done.stdout)
