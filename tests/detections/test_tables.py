"""Tests of speechbrain_rfcx.detections.tables: Raven, Audacity, CSV."""

import numpy as np
import pandas as pd
import pytest

from speechbrain_rfcx.data.annotations import AnnotationError
from speechbrain_rfcx.detections.events import Detection
from speechbrain_rfcx.detections.tables import (
    read_audacity_labels,
    read_raven_table,
    write_audacity_labels,
    write_detections_csv,
    write_raven_table,
)

RAVEN_HEADER = (
    "Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\t"
    "High Freq (Hz)\tSpecies ID\tSpecies\tScore"
)


# ---------------------------------------------------------------------------
# Raven
# ---------------------------------------------------------------------------


def test_raven_round_trip_and_header(tmp_path, some_detections, assert_same_detections):
    path = tmp_path / "rec.Table.1.selections.txt"
    write_raven_table(path, some_detections, species_names={3: "Coqui frog"})
    lines = path.read_text().splitlines()
    assert lines[0] == RAVEN_HEADER
    rows = [line.split("\t") for line in lines[1:]]
    assert [r[0] for r in rows] == ["1", "2", "3"]
    assert {r[1] for r in rows} == {"Spectrogram 1"}
    assert {r[2] for r in rows} == {"1"}
    assert [r[8] for r in rows] == ["Coqui frog", "s0", "s17"]
    assert rows[1][5:7] == ["", ""]  # no band
    assert_same_detections(read_raven_table(path), some_detections)


def test_raven_reads_tables_saved_again_by_raven(tmp_path, assert_same_detections):
    header = (
        "Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tDelta Time (s)\t"
        "Low Freq (Hz)\tHigh Freq (Hz)\tSpecies ID\tSpecies\tScore\tNotes"
    )
    rows = [
        "1\tWaveform 1\t1\t1.5\t2.5\t1.0\t0\t0\t4\ts4\t0.8\t",
        "1\tSpectrogram 1\t1\t1.5\t2.5\t1.0\t100\t900\t4\ts4\t0.8\t",
        "2\tSpectrogram 1\t1\t3\t4\t1.0\t200\t800\t2\ts2\t0.6\tchecked",
    ]
    path = tmp_path / "saved.txt"
    path.write_text("\n".join([header, *rows]) + "\n")
    got = read_raven_table(path)
    # selection 1 is read once (its first row, as Raven lists views in order)
    assert_same_detections(
        got, [Detection(4, 1.5, 2.5, 0.8, 0.0, 0.0), Detection(2, 3, 4, 0.6, 200, 800)]
    )


@pytest.mark.parametrize(
    "row, message",
    [
        ("2\tSpectrogram 1\t1\tabc\t2.0\t100\t900\t1\ts1\t0.5", "line 3: Begin Time"),
        ("2\tSpectrogram 1\t1\t1.0\t2.0\t100\t900\t1\ts1", "line 3: 9 fields"),
        ("2\tSpectrogram 1\t1\t3.0\t2.0\t100\t900\t1\ts1\t0.5", "line 3: .*t_min"),
        ("2\tSpectrogram 1\t1\t1.0\t2.0\t100\t900\t1.5\ts1\t0.5", "line 3: Species ID"),
        ("2\tSpectrogram 1\t1\t1.0\t2.0\t100\t\t1\ts1\t0.5", "line 3: High Freq"),
    ],
)
def test_raven_malformed_line_is_named(tmp_path, row, message):
    path = tmp_path / "bad.txt"
    good = "1\tSpectrogram 1\t1\t1.0\t2.0\t100\t900\t1\ts1\t0.5"
    path.write_text("\n".join([RAVEN_HEADER, good, row]) + "\n")
    with pytest.raises(AnnotationError, match=f"bad.txt {message}"):
        read_raven_table(path)


def test_raven_missing_column_is_named(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("Selection\tBegin Time (s)\tEnd Time (s)\tSpecies ID\n1\t0\t1\t2\n")
    with pytest.raises(AnnotationError, match="line 1: missing column.*Score"):
        read_raven_table(path)


def test_writers_are_atomic(tmp_path, some_detections, monkeypatch):
    path = tmp_path / "table.txt"
    path.write_text("old")

    def broken_name(species_id, species_names):
        raise RuntimeError("interrupted")

    monkeypatch.setattr("speechbrain_rfcx.detections.tables.species_name", broken_name)
    with pytest.raises(RuntimeError):
        write_raven_table(path, some_detections)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["table.txt"]


# ---------------------------------------------------------------------------
# Audacity
# ---------------------------------------------------------------------------


def test_audacity_round_trip_with_and_without_bands(
    tmp_path, some_detections, assert_same_detections
):
    path = tmp_path / "labels.txt"
    write_audacity_labels(path, some_detections)
    lines = path.read_text().splitlines()
    assert lines[:2] == ["1.234567\t2.500000\ts3 0.871", "\\\t512.250000\t2048.500000"]
    assert lines[2] == "4.000000\t5.750000\ts0 0.500"
    assert len(lines) == 5  # two detections have a band
    assert_same_detections(read_audacity_labels(path), some_detections, score_tol=5e-4)

    no_bands = [
        Detection(d.species_id, d.t_min, d.t_max, d.score) for d in some_detections
    ]
    write_audacity_labels(path, no_bands)
    assert len(path.read_text().splitlines()) == 3
    assert_same_detections(read_audacity_labels(path), no_bands, score_tol=5e-4)


def test_audacity_species_names_round_trip(tmp_path, some_detections):
    names = {3: "Eleutherodactylus coqui", 0: "tink"}
    path = tmp_path / "labels.txt"
    write_audacity_labels(path, some_detections, species_names=names)
    assert path.read_text().splitlines()[0].endswith("\tEleutherodactylus coqui 0.871")
    got = read_audacity_labels(path, species_names=names)
    assert [d.species_id for d in got] == [3, 0, 17]  # s17 has no name


def test_audacity_negative_frequencies_mean_no_band(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("1\t2\ts1 0.5\n\\\t-1.000000\t-1.000000\n")
    assert read_audacity_labels(path) == [Detection(1, 1.0, 2.0, 0.5)]


@pytest.mark.parametrize(
    "text, message",
    [
        ("1\t2\ts1 0.5\n1\t2\tfrog\n", "line 2: label 'frog'"),
        ("1\t2\ts1 0.5\n1\t2\tcoqui 0.5\n", "line 2: label 'coqui 0.5'"),
        ("1\t2\ts1 high\n", "line 1: score 'high'"),
        ("\\\t100\t200\n", "line 1: frequency line without a label"),
        ("1\t2\ts1 0.5\n\\\t100\t200\n\\\t100\t200\n", "line 3: frequency line"),
        ("1\t2\ts1 0.5\n\\\t100\n", "line 2: a frequency line needs"),
        ("1\ts1 0.5\n", "line 1: a label line needs"),
        ("1\tx\ts1 0.5\n", "line 1: end 'x'"),
    ],
)
def test_audacity_malformed_line_is_named(tmp_path, text, message):
    path = tmp_path / "labels.txt"
    path.write_text(text)
    with pytest.raises(AnnotationError, match=message):
        read_audacity_labels(path)


# ---------------------------------------------------------------------------
# CSV
# ---------------------------------------------------------------------------


def test_detections_csv(tmp_path, some_detections):
    path = tmp_path / "detections.csv"
    write_detections_csv(path, some_detections, recording_id="rec9")
    frame = pd.read_csv(path, dtype={"recording_id": str})
    assert list(frame.columns) == [
        "recording_id",
        "species_id",
        "t_min",
        "f_min",
        "t_max",
        "f_max",
        "score",
    ]
    assert (frame["recording_id"] == "rec9").all()
    assert frame["species_id"].tolist() == [3, 0, 17]
    assert frame["t_min"].tolist() == [d.t_min for d in some_detections]
    assert frame["score"].tolist() == [d.score for d in some_detections]
    assert np.isnan(frame.loc[1, "f_min"]) and frame.loc[2, "f_max"] == 24000.0

    write_detections_csv(path, {"a": some_detections[:1], "b": some_detections[1:]})
    assert pd.read_csv(path)["recording_id"].tolist() == ["a", "b", "b"]
    write_detections_csv(path, some_detections)
    assert "recording_id" not in pd.read_csv(path).columns
