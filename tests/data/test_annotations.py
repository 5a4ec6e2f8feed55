"""RFCX CSV reading: types, extra columns, and line-numbered errors."""

import pytest

from speechbrain_rfcx.data.annotations import (
    AnnotationError,
    boxes_by_recording,
    read_rfcx_csv,
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
