"""Anchored entries and class-balanced, source-weighted sampling."""

import collections
import json

import numpy as np
import pytest

from speechbrain_rfcx.data.sampling import (
    anchored_entries,
    make_train_sampler,
    sampling_weights,
)


@pytest.fixture(scope="module")
def manifest(tiny_prepared):
    with open(tiny_prepared["train_json"]) as f:
        return json.load(f)


def test_one_entry_per_box_and_fold_filter(manifest):
    entries = anchored_entries(manifest, ("tp", "fp", "random"), folds={0, 1})
    kept = [e for e in manifest.values() if e["fold"] in (0, 1)]
    by_source = collections.Counter(e["anchor_source"] for e in entries.values())
    assert by_source["tp"] == sum(len(e["tp_boxes"]) for e in kept)
    assert by_source["fp"] == sum(len(e["fp_boxes"]) for e in kept)
    assert by_source["random"] == len(kept)
    for key, e in entries.items():
        assert key.startswith(e["recording_id"] + "/")
        if e["anchor_source"] != "random":
            assert (
                e["anchor"]
                in manifest[e["recording_id"]][f"{e['anchor_source']}_boxes"]
            )


def test_balanced_draws_give_every_species_the_same_share():
    # species 0 has 30 boxes, species 1 has 3, species 2 has 1
    entries = {
        f"r{i}/tp0": {"anchor": {"species_id": s}, "anchor_source": "tp"}
        for i, s in enumerate([0] * 30 + [1] * 3 + [2])
    }
    sampler = make_train_sampler(entries, n_samples=6000, seed=5)
    species = [entries[list(entries)[i]]["anchor"]["species_id"] for i in sampler]
    shares = np.bincount(species) / len(species)
    np.testing.assert_allclose(shares, [1 / 3] * 3, atol=0.03)
    plain = make_train_sampler(entries, n_samples=6000, balanced=False, seed=5)
    species = [entries[list(entries)[i]]["anchor"]["species_id"] for i in plain]
    assert np.bincount(species)[0] / 6000 > 0.8


def test_source_weights_set_the_mix_of_crops():
    entries = {
        f"t{i}": {"anchor": {"species_id": i % 3}, "anchor_source": "tp"}
        for i in range(9)
    }
    entries.update(
        {
            f"f{i}": {"anchor": {"species_id": 1}, "anchor_source": "fp"}
            for i in range(2)
        }
    )
    entries.update(
        {f"r{i}": {"anchor": None, "anchor_source": "random"} for i in range(50)}
    )
    w = sampling_weights(entries, {"tp": 2.0, "fp": 1.0, "random": 1.0})
    keys = list(entries)
    share = lambda p: sum(wi for k, wi in zip(keys, w) if k.startswith(p))  # noqa: E731
    assert share("t") == pytest.approx(0.5) and share("f") == pytest.approx(0.25)
    assert share("r") == pytest.approx(0.25)
    with pytest.raises(ValueError, match="no entry can be drawn"):
        sampling_weights(entries, {"fp": 0.0})
    with pytest.raises(ValueError, match="unknown anchor source"):
        sampling_weights(entries, {"tpp": 1.0})


def test_draws_are_reproducible_and_change_with_the_epoch():
    entries = {
        f"e{i}": {"anchor": {"species_id": i}, "anchor_source": "tp"} for i in range(10)
    }
    a, b = (
        make_train_sampler(entries, 20, seed=1),
        make_train_sampler(entries, 20, seed=1),
    )
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
