"""rfcx-import: Raven / Audacity tables with species names -> the RFCX layout."""

import json
import os

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from speechbrain_rfcx.data.import_tables import main as import_main

HEADER = (
    "Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\t"
    "High Freq (Hz)\tSpecies\tNotes\n"
)


def _recording(folder, name, seconds=4.0, rate=8000):
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    sf.write(path, np.zeros(int(seconds * rate), dtype="float32"), rate)
    return path


def _raven(path, rows):
    """Rows ``(begin, end, low, high, label)``, each repeated for two views."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(HEADER)
        for k, (begin, end, low, high, label) in enumerate(rows, start=1):
            for view in ("Spectrogram 1", "Waveform 1"):
                f.write(f"{k}\t{view}\t1\t{begin}\t{end}\t{low}\t{high}\t{label}\t\n")


@pytest.fixture
def field(tmp_path):
    """Two recordings in site folders, one Raven table each."""
    rec, ann = tmp_path / "rec", tmp_path / "ann"
    _recording(rec / "site_a", "r1.wav")
    _recording(rec / "site_b", "r2.flac")
    _recording(rec / "site_b", "r3.flac")  # no table: left out
    _raven(
        str(ann / "r1.Table.1.selections.txt"),
        [(0.5, 1.5, 500, 900, "tink frog"), (2.0, 3.0, 100, 3000, "noise")],
    )
    _raven(
        str(ann / "r2.BirdNET.selection.table.txt"),
        [(1.0, 2.0, 1000, 2000, "coqui"), (2.5, 3.5, 600, 800, "tink frog")],
    )
    return tmp_path


def _run(field, *extra):
    return import_main(
        [
            "--recordings",
            str(field / "rec"),
            "--annotations",
            str(field / "ann"),
            "--out",
            str(field / "data"),
            *extra,
        ]  # fmt: skip
    )


def test_raven_tables_become_the_rfcx_layout(field, capsys):
    _run(field, "--negative-labels", "noise,unknown")
    data = field / "data"
    species = pd.read_csv(data / "species.csv")
    assert species.to_dict("list") == {
        "species_id": [0, 1],
        "name": ["coqui", "tink frog"],
    }
    tp = pd.read_csv(data / "train_tp.csv", dtype={"recording_id": str})
    assert sorted(
        map(tuple, tp[["recording_id", "species_id", "t_min", "f_max"]].values)
    ) == [
        ("r1", 1, 0.5, 900.0),
        ("r2", 0, 1.0, 2000.0),
        ("r2", 1, 2.5, 800.0),
    ]  # each selection once, though listed for two views
    fp = pd.read_csv(data / "train_fp.csv")
    assert sorted(fp.species_id) == [0, 1]  # the noise box: absent for both species
    assert set(fp.t_min) == {2.0}
    links = sorted(os.listdir(data / "train"))
    assert links == ["r1.wav", "r2.flac"]
    assert os.path.islink(data / "train" / "r1.wav")
    assert os.path.realpath(data / "train" / "r1.wav") == str(
        field / "rec/site_a/r1.wav"
    )
    out = capsys.readouterr().out
    assert "2 recordings, 2 species, 3 boxes" in out and "1 recording(s)" in out


def test_imported_folder_prepares_with_the_names(field, tmp_path):
    from speechbrain_rfcx.data.prepare import prepare_rfcx, summarize_manifest

    _run(field, "--negative-labels", "noise")
    result = prepare_rfcx(field / "data", tmp_path / "prep", n_folds=2)
    assert result["n_classes"] == 2 and result["class_names"] == ["coqui", "tink frog"]
    summary = summarize_manifest(result["train_json"], 2, result["class_names"])
    assert "tink frog" in summary.splitlines()[-1]
    with pytest.raises(ValueError, match="names 2 species but n_classes is 24"):
        prepare_rfcx(field / "data", tmp_path / "prep24", n_folds=2, n_classes=24)


def test_second_import_keeps_the_ids_of_a_species_csv(field, tmp_path):
    _run(field)
    assert not (field / "data" / "train_fp.csv").exists()  # no negatives asked for
    kept = tmp_path / "species.csv"
    kept.write_text("species_id,name\n0,tink frog\n1,coqui\n2,glass frog\n")
    _run(field, "--species", str(kept), "--negative-labels", "noise")  # same --out
    tp = pd.read_csv(field / "data" / "train_tp.csv", dtype={"recording_id": str})
    assert sorted(tp[tp.recording_id == "r2"].species_id) == [0, 1]
    assert len(pd.read_csv(field / "data" / "species.csv")) == 3
    assert len(pd.read_csv(field / "data" / "train_fp.csv")) == 3  # noise x 3 species
    kept.write_text("species_id,name\n0,tink frog\n")
    with pytest.raises(
        SystemExit,
        match=r"r2.BirdNET.selection.table.txt line 2: species 'coqui' is not in",
    ):
        _run(field, "--species", str(kept), "--negative-labels", "noise")


def test_combined_table_with_file_columns_is_read_per_row(tmp_path):
    rec = tmp_path / "rec"
    _recording(rec, "a.wav")
    _recording(rec, "b.wav")
    table = tmp_path / "combined.selections.txt"
    table.write_text(
        "Selection\tBegin Time (s)\tEnd Time (s)\tSpecies\tBegin Path\tFile Offset (s)\n"
        "1\t1.0\t2.0\tcoqui\tC:\\\\data\\\\a.wav\t1.0\n"
        "2\t5.0\t6.5\tcoqui\t/elsewhere/b.wav\t1.0\n"
    )
    import_main(["--recordings", str(rec), "--annotations", str(table),
                 "--out", str(tmp_path / "data")])  # fmt: skip
    tp = pd.read_csv(tmp_path / "data" / "train_tp.csv")
    assert tp[["recording_id", "t_min", "t_max", "f_min", "f_max"]].values.tolist() == [
        ["a", 1.0, 2.0, 0.0, 4000.0],  # no band columns: the whole band
        ["b", 1.0, 2.5, 0.0, 4000.0],  # time within b.wav, from File Offset
    ]


def test_audacity_labels_with_frequency_lines(tmp_path):
    rec, ann = tmp_path / "rec", tmp_path / "ann"
    _recording(rec, "r1.wav")
    os.makedirs(ann)
    (ann / "r1.txt").write_text("0.5\t1.5\tcoqui\n\\\t500\t900\n2.0\t3.0\tcoqui\n")
    import_main(["--recordings", str(rec), "--annotations", str(ann), "--format",
                 "audacity", "--out", str(tmp_path / "data")])  # fmt: skip
    tp = pd.read_csv(tmp_path / "data" / "train_tp.csv")
    assert tp[["t_min", "f_min", "f_max"]].values.tolist() == [
        [0.5, 500.0, 900.0],
        [2.0, 0.0, 4000.0],
    ]


@pytest.mark.parametrize(
    "rows, label_column, message",
    [
        ([(0.5, 1.5, 500, 900, "coqui")], "Common Name",
         r"r1.Table.1.selections.txt line 1: no column 'Common Name' \(--label-column\)"),
        ([(3.0, 4.5, 500, 900, "coqui")], "Species",
         r"r1.Table.1.selections.txt line 2: the box ends at 4.5 s, past the end of "
         r"recording r1 \(4.0 s\)"),
        ([(0.5, 1.5, 500, 4100, "coqui")], "Species",
         r"line 2: the box high frequency 4100.0 Hz is above the Nyquist"),
        ([(0.5, "x", 500, 900, "coqui")], "Species",
         r"line 2: End Time \(s\) 'x' is not a number"),
        ([(0.5, 1.5, 500, 900, "")], "Species", r"line 2: Species is empty"),
    ],
)  # fmt: skip
def test_bad_tables_are_named_with_their_line(tmp_path, rows, label_column, message):
    _recording(tmp_path / "rec", "r1.wav")
    _raven(str(tmp_path / "ann" / "r1.Table.1.selections.txt"), rows)
    with pytest.raises(SystemExit, match=message):
        import_main(["--recordings", str(tmp_path / "rec"), "--annotations",
                     str(tmp_path / "ann"), "--label-column", label_column,
                     "--out", str(tmp_path / "data")])  # fmt: skip
    assert not (tmp_path / "data").exists()  # nothing written


def test_table_without_recording_and_foreign_out_folder_are_refused(field):
    _raven(str(field / "ann" / "r9.Table.1.selections.txt"), [(0, 1, 1, 2, "coqui")])
    with pytest.raises(SystemExit, match=r"r9.Table.1.selections.txt: no recording"):
        _run(field)
    os.remove(field / "ann" / "r9.Table.1.selections.txt")
    os.makedirs(field / "data")
    (field / "data" / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit, match="not empty and holds no earlier import"):
        _run(field)
    assert (field / "data" / "notes.txt").read_text() == "mine"
    os.remove(field / "data" / "notes.txt")
    _run(field)
    record = json.loads((field / "data" / "rfcx_import.json").read_text())
    assert record["counts"]["tp_rows"] == 4  # the noise box is a species here
