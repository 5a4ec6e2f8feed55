"""Recipe plumbing: supervision switches, fold datasets, data-source records."""

import json

import pytest

from speechbrain_rfcx import experiment


def _hparams(tmp_path, **changes):
    hparams = {
        "fold": 1,
        "n_folds": 4,
        "seed": 1,
        "n_classes": 24,
        "sample_rate": 16000,
        "crop_seconds": 2.0,
        "frame_targets": 8,
        "batch_size": 4,
        "steps_per_epoch": 5,
        "masked_supervision": False,
        "class_balanced": True,
        "tp_crop_weight": 1.0,
        "fp_crop_weight": 1.0,
        "random_crop_weight": 0.0,
        "pseudo_labels": None,
        "pseudo_box_crop_prob": 0.5,
        "output_folder": str(tmp_path / "out"),
    }
    hparams.update(changes)
    return hparams


@pytest.fixture(scope="module")
def manifest(tiny_rfcx, tiny_prepared):
    from speechbrain.dataio.dataio import load_data_json

    return load_data_json(
        tiny_prepared["train_json"], replacements={"data_root": str(tiny_rfcx)}
    )


def _sources(dataset):
    return {entry["anchor_source"] for entry in dataset.data.values()}


def test_tp_only_supervision_never_crops_on_fp_boxes(tmp_path, manifest):
    data = experiment.fold_datasets(_hparams(tmp_path), manifest)
    assert _sources(data["train"]) == {"tp"}
    assert all(e["fold"] != 1 for e in data["train"].data.values())


def test_pseudo_labels_give_random_crops_the_share_left_by_box_crops(tmp_path):
    hp = _hparams(tmp_path, masked_supervision=True, pseudo_labels="labels")
    for share, random_weight in ((0.5, 2.0), (0.8, 0.5), (1.0, None)):
        sources = experiment.crop_sources(dict(hp, pseudo_box_crop_prob=share))
        assert sources.get("random") == pytest.approx(random_weight)
        box_weight = sources["tp"] + sources["fp"]
        assert box_weight / sum(sources.values()) == pytest.approx(share)
    assert experiment.crop_sources(dict(hp, pseudo_box_crop_prob=0.0)) == {
        "random": 1.0
    }
    with pytest.raises(ValueError, match="pseudo_box_crop_prob"):
        experiment.crop_sources(dict(hp, pseudo_box_crop_prob=1.5))


def test_masked_supervision_adds_fp_and_random_crops(tmp_path, manifest):
    hp = _hparams(tmp_path, masked_supervision=True, random_crop_weight=0.5)
    assert experiment.crop_sources(hp) == {"tp": 1.0, "fp": 1.0, "random": 0.5}
    data = experiment.fold_datasets(hp, manifest)
    assert _sources(data["train"]) == {"tp", "fp", "random"}
    assert len(list(data["sampler"])) == 20  # steps_per_epoch * batch_size


def test_held_out_fold_sets(tmp_path, manifest):
    data = experiment.fold_datasets(_hparams(tmp_path), manifest)
    fold = {rid for rid, e in manifest.items() if e["fold"] == 1}
    assert {item["id"] for item in data["oof"]} == fold
    valid_ids = {item["id"] for item in data["valid"]}
    assert valid_ids == {rid for rid in fold if manifest[rid]["tp_boxes"]}
    item = data["valid"][0]
    assert item["recording_target"].sum() >= 1
    with pytest.raises(ValueError, match="--fold=7"):
        experiment.fold_datasets(_hparams(tmp_path, fold=7), manifest)


def test_data_source_is_recorded_and_enforced(tmp_path, tiny_rfcx):
    hp = _hparams(tmp_path, data_folder=str(tiny_rfcx))
    folder, synthetic = experiment.resolve_data_folder(hp)
    assert folder == str(tiny_rfcx) and synthetic is False
    record = json.loads((tmp_path / "out" / experiment.DATA_SOURCE_FILE).read_text())
    assert record["synthetic"] is False
    other = tmp_path / "elsewhere"
    other.mkdir()
    with pytest.raises(experiment.DataSourceMismatch, match="choose another"):
        experiment.resolve_data_folder(dict(hp, data_folder=str(other)))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        experiment.resolve_data_folder(dict(hp, data_folder=str(tmp_path / "none")))


def test_recipe_hparams_without_tensorboard_name_the_extra(monkeypatch):
    """train.py, cross_validate.py and pseudo_label.py load their hparams
    with ``load_hparams``: a TensorBoard logger without tensorboard stops
    with the extra to install, not torch's ImportError."""
    import pathlib

    from speechbrain_rfcx import _optional
    from speechbrain_rfcx.experiment import load_hparams

    recipe = pathlib.Path(__file__).resolve().parents[1] / "recipes" / "RFCX"
    real = _optional.installed
    monkeypatch.setattr(
        _optional, "installed", lambda m: m != "tensorboard" and real(m)
    )
    with pytest.raises(SystemExit, match=r"pip install 'speechbrain-rfcx\[train\]'"):
        load_hparams(str(recipe / "hparams" / "small_cpu.yaml"))
