"""CSV files: one record per row, streamed, the separator told by the header line (:func:`csv_separator`), rows
with line breaks in quoted cells located by their first and last line, an unclosed quote and a header that names a
column twice each one rejected record; pandas' row index (a first column with no name) is dropped
(:mod:`dsft.data.pandas_index`), and a column with no name elsewhere is ``column N`` where a row fills it.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "semi.csv"
>>> _ = path.write_text('input;output\\nq;a\\n')
>>> [(r.location, r.data) for r in read_csv(path)]
[('row 1 (line 2)', {'input': 'q', 'output': 'a'})]
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dsft.data.pandas_index import leading_index_columns, say_index_dropped
from dsft.data.raw_record import RawRecord, unparsed


class _Lines:
    """A text file's lines for ``csv.reader``, noting when the end of the file was reached and the line the row
    being read began on (``csv.reader``'s ``line_num`` is the row's last line: a quoted cell with line breaks,
    as Excel writes a cell with Alt+Enter, spans several)."""

    def __init__(self, handle: Any) -> None:
        self.handle, self.ended = handle, False
        self.read = 0  # lines read, as csv.reader counts them
        self.row_start: int | None = None  # first line of the row being read; None between rows

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        try:
            line = next(self.handle)
        except StopIteration:
            self.ended = True
            raise
        self.read += 1
        if self.row_start is None and line.strip("\r\n"):  # csv.reader skips an empty line between rows
            self.row_start = self.read
        return line

    def row_lines(self, end: int) -> str:
        """``line L`` or ``lines S-L`` of the row just read (ending on line ``end``); the next row starts afresh."""
        start, self.row_start = self.row_start or end, None
        return f"line {end}" if start == end else f"lines {start}-{end}"


def _unclosed_quote(source: str, what: str, cells: list[str | None], end_line: int) -> RawRecord:
    """The row (or header) that ran into the end of the file: a field opened a quote that never closed, and the
    csv module (not strict) read the rest of the file into it. That field is the row's last; its value is the text
    after the quote, so its newlines count the lines from the quote to the end."""
    swallowed = next((cell for cell in reversed(cells) if cell is not None), "")
    start = end_line - swallowed.count("\n") + swallowed.endswith("\n")
    lines = f"line {start}" if start == end_line else f"lines {start}-{end_line}"
    return unparsed(source, f"line {start}", f"malformed CSV: {what} opens a quoted field on line {start} that is "
                     f"never closed, so {lines} (the rest of the file) would be one cell; close the quote, or double "
                     'it ("") to keep it as text', swallowed)


def csv_separator(header: str) -> str:
    r"""The character that separates a CSV's columns: a comma, unless the header line holds none and holds tabs
    or semicolons instead (Excel's 'CSV' in locales whose decimal mark is a comma, its text export).

    >>> csv_separator("input,output\n"), csv_separator("input;output\n"), csv_separator("input\toutput\n")
    (',', ';', '\t')
    >>> csv_separator("text\n")
    ','
    """
    if "," in header:
        return ","
    found = [separator for separator in ("\t", ";") if separator in header]
    return found[0] if len(found) == 1 else ","


def _named_twice(header: list[str]) -> str:
    """The columns a CSV header names more than once (with their positions, from 1), or ''. Empty names (the
    trailing separators of a spreadsheet export, pandas' index column) hold nothing and are left out.

    >>> _named_twice(["input", "output", "input", "", ""])
    "column 'input' twice (columns 1 and 3)"
    >>> _named_twice(["a", "b", "a", "b", "a"]), _named_twice(["a", "b"])
    ("column 'a' 3 times (columns 1, 3 and 5), column 'b' twice (columns 2 and 4)", '')
    """
    places: dict[str, list[int]] = {}
    for number, name in enumerate(header, start=1):
        if name.strip():
            places.setdefault(name, []).append(number)
    said = []
    for name, numbers in places.items():
        if len(numbers) > 1:
            times = "twice" if len(numbers) == 2 else f"{len(numbers)} times"
            columns = ", ".join(map(str, numbers[:-1])) + f" and {numbers[-1]}"
            said.append(f"column {name!r} {times} (columns {columns})")
    return ", ".join(said)


def _named_columns(source: str, header: list[str]) -> tuple[list[str], set[str], set[str]]:
    """A header's names for ``csv.DictReader``, the columns not read and the columns that have no name.

    pandas' row index at the start (:func:`~dsft.data.pandas_index.leading_index_columns`) is not read, and the
    user is told once. Any other column with no name (a spreadsheet's trailing separators) is ``column N``, its
    position: an empty cell there is no field, a filled one is kept under that name, where every such column was
    the one field ``""`` holding the last of their cells.

    >>> names, unread, nameless = _named_columns("a.csv", ["input", "output", "", ""])
    >>> names, unread, sorted(nameless)
    (['input', 'output', 'column 3', 'column 4'], set(), ['column 3', 'column 4'])
    """
    index = leading_index_columns(header)
    if index:
        said = [f"{number} ({repr(name) if name else 'no name'})" for number, name in enumerate(header[:index], start=1)]
        columns = f"column {said[0]}" if index == 1 else f"columns {', '.join(said[:-1])} and {said[-1]}"
        say_index_dropped(source, columns, "DataFrame.to_csv")
    names = [name or f"column {number}" for number, name in enumerate(header, start=1)]
    return names, set(names[:index]), {name for name, given in zip(names[index:], header[index:]) if not given}


def read_csv(path: Path) -> Iterator[RawRecord]:
    """One record per CSV row (header = column names), streamed; columns separated by commas, or by the tabs or
    semicolons of a header that holds no comma (:func:`csv_separator`).

    Bytes that are not UTF-8 are kept as lone surrogates (``surrogateescape``) so validation can
    reject exactly the rows that hold them instead of failing the whole file. A quoted field that is never
    closed is one rejected record located where the quote opens (the csv module read the rest of the file
    into that field without a word).
    """
    source = str(path)
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # long documents are legitimate cells
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as handle:
        header = handle.readline()
        separator = csv_separator(header)
        handle.seek(0)
        lines = _Lines(handle)
        # A header written 'input, output' (a space after each separator, by hand or by a script) writes its rows so
        # too: the space is no part of a cell, and a quoted cell after it ('q, "a, b"') is still quoted.
        spaced = separator != "\t" and f"{separator} " in header
        reader = csv.DictReader(lines, delimiter=separator, skipinitialspace=spaced)
        try:
            # A complete row ends at the end of its line; only an open quote reads on past the file's last line.
            if reader.fieldnames and lines.ended:
                yield _unclosed_quote(source, "the header", list(reader.fieldnames), reader.line_num)
                return
            lines.row_start = None  # the header's lines are read
            # ' output' or 'input ' is the column 'output' or 'input': no format reads a name with its spaces
            reader.fieldnames = [name.strip() for name in reader.fieldnames or []]
            twice = _named_twice(list(reader.fieldnames or []))
            if twice:  # csv.DictReader keeps the last column of a name: the others' cells would vanish
                yield unparsed(source, f"line {reader.line_num}", f"malformed CSV: the header names {twice}, so "
                                "every row would keep only the last of those cells; rename the columns apart",
                                separator.join(reader.fieldnames or []))
                return
            reader.fieldnames, unread, nameless = _named_columns(source, list(reader.fieldnames or []))
            for number, row in enumerate(reader, start=1):
                if lines.ended:
                    cells = [cell for key, value in row.items() for cell in (value if key is None else [value])]
                    yield _unclosed_quote(source, f"row {number}", cells, reader.line_num)
                    return
                location = f"row {number} ({lines.row_lines(reader.line_num)})"
                if None in row:
                    yield RawRecord(source, location, error="more cells than header columns")
                    continue
                if unread or nameless:
                    row = {k: v for k, v in row.items() if k not in unread and not (k in nameless and v == "")}
                yield RawRecord(source, location, data={k: v for k, v in row.items() if v is not None})
        except csv.Error as exc:
            yield RawRecord(source, f"line {reader.line_num}", error=f"malformed CSV: {exc}")
