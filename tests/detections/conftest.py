"""Shared helpers of the detections tests."""

import pytest

from speechbrain_rfcx.detections.events import Detection


def _assert_same_detections(
    got, expected, time_tol=1e-6, freq_tol=1e-3, score_tol=1e-6
):
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.species_id == e.species_id
        assert g.t_min == pytest.approx(e.t_min, abs=time_tol)
        assert g.t_max == pytest.approx(e.t_max, abs=time_tol)
        assert g.score == pytest.approx(e.score, abs=score_tol)
        assert g.has_band == e.has_band
        if e.has_band:
            assert g.f_min == pytest.approx(e.f_min, abs=freq_tol)
            assert g.f_max == pytest.approx(e.f_max, abs=freq_tol)


@pytest.fixture
def assert_same_detections():
    """Asserts that two lists of detections agree within tolerances."""
    return _assert_same_detections


@pytest.fixture
def some_detections():
    return [
        Detection(3, 1.234567, 2.5, 0.871234, 512.25, 2048.5),
        Detection(0, 4.0, 5.75, 0.5),
        Detection(17, 10.0, 10.125, 0.999999, 0.0, 24000.0),
    ]
