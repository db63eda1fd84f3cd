"""pandas' row index written into a data file (``to_csv`` without ``index=False``, ``to_json(orient="table")``) is
recognised and dropped, the user told once per file; it was a metadata field named "" (or ``Unnamed: 0``,
``index``) holding row numbers on every record."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest

from dsft.data.ingest import ingest

FRAME = pd.DataFrame({"instruction": ["a", "b", "c"], "output": ["x", "y", "z"]})


def _told(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if "row index" in record.getMessage()]


def _metas(path: Path) -> list[dict]:
    result = ingest([str(path)])
    assert result.rejections == [] and len(result.conversations) == 3
    return [{k: v for k, v in c.meta.items() if k != "origin"} for c in result.conversations]


def test_the_index_to_csv_writes_is_dropped_and_told_once(tmp_path: Path, caplog) -> None:
    path = tmp_path / "qa.csv"
    FRAME.to_csv(path)  # header ',instruction,output'
    with caplog.at_level(logging.WARNING, logger="dsft"):
        assert _metas(path) == [{}, {}, {}]
    assert _told(caplog) == [f"{path}: column 1 (no name) not read: pandas' row index, which DataFrame.to_csv writes; "
                             "write the file with index=False to leave it out"]


def test_an_index_read_back_as_unnamed_and_written_again_is_dropped(tmp_path: Path, caplog) -> None:
    first, path = tmp_path / "first.csv", tmp_path / "again.csv"
    FRAME.to_csv(first)
    pd.read_csv(first).to_csv(path)  # header ',Unnamed: 0,instruction,output'
    with caplog.at_level(logging.WARNING, logger="dsft"):
        assert _metas(path) == [{}, {}, {}]
    assert len(_told(caplog)) == 1 and "columns 1 (no name) and 2 ('Unnamed: 0') not read" in _told(caplog)[0]


def test_columns_with_no_name_after_the_data_are_no_field_named_empty(tmp_path: Path, caplog) -> None:
    path = tmp_path / "sheet.csv"
    path.write_text("instruction,output,,\na,x,,\nb,y,,note\nc,z,kept,\n")  # a spreadsheet's trailing separators
    with caplog.at_level(logging.WARNING, logger="dsft"):
        assert _metas(path) == [{}, {"column 4": "note"}, {"column 3": "kept"}]
    assert _told(caplog) == []


def test_the_index_to_json_orient_table_writes_is_dropped_and_told_once(tmp_path: Path, caplog) -> None:
    path = tmp_path / "qa.json"
    FRAME.to_json(path, orient="table")
    with caplog.at_level(logging.WARNING, logger="dsft"):
        assert _metas(path) == [{}, {}, {}]
    assert _told(caplog) == [f"{path}: field 'index' not read: pandas' row index, which "
                             "DataFrame.to_json(orient='table') writes; write the file with index=False to leave it out"]


def test_an_index_the_frame_named_is_data(tmp_path: Path, caplog) -> None:
    path = tmp_path / "qa.json"
    FRAME.rename_axis("id").to_json(path, orient="table")
    with caplog.at_level(logging.WARNING, logger="dsft"):
        assert _metas(path) == [{"id": 0}, {"id": 1}, {"id": 2}]
    assert _told(caplog) == []


@pytest.mark.parametrize("name", ["qa.jsonl", "qa.json", "qa.parquet"])
def test_an_index_read_back_as_unnamed_and_written_as_records_is_dropped(tmp_path: Path, caplog, name: str) -> None:
    first, path = tmp_path / "first.csv", tmp_path / name
    FRAME.to_csv(first)
    frame = pd.read_csv(first)  # columns 'Unnamed: 0', 'instruction', 'output'
    if name.endswith(".parquet"):
        frame.to_parquet(path)
    else:
        frame.to_json(path, orient="records", lines=name.endswith(".jsonl"))
    with caplog.at_level(logging.WARNING, logger="dsft"):
        assert _metas(path) == [{}, {}, {}]
    assert _told(caplog) == [f"{path}: field 'Unnamed: 0' not read: pandas' row index, which DataFrame.to_csv writes "
                             "and read_csv reads back under that name; write the CSV with index=False, or read it with "
                             "index_col=0"]


def _read_back_twice(tmp_path: Path) -> pd.DataFrame:
    """FRAME through to_csv and read_csv twice: columns 'Unnamed: 0.1' (pandas' name for a second 'Unnamed: 0'),
    'Unnamed: 0', 'instruction', 'output'."""
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    FRAME.to_csv(first)
    pd.read_csv(first).to_csv(second)
    return pd.read_csv(second)


def test_an_index_read_back_twice_and_written_as_records_is_dropped(tmp_path: Path, caplog) -> None:
    path = tmp_path / "qa.jsonl"
    _read_back_twice(tmp_path).to_json(path, orient="records", lines=True)
    with caplog.at_level(logging.WARNING, logger="dsft"):
        assert _metas(path) == [{}, {}, {}]
    assert len(_told(caplog)) == 1 and "fields 'Unnamed: 0.1' and 'Unnamed: 0' not read" in _told(caplog)[0]


def test_an_index_read_back_twice_and_written_again_is_dropped(tmp_path: Path, caplog) -> None:
    path = tmp_path / "again.csv"
    _read_back_twice(tmp_path).to_csv(path)  # header ',Unnamed: 0.1,Unnamed: 0,instruction,output'
    with caplog.at_level(logging.WARNING, logger="dsft"):
        assert _metas(path) == [{}, {}, {}]
    assert len(_told(caplog)) == 1 and "columns 1 (no name), 2 ('Unnamed: 0.1') and 3 ('Unnamed: 0') not read" in \
        _told(caplog)[0]
