"""JSON and JSON-lines files, read as the shape they hold: JSON lines, one array (or ``{"data": [...]}``) spread
over lines or on one line, records pretty-printed one after another, a damaged array split item by item, and the
pandas table layouts (``DataFrame.to_json``'s default) refused with the call that writes records, the row index
of ``orient="table"`` dropped (:mod:`dsft.data.pandas_index`). In every shape a
record whose object names a key twice is rejected naming it (:mod:`dsft.data.json_keys`); a broken record costs
itself, the text of damaged files being cut into records by :mod:`dsft.data.json_splitting`.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "pretty.jsonl"
>>> _ = path.write_text('{\\n  "text": "a"\\n}\\n{\\n  "text": "b"\\n}\\n')
>>> [(r.location, r.data) for r in read_jsonl_by_shape(path)]
[('line 1', {'text': 'a'}), ('line 4', {'text': 'b'})]
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from dsft.data.json_keys import KeyCheckingDecoder, keys_named_twice, named_twice_reason
from dsft.data.json_splitting import (
    array_start,
    next_record_start,
    record_starts,
    split_json_array,
    split_json_array_at,
)
from dsft.data.json_slips import json_slip, malformed
from dsft.data.pandas_index import say_index_dropped, table_index_fields
from dsft.data.raw_record import RawRecord, unparsed

log = logging.getLogger(__name__)
from dsft.text_encoding import encoding_hint


def read_jsonl_by_shape(path: Path) -> Iterator[RawRecord]:
    """The records of a ``.jsonl`` file, read as the shape it holds: one JSON document (see
    :func:`_holds_one_json_document`) as :func:`read_json` reads it, objects over several lines one after another
    (:func:`read_objects_over_lines`), else line by line (:func:`read_jsonl`). The shape is looked at now, the
    records read as the iterator is."""
    if _holds_one_json_document(path):
        return read_json(path)
    return read_objects_over_lines(path) if _opens_with_an_object_over_lines(path) else read_jsonl(path)


def _parse_json_line(raw: bytes, source: str, number: int, decoder: KeyCheckingDecoder) -> RawRecord:
    location = f"line {number}"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return unparsed(source, location, f"not valid UTF-8 (bad byte at offset {exc.start}){encoding_hint(raw)}",
                         raw.decode("utf-8", errors="surrogateescape"))
    try:
        value = decoder.decode(text)
    except json.JSONDecodeError as exc:
        return unparsed(source, location, malformed(exc, f"column {exc.colno}"), text)
    except RecursionError:
        return unparsed(source, location, "malformed JSON: nested too deeply", text)
    if decoder.twice:
        return unparsed(source, location, named_twice_reason(decoder.twice), text)
    return RawRecord(source, location, data=value)


def read_jsonl(path: Path) -> Iterator[RawRecord]:
    """One record per non-blank line; lines are decoded one at a time (binary mode, strict UTF-8).

    Blank lines are separators, not records, so they are not counted; nor are comment lines (see
    :func:`is_comment_line`), which are skipped with one warning naming their lines.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "notes.jsonl"
    >>> _ = path.write_text('# reviewed by A.\\n{"text": "a"}\\n')
    >>> [(r.location, r.data) for r in read_jsonl(path)]
    [('line 2', {'text': 'a'})]
    """
    source, decoder, comments = str(path), KeyCheckingDecoder(), []
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark some editors write
            if is_comment_line(raw):
                comments.append(number)
            elif raw.strip():
                yield _parse_json_line(raw.rstrip(b"\r\n"), source, number, decoder)
    _say_comments_skipped(source, comments)


def is_comment_line(raw: bytes) -> bool:
    """Whether a line of JSON lines is a comment and nothing else: it opens with ``#`` or ``//`` and holds no
    ``{``, so no record. A comment before a record on its line (``# note {"q": ...}``) holds one: that line is a
    record, rejected as malformed JSON naming the comment.

    >>> [is_comment_line(line) for line in (b"# notes\\n", b"  // v2\\n", b'# note {"q": "a"}\\n', b'{"q": "#"}\\n')]
    [True, True, False, False]
    """
    text = raw.strip()
    return text.startswith((b"#", b"//")) and b"{" not in text


def _say_comments_skipped(source: str, lines: list[int]) -> None:
    """Warn of the comment lines skipped: they are no records (so none is counted read), but JSON has no comments
    and other JSON-lines readers refuse the file."""
    if lines:
        shown = ", ".join(map(str, lines[:10])) + (f" and {len(lines) - 10} more" if len(lines) > 10 else "")
        log.warning("%s: %d comment line%s (line%s %s) skipped, not counted as records; JSON has no comments, "
                    "so other JSON readers refuse the file", source, len(lines), "s" if len(lines) > 1 else "",
                    "s" if len(lines) > 1 else "", shown)


def _first_record_line(handle: BinaryIO) -> bytes:
    """The first line of ``handle`` that may hold a record: not blank, not a comment line (:func:`is_comment_line`);
    a UTF-8 byte-order mark removed. b'' when there is none."""
    for line in handle:
        line = line.removeprefix(b"\xef\xbb\xbf")
        if line.strip() and not is_comment_line(line):
            return line
    return b""


def _comment_line_end(text: str, position: int) -> int | None:
    """Where the comment line at ``position`` ends (after its line break), when a comment line
    (:func:`is_comment_line`) begins there, only blanks before it on its line; else None."""
    if text[position] not in "#/" or text[text.rfind("\n", 0, position) + 1:position].strip():
        return None
    end = text.find("\n", position)
    end = len(text) if end < 0 else end + 1
    return end if is_comment_line(text[position:end].encode("utf-8", errors="surrogateescape")) else None


_HEAD_BYTES = 1 << 20  # what is read to see whether a .jsonl file's first record spans several lines, or opens an array


def _holds_one_json_document(path: Path) -> bool:
    """Whether a ``.jsonl`` file is one JSON array (or ``{"data": [...]}``) spread over lines, as an editor or
    ``json.dump(..., indent=1)`` writes it: its first non-blank line does not parse alone, and the file opens as an
    array does (:func:`~dsft.data.json_splitting.array_start`; keys before ``"data"`` where its ``[`` ends a line);
    or on its one line, as ``json.dump(records, f)`` writes it (read line by line, that line was one record that is
    'a list'). Reading it line by line would reject every line; datasets' json loader reads it whole.
    """
    with open(path, "rb") as handle:
        first = _first_record_line(handle)
        rest = handle.read(_HEAD_BYTES)
    try:
        value = json.loads(first)
    except (ValueError, RecursionError):
        head = (first + rest).decode("utf-8", errors="replace")
        opened = array_start(head)
        # Keys before "data": pretty-printed, its '[' ending a line (not a broken line of JSON lines holding a list).
        return opened is not None and (not opened[1] or head[opened[0]:].lstrip(" \t").startswith(("\n", "\r")))
    records = value.get("data") if isinstance(value, dict) else value
    return (not rest.strip() and isinstance(records, list) and bool(records)
            and all(isinstance(record, dict) for record in records))


def _opens_with_an_object_over_lines(path: Path) -> bool:
    """Whether a ``.jsonl`` file's first record is a JSON object written over several lines (``json.dumps(record,
    indent=2)`` a record, one after another): read line by line, every line of it was a malformed record. A first
    line that is ``{`` alone opens one whether or not that record decodes (a broken first record costs itself)."""
    with open(path, "rb") as handle:
        first = _first_record_line(handle)
        if first.strip() == b"{":
            return True
        if not first.lstrip().startswith(b"{") or _parses(first.decode("utf-8", errors="replace")):
            return False  # JSON lines (or not JSON at all): nothing more is read here
        text = (first + handle.read(_HEAD_BYTES)).decode("utf-8", errors="replace").lstrip()
    try:
        _, end = json.JSONDecoder().raw_decode(text)
    except (ValueError, RecursionError):
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
    located at the line it begins on. Text that does not decode as an object is one rejected record, its reason
    naming the line where it broke, up to the next line that opens a record at the first one's indentation
    (:func:`~dsft.data.json_splitting.record_starts`), where reading goes on; with no such line after it, the rest
    of the file is that record.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "pretty.jsonl"
    >>> _ = path.write_text('{\\n  "text": "a"\\n}\\n{\\n  "text": "b"\\n\\n{\\n  "text": "c"\\n}\\n')
    >>> [(r.location, r.data, r.error) for r in read_objects_over_lines(path)]  # the second lost its brace
    [('line 1', {'text': 'a'}, None), ('line 4', None, "malformed JSON: Expecting ',' delimiter (line 7, column 1)"), ('line 7', {'text': 'c'}, None)]
    """
    source = str(path)
    text = path.read_bytes().removeprefix(b"\xef\xbb\xbf").decode("utf-8", errors="surrogateescape")
    decoder, position, starts, commas, comments = KeyCheckingDecoder(), 0, None, [], []
    while True:
        while position < len(text):
            if text[position] == ",":  # a separator JSON has none of here: no record, and none lost to it
                commas.append(text.count("\n", 0, position) + 1)
            elif (end := _comment_line_end(text, position)) is not None:  # no record either (see read_jsonl)
                comments.append(text.count("\n", 0, position) + 1)
                position = end
                continue
            elif not text[position].isspace():
                break
            position += 1
        if position >= len(text):
            _say_commas_between(source, commas)
            _say_comments_skipped(source, comments)
            return
        if starts is None:
            starts = record_starts(text, position)
        line = text.count("\n", 0, position) + 1
        start = position
        try:
            value, position = decoder.raw_decode(text, position)
        except (ValueError, RecursionError) as exc:
            broke = (f"{exc.msg} (line {exc.lineno}, column {exc.colno})" if isinstance(exc, json.JSONDecodeError)
                     else "nested too deeply")
            if isinstance(exc, json.JSONDecodeError) and (slip := json_slip(exc)):
                broke += f": {slip}"
            position = next_record_start(text, start, starts)  # the next record, if one begins
            rest = "" if position < len(text) else f"; no record begins after line {line}, so the rest of the file is this one"
            yield unparsed(source, f"line {line}", f"malformed JSON: {broke}{rest}", text[start:position].rstrip())
            continue
        if decoder.twice:
            yield unparsed(source, f"line {line}", named_twice_reason(decoder.twice), text[start:position])
        else:
            yield RawRecord(source, f"line {line}", data=value)


def _say_commas_between(source: str, lines: list[int]) -> None:
    """Warn of the commas found between records one after another: skipped, they cost no record, but other JSON
    readers refuse the file."""
    if lines:
        where = f"line{'s' if len(lines) > 1 else ''} {', '.join(map(str, lines))}"
        log.warning("%s: not valid JSON (a ',' between records, %s: records one after another are separated by line "
                    "breaks alone), so other JSON readers refuse it; read record by record, the ',' skipped", source,
                    where)


def read_json(path: Path) -> Iterator[RawRecord]:
    """A JSON array, a ``{"data": [...]}`` wrapper, or one object; JSON-lines content is accepted too.

    Items are located as ``item N`` (1-based). Bytes that are not UTF-8 are kept as lone surrogates
    (``surrogateescape``), so validation rejects exactly the items that hold them. A file that does not
    parse is recovered record by record where its shape allows: JSON lines under a ``.json`` name are
    read line by line, records pretty-printed one after another as :func:`read_objects_over_lines` reads them, a
    damaged array item by item (see :func:`~dsft.data.json_splitting.split_json_array`; a rejected item of a file
    of several lines is located ``item N (line L)``, the line it begins on). Only a file with no recoverable shape
    is one rejected record, and its reason says so.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.json"
    >>> _ = path.write_bytes(b'[{"text": "ok"}, {"text": oops}, {"text": "fine"}]')
    >>> [(r.location, r.error is None) for r in read_json(path)]
    [('item 1', True), ('item 2', False), ('item 3', True)]
    """
    source, decoder = str(path), KeyCheckingDecoder()
    text, comments = _blank_comment_lines(path.read_bytes().decode("utf-8-sig", errors="surrogateescape"))
    try:
        value = decoder.decode(text)
    except json.JSONDecodeError as exc:
        yield from _recover_json(path, text, exc, comments)
        return
    except RecursionError:
        _say_comments_skipped(source, comments)
        yield RawRecord(source, "item 1", error="malformed JSON: nested too deeply")
        return
    _say_comments_skipped(source, comments)
    orient = pandas_table_orient(value)
    if orient is not None:  # pandas' default to_json: read as one record, its every column was 'an object'
        yield RawRecord(source, "item 1", error=f"{_PANDAS_SHAPES[orient]}, as pandas' DataFrame.to_json(orient="
                        f"{orient!r}) writes it, not records; write df.to_json(PATH, orient='records', lines=True, "
                        "force_ascii=False)")
        return
    wrapped = isinstance(value, dict) and isinstance(value.get("data"), list)
    if wrapped and "data" in getattr(value, "twice", ()):  # {"data": [...], "data": [...]}: the first array was lost
        yield unparsed(source, "item 1", named_twice_reason(["data"]), text)
        return
    items = value["data"] if wrapped else value if isinstance(value, list) else [value]
    if index := table_index_fields(value):  # to_json(orient="table"): its records hold pandas' row index
        _say_table_index(source, index)
        items = [{k: v for k, v in item.items() if k not in index} if isinstance(item, dict) else item for item in items]
    # The source text of the items that name a key twice, for rejects.jsonl (found again only where there are some).
    texts = (split_json_array(text) if wrapped or isinstance(value, list) else [text]) if decoder.twice else None
    for number, item in enumerate(items, start=1):
        twice = keys_named_twice(item) if decoder.twice else []
        if twice:
            raw = texts[number - 1].strip() if texts and len(texts) == len(items) else json.dumps(item)
            yield unparsed(source, f"item {number}", named_twice_reason(twice), raw)
        else:
            yield RawRecord(source, f"item {number}", data=item)


_COMMENT_OPENS = re.compile(r"^[ \t]*(#|//)", re.MULTILINE)


def _blank_comment_lines(text: str) -> tuple[str, list[int]]:
    """``text`` with each comment line (:func:`is_comment_line`) blanked, and their line numbers: a note above an
    array (``# reviewed by A.``) or between its items is skipped as :func:`read_jsonl` skips it, not read as the
    start of a document that then does not parse. No line of a JSON document is one (a string holds no line
    break, and nothing else opens with ``#`` or ``/``). The line breaks and every offset stay, so locations
    (``item N (line L)``) are those of the file.

    >>> _blank_comment_lines('# v2\\n[{"text": "a"}]\\n')
    ('    \\n[{"text": "a"}]\\n', [1])
    """
    if not _COMMENT_OPENS.search(text):  # the usual file: not split into lines
        return text, []
    lines, comments = text.split("\n"), []
    for number, line in enumerate(lines, start=1):
        if is_comment_line(line.encode("utf-8", errors="surrogateescape")):
            lines[number - 1] = " " * len(line)
            comments.append(number)
    return "\n".join(lines), comments


def _say_table_index(source: str, index: list[str]) -> None:
    said = " and ".join(repr(field) for field in index)
    say_index_dropped(source, f"field{'s' if len(index) > 1 else ''} {said}", "DataFrame.to_json(orient='table')")


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


def _recover_json(path: Path, text: str, exc: json.JSONDecodeError, comments: list[int]) -> Iterator[RawRecord]:
    """Records of a ``.json`` file that does not parse whole (see :func:`read_json`; ``text`` with its ``comments``
    lines blanked, which the readers of other shapes skip and say themselves)."""
    source, lead = str(path), len(text) - len(text.lstrip())
    starts = record_starts(text, lead) if "\n" in text.strip() else []
    opened = array_start(text)
    # An object holding the records under "data" is alone in its file; records pretty-printed one after another
    # (another opens where the first one's brackets are closed) may each have a list under "data".
    array = opened is not None and (opened[1] is None or next_record_start(text, lead, starts) == len(text))
    over_lines = bool(starts)
    if not array and over_lines and not _looks_like_json_lines(text):
        # Records pretty-printed one after another under a .json name (each line of them alone is no JSON).
        yield from read_objects_over_lines(path)
        return
    if _looks_like_json_lines(text) or (exc.msg == "Extra data" and not array):
        # Many datasets ship JSON lines under a .json name; read them as such.
        yield from read_jsonl(path)
        return
    _say_comments_skipped(source, comments)
    items = split_json_array_at(text) if array else None
    if not items:  # not an array, or a damaged one with nothing in it
        slip = json_slip(exc)
        yield RawRecord(source, "item 1", error=f"malformed JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
                                                f"{': ' + slip if slip else ''}; the file could not be split into "
                                                "records, so it counts as one")
        return
    decoder, lines, rejected = KeyCheckingDecoder(), "\n" in text.strip(), False
    header = opened[1] if opened else None  # the keys before "data": a damaged to_json(orient="table")'s schema
    index = table_index_fields({**header, "data": []}) if header else []
    if index:
        _say_table_index(source, index)
    for number, (offset, item) in enumerate(items, start=1):
        # Over several lines, a rejected item says the line it begins on.
        location = f"item {number}"
        where = f"{location} (line {text.count(chr(10), 0, offset + len(item) - len(item.lstrip())) + 1})" if lines else location
        try:
            value = decoder.decode(item)
            if index and isinstance(value, dict):
                value = {key: field for key, field in value.items() if key not in index}
            yield (unparsed(source, where, named_twice_reason(decoder.twice), item.strip()) if decoder.twice
                   else RawRecord(source, location, data=value))
        except json.JSONDecodeError as item_exc:
            slip, rejected = json_slip(item_exc), True
            yield unparsed(source, where, f"malformed JSON in array item: {item_exc.msg}" + (f": {slip}" if slip else ""),
                           item.strip())
        except RecursionError:
            rejected = True
            yield unparsed(source, where, "malformed JSON: nested too deeply", item.strip())
    if not rejected:  # a separator lost or doubled between items: nothing rejected, yet no JSON reader takes the file
        slip = json_slip(exc)
        log.warning("%s: not valid JSON (%s, line %d, column %d%s), so other JSON readers refuse it; read item by item, "
                    "every item parsed", source, exc.msg, exc.lineno, exc.colno, f": {slip}" if slip else "")
