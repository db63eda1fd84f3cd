"""pandas' row index written into a data file as a column: told apart from the data and dropped, the user told once.

``DataFrame.to_csv(path)`` writes the index as a first column with no name (a header ``,input,output``), which
``pandas.read_csv`` reads back as ``Unnamed: 0`` (and a second ``to_csv`` writes both); ``to_json(orient="table")``
writes it as a field ``index`` that its schema names as the primary key; a frame read back with ``Unnamed: 0`` and
written as records (``to_json(orient="records")``, ``to_parquet``) carries it as that field. Read as data, each
became a metadata field named ``""``, ``Unnamed: 0`` or ``index`` holding row numbers on every record.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from typing import Any

from dsft.data.raw_record import RawRecord

log = logging.getLogger(__name__)

# pandas.read_csv's name for a column whose header cell is empty, and for a second column of that name ('.1'): an
# index written, read back and written again.
_UNNAMED = re.compile(r"Unnamed: \d+(?:\.\d+)?")
_TABLE_INDEX = re.compile(r"index|level_\d+")  # to_json(orient="table")'s names for an index that has none


def leading_index_columns(header: list[str]) -> int:
    """How many columns at the start of a CSV ``header`` are pandas' row index: each with no name or pandas'
    ``Unnamed: N``, and some named column after them.

    >>> leading_index_columns(["", "input", "output"]), leading_index_columns(["", "Unnamed: 0", "input"])
    (1, 2)
    >>> leading_index_columns(["", "Unnamed: 0.1", "Unnamed: 0", "input"])
    3
    >>> leading_index_columns(["input", "", "output"]), leading_index_columns(["", ""]), leading_index_columns([])
    (0, 0, 0)
    """
    count = 0
    while count < len(header) and (not header[count] or _UNNAMED.fullmatch(header[count])):
        count += 1
    return count if count < len(header) else 0


def table_index_fields(value: Any) -> list[str]:
    """The fields of a ``DataFrame.to_json(orient="table")`` document that hold its index with no name of its own
    (``index``, or ``level_0``... for a frame that had a column ``index``); an index the frame named (``id``) is data.

    >>> table_index_fields({"schema": {"fields": [], "primaryKey": ["index"], "pandas_version": "1.4.0"}, "data": []})
    ['index']
    >>> table_index_fields({"schema": {"primaryKey": ["id"], "pandas_version": "1.4.0"}, "data": []})
    []
    >>> table_index_fields({"data": [{"index": 0, "text": "a"}]})
    []
    """
    schema = value.get("schema") if isinstance(value, dict) else None
    if not (isinstance(schema, dict) and "pandas_version" in schema and isinstance(value.get("data"), list)):
        return []
    keys = schema.get("primaryKey")
    return [key for key in keys if isinstance(key, str) and _TABLE_INDEX.fullmatch(key)] if isinstance(keys, list) else []


def say_index_dropped(source: str, columns: str, writer: str) -> None:
    """Tell once, for the file ``source``, that ``columns`` were read as pandas' row index and dropped."""
    log.warning("%s: %s not read: pandas' row index, which %s writes; write the file with index=False to leave it out",
                source, columns, writer)


# pandas.read_csv's name for the nameless first column to_csv writes the index in ('Unnamed: 0.1' where the file
# already held an 'Unnamed: 0': an index read back, written with to_csv and read back again).
_READ_BACK = re.compile(r"Unnamed: 0(?:\.\d+)?")


def without_read_back_index(records: Iterable[RawRecord]) -> Iterator[RawRecord]:
    """``records`` without the field ``Unnamed: 0`` (nor ``Unnamed: 0.1``...): pandas' row index, written by
    ``to_csv``, read back by ``read_csv`` under that name and written again as records. The user is told once per
    file that holds it.

    >>> rows = [RawRecord("qa.jsonl", "line 1", data={"Unnamed: 0": 0, "input": "q", "output": "a"})]
    >>> [record.data for record in without_read_back_index(rows)]
    [{'input': 'q', 'output': 'a'}]
    """
    told: set[str] = set()
    for record in records:
        data = record.data
        index = [key for key in data if _READ_BACK.fullmatch(str(key))] if isinstance(data, dict) else []
        if index:
            if record.source not in told:
                told.add(record.source)
                named = f"field {index[0]!r}" if len(index) == 1 else f"fields {' and '.join(map(repr, index))}"
                log.warning("%s: %s not read: pandas' row index, which DataFrame.to_csv writes and read_csv "
                            "reads back under that name; write the CSV with index=False, or read it with index_col=0",
                            record.source, named)
            record.data = {key: value for key, value in data.items() if key not in index}
        yield record
