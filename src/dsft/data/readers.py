"""Readers: files, directories, globs and saved ``datasets`` directories -> a stream of raw records.

Every record carries its provenance (``source`` file and ``location``: line, row or item number), so a
rejection can always say where the bad record is. Readers never raise for a bad *record*: an unreadable
line becomes a :class:`RawRecord` with ``error`` set and is rejected downstream with that reason.
They raise :class:`~dsft.errors.DataError` only for problems with the *input itself* (no such file,
unsupported extension, a glob matching nothing).

JSONL, CSV, Parquet and saved datasets are streamed (memory does not grow with the file size); a
``.json`` file holding one array must be parsed whole, which is why large corpora should be JSONL.

>>> import json, tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "tiny.jsonl"
>>> _ = path.write_text('{"text": "hi"}\\n{oops\\n')
>>> [(r.location, r.data, r.error is not None) for r in read_records([str(path)])]
[('line 1', {'text': 'hi'}, False), ('line 2', None, True)]
"""

from __future__ import annotations

import csv
import glob
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsft.disk import not_a_file_reason
from dsft.errors import DataError
from dsft.models.resolve import is_model_dir
from dsft.text_encoding import encoding_hint, wide_text_hint

SUPPORTED_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
_PARQUET_BATCH_ROWS = 1024  # rows per pyarrow batch: bounded memory whatever the file size
# Characters of an unparsable record's source text kept for rejects.jsonl (``raw``; ``raw_cut`` says cut).
MAX_RAW_CHARS = 2000


@dataclass
class RawRecord:
    """One record as read: the parsed value (``data``) or the reason it could not be read (``error``).

    A record that could not be parsed keeps its source text in ``raw`` (at most :data:`MAX_RAW_CHARS`
    characters; ``raw_cut`` when there was more; undecodable bytes as lone surrogates).
    """

    source: str
    location: str
    data: Any = None
    error: str | None = None
    raw: str | None = None
    raw_cut: bool = False

    @property
    def where(self) -> str:
        """``file:line`` for line-based files, ``file row N`` / ``file item N`` otherwise."""
        if self.location.startswith("line "):
            return f"{self.source}:{self.location[5:]}"
        return f"{self.source} {self.location}"


def is_saved_dataset(path: Path) -> bool:
    """True for a directory written by ``datasets`` ``save_to_disk`` (a Dataset or a DatasetDict)."""
    return path.is_dir() and any(
        (path / name).is_file() for name in ("dataset_info.json", "state.json", "dataset_dict.json")
    )


def check_outputs_spare_inputs(patterns: list[str], out: Path, names: tuple[str, ...], flag: str,
                               label: str = "output") -> None:
    """Raise a :class:`DataError` when writing the files ``names`` into ``out`` would replace one of the inputs
    ``patterns`` (paths, directories, globs): never allowed, ``--overwrite`` or not."""
    if not out.is_dir():
        return
    targets = {(out / name).resolve(): name for name in names}
    for path in expand_inputs(patterns):
        name = targets.get(Path(path).resolve())
        if name is not None:
            raise DataError(f"{flag}: would overwrite the input {path} with the {label} {name}; choose another "
                            "output directory")


def is_glob(pattern: str) -> bool:
    """Whether :func:`expand_inputs` reads ``pattern`` as a glob: it holds ``*?[`` and names no existing path (one is
    taken literally, even where its name holds glob characters: ``data[v2].jsonl``)."""
    return not Path(pattern).exists() and any(ch in pattern for ch in "*?[")


def expand_inputs(patterns: list[str]) -> list[Path]:
    """Files (and saved dataset directories) named by paths, directories and globs, in a stable order.

    Directories are searched recursively for supported files (sorted by path) unless they are saved
    datasets. A pattern that matches nothing is an error that names it.
    """
    found: list[Path] = []
    for pattern in patterns:
        path = Path(pattern)
        if pattern == "":  # Path("") is the current directory: an unset shell variable read all of it
            raise DataError(f"{pattern!r}: an empty path names no data; name a file, a directory ('.' for the current "
                            "one) or a glob")
        if is_glob(pattern):
            matches = sorted(Path(p) for p in glob.glob(pattern, recursive=True))
            files = [p for p in matches if _is_readable_input(p)]
            if not files:
                raise DataError(f"{pattern}: the glob matches no {'/'.join(SUPPORTED_SUFFIXES)} file")
            found.extend(files)
        elif is_saved_dataset(path):
            found.append(path)
        elif path.is_dir():
            if is_model_dir(path):  # its config.json and tokenizer files were read as records, all rejected
                raise DataError(f"{pattern}: looks like a model directory (config.json beside weights), not data; "
                                f"name {'/'.join(SUPPORTED_SUFFIXES)} files, a directory of them or a saved dataset")
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES)
            if not files:
                raise DataError(f"{pattern}: the directory holds no {'/'.join(SUPPORTED_SUFFIXES)} file")
            found.extend(files)
        elif path.is_file():
            if path.suffix.lower() not in SUPPORTED_SUFFIXES:
                raise DataError(
                    f"{pattern}: unsupported file type {path.suffix or '(none)'}; "
                    f"use {', '.join(SUPPORTED_SUFFIXES)} or a saved datasets directory"
                )
            found.append(path)
        else:
            raise DataError(f"{pattern}: {not_a_file_reason(path)}")
    for path in found:
        _refuse_wide_text(path)
    return found


def _refuse_wide_text(path: Path) -> None:
    """A UTF-16/UTF-32 text file (Windows Notepad's "Unicode" save) is refused whole: read as UTF-8 it was split
    at stray newline bytes into records that each failed for another reason (a GBK one, say)."""
    if path.suffix.lower() not in (".json", ".jsonl", ".csv") or not path.is_file():
        return
    with path.open("rb") as handle:
        hint = wide_text_hint(handle.read(4096))
    if hint:
        raise DataError(f"{path}: not UTF-8 text{hint}")


def _is_readable_input(path: Path) -> bool:
    return (path.is_file() and path.suffix.lower() in SUPPORTED_SUFFIXES) or is_saved_dataset(path)


def read_records(patterns: list[str]) -> Iterator[RawRecord]:
    """Stream every record of every input named by ``patterns`` (see :func:`expand_inputs`)."""
    for path in expand_inputs(patterns):
        yield from read_path(path)


def read_path(path: Path) -> Iterator[RawRecord]:
    """Stream the records of one file or saved dataset directory."""
    if is_saved_dataset(path):
        return read_saved_dataset(path)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        if _holds_one_json_document(path):
            return read_json(path)
        return read_objects_over_lines(path) if _opens_with_an_object_over_lines(path) else read_jsonl(path)
    if suffix == ".json":
        return read_json(path)
    if suffix == ".csv":
        return read_csv(path)
    if suffix == ".parquet":
        return read_parquet(path)
    raise DataError(f"{path}: unsupported file type {suffix or '(none)'}")


def _unparsed(source: str, location: str, error: str, text: str) -> RawRecord:
    """A record that could not be parsed, with the start of its source text."""
    return RawRecord(source, location, error=error, raw=text[:MAX_RAW_CHARS], raw_cut=len(text) > MAX_RAW_CHARS)


def _parse_json_line(raw: bytes, source: str, number: int) -> RawRecord:
    location = f"line {number}"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _unparsed(source, location, f"not valid UTF-8 (bad byte at offset {exc.start}){encoding_hint(raw)}",
                         raw.decode("utf-8", errors="surrogateescape"))
    try:
        return RawRecord(source, location, data=json.loads(text))
    except json.JSONDecodeError as exc:
        return _unparsed(source, location, f"malformed JSON: {exc.msg} (column {exc.colno})", text)
    except RecursionError:
        return _unparsed(source, location, "malformed JSON: nested too deeply", text)


def read_jsonl(path: Path) -> Iterator[RawRecord]:
    """One record per non-blank line; lines are decoded one at a time (binary mode, strict UTF-8).

    Blank lines are separators, not records, so they are not counted.
    """
    source = str(path)
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark some editors write
            if raw.strip():
                yield _parse_json_line(raw.rstrip(b"\r\n"), source, number)


def _holds_one_json_document(path: Path) -> bool:
    """Whether a ``.jsonl`` file is one JSON array (or ``{"data": [...]}``) spread over lines, as an editor or
    ``json.dump(..., indent=1)`` writes it: its first non-blank line does not parse alone, and the file opens as an
    array does; or on its one line, as ``json.dump(records, f)`` writes it (read line by line, that line was one
    record that is 'a list'). Reading it line by line would reject every line; datasets' json loader reads it whole.
    """
    with open(path, "rb") as handle:
        first = next((line for line in handle if line.strip()), b"").removeprefix(b"\xef\xbb\xbf")
        rest = handle.read(256)
    try:
        value = json.loads(first)
    except (ValueError, RecursionError):
        return _ARRAY_START.match((first + rest).decode("utf-8", errors="replace")) is not None
    records = value.get("data") if isinstance(value, dict) else value
    return (not rest.strip() and isinstance(records, list) and bool(records)
            and all(isinstance(record, dict) for record in records))


_HEAD_BYTES = 1 << 20  # what is read to see whether a .jsonl file's first record spans several lines


def _opens_with_an_object_over_lines(path: Path) -> bool:
    """Whether a ``.jsonl`` file's first record is a JSON object written over several lines (``json.dumps(record,
    indent=2)`` a record, one after another): read line by line, every line of it was a malformed record."""
    with open(path, "rb") as handle:
        first = next((line for line in handle if line.strip()), b"").removeprefix(b"\xef\xbb\xbf")
        if not first.lstrip().startswith(b"{") or _parses(first.decode("utf-8", errors="replace")):
            return False  # JSON lines (or not JSON at all): nothing more is read here
        text = (first + handle.read(_HEAD_BYTES)).decode("utf-8", errors="replace").lstrip()
    try:
        _, end = json.JSONDecoder().raw_decode(text)
    except ValueError:
        return False
    return "\n" in text[:end]


def _parses(text: str) -> bool:
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


def read_objects_over_lines(path: Path) -> Iterator[RawRecord]:
    """JSON objects one after another, each over several lines (see :func:`_opens_with_an_object_over_lines`), each
    located at the line it begins on. From the first text that does not decode as an object, the rest of the file is
    one rejected record, its reason naming where."""
    source = str(path)
    text = path.read_bytes().removeprefix(b"\xef\xbb\xbf").decode("utf-8", errors="surrogateescape")
    decoder, position = json.JSONDecoder(), 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position >= len(text):
            return
        line = text.count("\n", 0, position) + 1
        try:
            value, position = decoder.raw_decode(text, position)
        except (ValueError, RecursionError) as exc:
            reason = getattr(exc, "msg", "nested too deeply")
            yield _unparsed(source, f"line {line}", f"malformed JSON: {reason}; the rest of the file (from line {line}) "
                            "could not be split into records", text[position:])
            return
        yield RawRecord(source, f"line {line}", data=value)


def read_json(path: Path) -> Iterator[RawRecord]:
    """A JSON array, a ``{"data": [...]}`` wrapper, or one object; JSON-lines content is accepted too.

    Items are located as ``item N`` (1-based). Bytes that are not UTF-8 are kept as lone surrogates
    (``surrogateescape``), so validation rejects exactly the items that hold them. A file that does not
    parse is recovered record by record where its shape allows: JSON lines under a ``.json`` name are
    read line by line, a damaged array item by item (see :func:`split_json_array`). Only a file with
    no recoverable shape is one rejected record, and its reason says so.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.json"
    >>> _ = path.write_bytes(b'[{"text": "ok"}, {"text": oops}, {"text": "fine"}]')
    >>> [(r.location, r.error is None) for r in read_json(path)]
    [('item 1', True), ('item 2', False), ('item 3', True)]
    """
    source = str(path)
    text = path.read_bytes().decode("utf-8-sig", errors="surrogateescape")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        yield from _recover_json(path, text, exc)
        return
    except RecursionError:
        yield RawRecord(source, "item 1", error="malformed JSON: nested too deeply")
        return
    orient = pandas_table_orient(value)
    if orient is not None:  # pandas' default to_json: read as one record, its every column was 'an object'
        yield RawRecord(source, "item 1", error=f"{_PANDAS_SHAPES[orient]}, as pandas' DataFrame.to_json(orient="
                        f"{orient!r}) writes it, not records; write df.to_json(PATH, orient='records', lines=True, "
                        "force_ascii=False)")
        return
    if isinstance(value, dict) and isinstance(value.get("data"), list):
        value = value["data"]
    items = value if isinstance(value, list) else [value]
    for number, item in enumerate(items, start=1):
        yield RawRecord(source, f"item {number}", data=item)


_PANDAS_SHAPES = {"columns": "a table by column, {column: {row: value}}", "index": "a table by row, {row: {column: value}}",
                  "split": "a table as {columns, index, data}"}


def pandas_table_orient(value: Any) -> str | None:
    """The ``orient`` pandas' ``DataFrame.to_json`` wrote ``value`` with, when it is a table and not records:
    ``columns`` (its default), ``index`` or ``split``; None for anything else. Row labels must be pandas' default
    row numbers, so one record whose fields are objects (``{"chosen": {"role": ...}, "rejected": {...}}``) is none.

    >>> pandas_table_orient({"input": {"0": "q1", "1": "q2"}, "output": {"0": "a1", "1": "a2"}})
    'columns'
    >>> pandas_table_orient({"0": {"input": "q1", "output": "a1"}})
    'index'
    >>> pandas_table_orient({"columns": ["input", "output"], "index": [0], "data": [["q1", "a1"]]})
    'split'
    >>> [pandas_table_orient(v) for v in ({"data": [{"input": "q", "output": "a"}]}, {"chosen": {"role": "assistant"}})]
    [None, None]
    """
    if not isinstance(value, dict) or not value:
        return None
    if ({"columns", "data"} <= value.keys() <= {"columns", "index", "data"} and isinstance(value["columns"], list)
            and isinstance(value["data"], list) and all(isinstance(row, list) for row in value["data"])):
        return "split"
    if not all(isinstance(inner, dict) and inner for inner in value.values()):
        return None
    if all(isinstance(key, str) and key.isdigit() for key in value):
        return "index"
    rows = [set(inner) for inner in value.values()]
    if all(keys == rows[0] for keys in rows) and all(key.isdigit() for key in rows[0]):
        return "columns"
    return None


def _looks_like_json_lines(text: str) -> bool:
    """Several lines, at least half of which parse alone as a JSON object: JSON lines, however damaged."""
    lines = [line for line in text.split("\n") if line.strip()]  # "\n" only, as read_jsonl splits
    if len(lines) < 2:
        return False
    whole = 0
    for line in lines:
        try:
            whole += isinstance(json.loads(line), dict)
        except (ValueError, RecursionError):
            pass
    return 2 * whole >= len(lines)


def _recover_json(path: Path, text: str, exc: json.JSONDecodeError) -> Iterator[RawRecord]:
    """Records of a ``.json`` file that does not parse whole (see :func:`read_json`)."""
    source = str(path)
    if _looks_like_json_lines(text) or (exc.msg == "Extra data" and _ARRAY_START.match(text) is None):
        # Many datasets ship JSON lines under a .json name; read them as such.
        yield from read_jsonl(path)
        return
    items = split_json_array(text)
    if not items:  # not an array, or a damaged one with nothing in it
        yield RawRecord(source, "item 1", error=f"malformed JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}); "
                                                "the file could not be split into records, so it counts as one")
        return
    for number, item in enumerate(items, start=1):
        location = f"item {number}"
        try:
            yield RawRecord(source, location, data=json.loads(item))
        except json.JSONDecodeError as item_exc:
            yield _unparsed(source, location, f"malformed JSON in array item: {item_exc.msg}", item.strip())
        except RecursionError:
            yield _unparsed(source, location, "malformed JSON: nested too deeply", item.strip())


_ARRAY_START = re.compile(r'\s*(\{\s*"data"\s*:\s*)?\[')


def split_json_array(text: str) -> list[str] | None:
    """The source text of each top-level item of a (possibly damaged) JSON array, or None if not an array.

    Items end at top-level commas, tracked through strings and nesting; a raw newline inside a string
    ends it (JSON strings hold none, so its closing quote was lost), which keeps one damaged item from
    swallowing the next line's. A missing ``]`` (a truncated file) ends the last item at the end.

    >>> split_json_array('[{"a": 1}, {"b": [2, 3]}, oops]')
    ['{"a": 1}', ' {"b": [2, 3]}', ' oops']
    >>> split_json_array('{"data": [1, "x, y"')
    ['1', ' "x, y"']
    >>> split_json_array('{"a": 1') is None
    True
    """
    opened = _ARRAY_START.match(text)
    if opened is None:
        return None
    items: list[str] = []
    depth, in_string, escaped, start = 0, False, False, opened.end()
    for index in range(start, len(text)):
        char = text[index]
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char in '"\n':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
        elif char in "]}" and depth > 0:
            depth -= 1
        elif char == "]":
            items.append(text[start:index])
            break
        elif char == "," and depth == 0:
            items.append(text[start:index])
            start = index + 1
    else:
        items.append(text[start:])
    return [item for item in items if item.strip()]


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
    return _unparsed(source, f"line {start}", f"malformed CSV: {what} opens a quoted field on line {start} that is "
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
                yield _unparsed(source, f"line {reader.line_num}", f"malformed CSV: the header names {twice}, so "
                                "every row would keep only the last of those cells; rename the columns apart",
                                separator.join(reader.fieldnames or []))
                return
            for number, row in enumerate(reader, start=1):
                if lines.ended:
                    cells = [cell for key, value in row.items() for cell in (value if key is None else [value])]
                    yield _unclosed_quote(source, f"row {number}", cells, reader.line_num)
                    return
                location = f"row {number} ({lines.row_lines(reader.line_num)})"
                if None in row:
                    yield RawRecord(source, location, error="more cells than header columns")
                    continue
                yield RawRecord(source, location, data={k: v for k, v in row.items() if v is not None})
        except csv.Error as exc:
            yield RawRecord(source, f"line {reader.line_num}", error=f"malformed CSV: {exc}")


def read_parquet(path: Path) -> Iterator[RawRecord]:
    """One record per row, read in bounded batches with pyarrow."""
    import pyarrow.parquet as pq

    source = str(path)
    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a damaged file
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
    number = 0
    for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH_ROWS):
        for row in batch.to_pylist():
            number += 1
            yield RawRecord(source, f"row {number}", data=row)


def read_saved_dataset(path: Path) -> Iterator[RawRecord]:
    """Rows of a ``save_to_disk`` directory (memory-mapped Arrow); every split of a DatasetDict."""
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as exc:  # noqa: BLE001 - datasets raises several types for a damaged directory
        raise DataError(f"{path}: not a readable saved dataset ({exc})") from None
    parts = loaded.items() if isinstance(loaded, datasets.DatasetDict) else [("", loaded)]
    for split_name, dataset in parts:
        prefix = f"{split_name} " if split_name else ""
        for number, row in enumerate(dataset, start=1):
            yield RawRecord(str(path), f"{prefix}row {number}", data=row)
