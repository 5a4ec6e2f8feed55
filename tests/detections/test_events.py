"""Tests of speechbrain_rfcx.detections.events: frames to timed events."""

import numpy as np
import pytest

from speechbrain_rfcx.detections.events import Detection, frames_to_detections


def plant_events(rng, n_frames, hop, offset, events, n_classes):
    """Frame probabilities: noise below 0.3, event frames above 0.7."""
    centres = offset + hop * np.arange(n_frames)
    probs = rng.uniform(0.0, 0.3, size=(n_frames, n_classes))
    for species, t_min, t_max in events:
        inside = (centres >= t_min) & (centres <= t_max)
        probs[inside, species] = rng.uniform(0.7, 1.0, size=inside.sum())
    return probs, centres


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planted_events_are_recovered_within_one_frame(seed, assert_same_detections):
    rng = np.random.default_rng(seed)
    hop, offset, n_frames, n_classes = 0.1, 0.05, 600, 6
    events = []
    for species in range(n_classes):
        start = rng.uniform(0.0, 5.0)
        while start < 50.0:  # non-overlapping, gaps of at least 1 s
            length = rng.uniform(0.3, 3.0)
            events.append((species, start, start + length))
            start += length + rng.uniform(1.0, 8.0)
    probs, centres = plant_events(rng, n_frames, hop, offset, events, n_classes)
    found = frames_to_detections(probs, frame_hop=hop, frame_offset=offset)
    assert len(found) == len(events)
    for species in range(n_classes):
        truth = sorted(e for e in events if e[0] == species)
        mine = [d for d in found if d.species_id == species]
        assert len(mine) == len(truth)
        for d, (_, t_min, t_max) in zip(mine, truth):
            assert abs(d.t_min - t_min) <= hop
            assert abs(d.t_max - t_max) <= hop
            inside = (centres >= t_min) & (centres <= t_max)
            assert d.score == probs[inside, species].max()
    # the same frames described by their times give the same detections
    assert_same_detections(frames_to_detections(probs, frame_times=centres), found)
    starts = [(d.t_min, d.species_id) for d in found]
    assert starts == sorted(starts)


def hand_probs():
    """One species, frames of 1 s (frame i spans [i, i + 1])."""
    column = np.array([0.6, 0.8, 0.1, 0.7, 0.9, 0.0, 0.2, 0.1, 0.95])
    return column[:, None]


@pytest.mark.parametrize(
    "merge_gap, min_duration, expected",
    [
        (0.0, 0.0, [(0, 2, 0.8), (3, 5, 0.9), (8, 9, 0.95)]),
        (0.99, 0.0, [(0, 2, 0.8), (3, 5, 0.9), (8, 9, 0.95)]),
        (1.0, 0.0, [(0, 5, 0.9), (8, 9, 0.95)]),
        (3.0, 0.0, [(0, 9, 0.95)]),
        (0.0, 2.0, [(0, 2, 0.8), (3, 5, 0.9)]),
        (0.0, 2.01, []),
        # min_duration applies to merged events: each run alone is 2 s
        (1.0, 3.0, [(0, 5, 0.9)]),
    ],
)
def test_merging_and_min_duration_by_hand(merge_gap, min_duration, expected):
    found = frames_to_detections(
        hand_probs(),
        frame_hop=1.0,
        frame_offset=0.5,
        threshold=0.5,
        merge_gap=merge_gap,
        min_duration=min_duration,
    )
    assert [(d.t_min, d.t_max, d.score) for d in found] == expected


def test_threshold_is_inclusive_and_frames_start_at_zero():
    probs = np.array([[0.5], [0.2], [0.2]])
    found = frames_to_detections(probs, frame_times=[0.0, 0.5, 1.0], threshold=0.5)
    # the first frame is centred at 0: its half before 0 s is cut off
    assert [(d.t_min, d.t_max) for d in found] == [(0.0, 0.25)]


def test_irregular_frame_times_split_at_midpoints():
    probs = np.array([[0.1], [0.9], [0.9], [0.1]])
    found = frames_to_detections(probs, frame_times=[1.0, 2.0, 4.0, 8.0])
    assert [(d.t_min, d.t_max) for d in found] == [(1.5, 6.0)]


def test_per_species_thresholds():
    probs = np.full((4, 3), 0.6)
    by_array = frames_to_detections(probs, frame_hop=1.0, threshold=[0.5, 0.7, 0.6])
    assert [d.species_id for d in by_array] == [0, 2]
    by_dict = frames_to_detections(
        probs, frame_hop=1.0, threshold={1: 0.55}, default_threshold=0.9
    )
    assert [d.species_id for d in by_dict] == [1]
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        frames_to_detections(probs, frame_hop=1.0, threshold=[0.5, 0.5])
    with pytest.raises(ValueError, match="species_id 7"):
        frames_to_detections(probs, frame_hop=1.0, threshold={7: 0.5})


def test_bands_are_attached_per_species():
    probs = np.full((3, 2), 0.9)
    found = frames_to_detections(probs, frame_hop=1.0, species_bands={1: (300, 900)})
    by_species = {d.species_id: d for d in found}
    assert (by_species[1].f_min, by_species[1].f_max) == (300.0, 900.0)
    assert not by_species[0].has_band


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(frame_probs=np.zeros(5), frame_hop=1.0), r"shape \(T, C\)"),
        (dict(frame_probs=np.full((2, 1), np.nan), frame_hop=1.0), "non-finite"),
        (dict(frame_probs=np.zeros((2, 1))), "exactly one"),
        (
            dict(frame_probs=np.zeros((2, 1)), frame_hop=1.0, frame_times=[0, 1]),
            "exactly one",
        ),
        (dict(frame_probs=np.zeros((2, 1)), frame_times=[1.0, 1.0]), "increasing"),
        (dict(frame_probs=np.zeros((2, 1)), frame_times=[1.0]), r"shape \(2,\)"),
        (dict(frame_probs=np.zeros((1, 1)), frame_times=[1.0]), "frame_hop"),
        (dict(frame_probs=np.zeros((2, 1)), frame_hop=-1.0), "frame_hop"),
        (dict(frame_probs=np.zeros((2, 1)), frame_hop=1.0, merge_gap=-1), "merge_gap"),
    ],
)
def test_frames_to_detections_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        frames_to_detections(**kwargs)


def test_detection_validates_its_fields():
    with pytest.raises(ValueError, match="species_id"):
        Detection(-1, 0.0, 1.0, 0.5)
    with pytest.raises(ValueError, match="both"):
        Detection(0, 0.0, 1.0, 0.5, f_min=100.0)
    with pytest.raises(ValueError, match="f_min 900.0 is above f_max 100.0"):
        Detection(0, 0.0, 1.0, 0.5, 900.0, 100.0)
    assert type(Detection(np.int64(2), 0, 1, np.float32(0.5)).species_id) is int
