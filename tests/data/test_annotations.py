"""RFCX CSV reading: types, extra columns, and line-numbered errors; bands."""

import pandas as pd
import pytest

from speechbrain_rfcx.data.annotations import (
    AnnotationError,
    Box,
    boxes_by_recording,
    read_rfcx_csv,
    species_bands,
)

HEADER = "recording_id,species_id,songtype_id,t_min,f_min,t_max,f_max"


def _csv(tmp_path, *rows, header=HEADER):
    path = tmp_path / "boxes.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_types_extra_columns_and_line_numbers(tmp_path):
    path = _csv(
        tmp_path,
        "00ab,3,1,1.5,500.5,2.5,2000,kept",
        "0007,23,4,0,90,59.9,13687.5,also",
        header=HEADER + ",note",
    )
    df = read_rfcx_csv(path)
    assert list(df.recording_id) == ["00ab", "0007"]  # leading zeros survive
    assert df.species_id.tolist() == [3, 23]
    assert df.note.tolist() == ["kept", "also"]
    assert df.line.tolist() == [2, 3]
    boxes = boxes_by_recording(df)
    assert boxes["0007"][0].f_max == 13687.5


@pytest.mark.parametrize(
    "row,message",
    [
        ("a,2.5,1,0,1,1,2", "line 3: species_id 2.5 is not an integer"),
        ("a,2,1,0,1,inf,2", "line 3: t_max inf is not a finite number"),
        ("a,2,1,0,3,1,2", "line 3: f_min 3.0 is not below f_max 2.0"),
        ("a,2,1,0,-1,1,2", "line 3: f_min -1.0 is negative"),
        ("a,2,1,0,1,1", "line 3: f_max is empty"),
    ],
)
def test_bad_values_name_the_line(tmp_path, row, message):
    path = _csv(tmp_path, "a,1,1,0,1,1,2", row)
    with pytest.raises(AnnotationError) as err:
        read_rfcx_csv(path)
    assert str(err.value) == f"{path} {message}"


def test_custom_class_count(tmp_path):
    path = _csv(tmp_path, "a,30,1,0,1,1,2")
    assert read_rfcx_csv(path, n_classes=31).species_id.tolist() == [30]
    with pytest.raises(AnnotationError, match="outside 0..29"):
        read_rfcx_csv(path, n_classes=30)


def test_not_a_csv(tmp_path):
    path = tmp_path / "x.csv"
    path.write_bytes(b"\xff\xfe\x00garbage\x00\n\x01")
    with pytest.raises(AnnotationError, match="x.csv"):
        read_rfcx_csv(path)


# ---------------------------------------------------------------------------
# species_bands
# ---------------------------------------------------------------------------


def test_species_bands_quantiles_by_hand():
    f_mins = [100.0, 200.0, 300.0, 400.0, 500.0]
    f_maxs = [1000.0, 2000.0, 3000.0, 4000.0, 5000.0]
    boxes = [Box(4, 1, 0.0, lo, 1.0, hi) for lo, hi in zip(f_mins, f_maxs)]
    boxes.append(Box(1, 1, 0.0, 50.0, 1.0, 60.0))
    # linear interpolation: quantile q of 5 sorted values sits at index 4 q
    assert species_bands(boxes, quantiles=(0.25, 0.75)) == {
        1: (50.0, 60.0),
        4: (200.0, 4000.0),
    }
    assert species_bands(boxes, quantiles=(0.1, 0.9))[4] == (140.0, 4600.0)
    frame = pd.DataFrame([b.to_dict() for b in boxes])
    assert species_bands(frame) == species_bands(boxes)
    assert list(species_bands(frame)) == [1, 4]


def test_species_bands_rejects_bad_input():
    with pytest.raises(ValueError, match="quantiles"):
        species_bands([], quantiles=(0.9, 0.1))
    with pytest.raises(ValueError, match="f_max"):
        species_bands(pd.DataFrame({"species_id": [0], "f_min": [1.0]}))
    assert species_bands([]) == {}
