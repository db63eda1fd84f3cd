"""Damaged JSON text cut into its records: a (possibly broken) array item by item, and the lines where the records
of a pretty-printed file begin, so one broken record costs that record and not the ones after it.

A pretty-printed file (``json.dump(records, f, indent=2)``, or ``json.dumps(record, indent=2)`` one record after
another) opens every record on a line of its own, ``{`` at one indentation (two spaces in an array, none for
records one after another); a nested object is indented deeper, and JSON strings hold no line break. So where a
record is broken (a lost comma, brace or quote), the next line at that indentation that opens with ``{`` is where
the next record begins.

>>> text = '[\\n  {\\n    "a": 1\\n  },\\n  {\\n    "b": 2\\n  ,\\n  {\\n    "c": 3\\n  }\\n]'
>>> [item.strip() for _, item in split_json_array_at(text)]  # the second record lost its closing brace
['{\\n    "a": 1\\n  }', '{\\n    "b": 2', '{\\n    "c": 3\\n  }']
"""

from __future__ import annotations

import json
import re
from typing import Any

_KEY = re.compile(r'\s*(?=")')  # the whitespace before a key
_COLON = re.compile(r"\s*:\s*")
_COMMA = re.compile(r"\s*,")
_INDENT = re.compile(r"[ \t]*")
_CLOSING = re.compile(r"[\s,]*\]")  # what may close an array after its last item


def array_start(text: str) -> tuple[int, dict[str, Any] | None] | None:
    """Where the array of records in ``text`` opens (the offset just after its ``[``), and, for an object holding
    it under ``"data"`` (``{"data": [...]}``, whatever keys come before or after it), the keys that object gives
    before it, decoded (None for an array alone); None when ``text`` opens as neither, or a key before the array is
    broken. Keys after the array are not looked at, so a damaged array may have them.

    >>> array_start('[{"a": 1}')
    (1, None)
    >>> array_start('{"meta": {"n": [1]}, "version": 2, "data": [{"a": 1}, oops], "count": 2}')
    (44, {'meta': {'n': [1]}, 'version': 2})
    >>> [array_start(text) for text in ('{"data": 3, "text": "x"}', '{"a": 1 "data": []}', '"data"')]
    [None, None, None]
    """
    index = len(text) - len(text.lstrip())
    if text.startswith("[", index):
        return index + 1, None
    if not text.startswith("{", index):
        return None
    decoder, header = json.JSONDecoder(), {}
    opened = index + 1
    while (key := _KEY.match(text, opened)) is not None:
        try:
            name, index = decoder.raw_decode(text, key.end())
            colon = _COLON.match(text, index)
            if colon is None:
                return None
            if name == "data" and text.startswith("[", colon.end()):
                return colon.end() + 1, header
            header[name], index = decoder.raw_decode(text, colon.end())
        except (ValueError, RecursionError):
            return None
        comma = _COMMA.match(text, index)
        if comma is None:
            return None
        opened = comma.end()
    return None


def record_starts(text: str, first: int) -> list[int]:
    """Where each record of a pretty-printed ``text`` begins, the first of them at ``first``: ``first`` and every
    later line that opens with ``{`` at the indentation of ``first``'s line; [] when ``first`` is not at the start
    of a line (a record is not alone on its line: an array on one line). At no indentation (``json.dumps(indent=0)``)
    a line ``{`` after a ``[`` or ``,`` opens an object nested in a list, not a record.

    >>> record_starts('{\\n  "a": {\\n    "b": 1\\n  }\\n}\\n{\\n  "c": 2\\n}\\n', 0)
    [0, 28]
    >>> record_starts('[{"a": 1},\\n {"b": 2}]', 1)
    []
    >>> record_starts('{\\n"m": [\\n{\\n"x": 1\\n}\\n]\\n}\\n{\\n"m": []\\n}\\n', 0)  # indent=0: a nested object is no record
    [0, 24]
    """
    line_start = text.rfind("\n", 0, first) + 1
    indent = text[line_start:first]
    if indent.strip() or not text.startswith("{", first):
        return []
    found = [m.end() - 1 for m in re.compile(rf"\n{re.escape(indent)}\{{").finditer(text, first)]
    if not indent:  # json.dumps(indent=0): an object nested in a list is at column 0 too, after its '[' or ','
        found = [start for start in found if _after(text, start) not in "[,"]
    return [first] + found


def _opens_item_after_lost_brace(text: str, index: int) -> bool:
    """Whether ``index`` is a ``{`` line after a ``,`` at one level deeper than an unindented array's items: the next
    item of an item that lost its closing brace (an object in a list of that item's is two levels deeper)."""
    return text.startswith("{", index) and text[index - 1:index] == "\n" and _after(text, index) == ","


def _after(text: str, index: int) -> str:
    """The last character before ``index`` that is not whitespace ('' at the start)."""
    while index > 0 and text[index - 1] in " \t\r\n":
        index -= 1
    return text[index - 1] if index else ""


def _body_indented(text: str, opening: int) -> bool:
    """Whether the line after the ``{`` at ``opening`` is indented deeper than that ``{``."""
    newline = text.find("\n", opening)
    if newline < 0:
        return False
    body = text[newline + 1:]
    return len(body) - len(body.lstrip(" \t")) > opening - (text.rfind("\n", 0, opening) + 1)


def next_record_start(text: str, broken: int, starts: list[int]) -> int:
    """Where the record after the broken one at ``broken`` begins: the first of ``starts`` (:func:`record_starts`)
    after it where at most one of its brackets is still open (one: it lost its closing brace), brackets counted
    outside strings, a raw newline ending one. A ``{`` line in a list of its (``json.dumps(indent=0)``, or a record
    that lost a comma there) is two deeper. ``len(text)`` when none.

    Where the broken record's body is indented deeper than its ``{`` (every pretty-printer but ``indent=0``), an
    object nested in it is deeper too, so the first of ``starts`` after it is the next record: brackets are not
    counted there, where a lost quote (``"output": a[[",``) would leave them open to the end of the file.

    >>> text = '{\\n"m": [\\n{\\n"x": 1\\n}\\n{\\n"x": 2\\n}\\n]\\n}\\n{\\n"m": []\\n}\\n'  # the first lost a comma
    >>> starts = record_starts(text, 0); starts, next_record_start(text, 0, starts)
    ([0, 20, 35], 35)
    >>> text = '{\\n  "a": x[[",\\n  "b": 1\\n}\\n{\\n  "a": "y"\\n}\\n'  # the first lost a quote
    >>> next_record_start(text, 0, record_starts(text, 0))
    26
    """
    if _body_indented(text, broken):
        return next((start for start in starts if start > broken), len(text))
    scan, index = _BracketScan(), broken
    for start in (s for s in starts if s > broken):
        for char in text[index:start]:
            scan.read(char)
        index = start
        if scan.depth <= 1 and not scan.in_string:
            return start
    return len(text)


class _BracketScan:
    """JSON text read a character at a time: how many brackets are open (``depth``) and whether a string is
    (``in_string``), counted as the damaged text allows. A raw newline ends a string (JSON strings hold none, so its
    closing quote was lost) and a closing bracket with none open is not counted, so one broken record does not
    leave the rest of the text inside a string or below zero. The one scan behind :func:`split_json_array_at`'s
    items and :func:`next_record_start`.

    >>> scan = _BracketScan()  # "," and "]" inside a string and brackets, an escaped quote
    >>> [(index, found) for index, char in enumerate('{"a,]\\\\"": [1, 2]}, 3]') if (found := scan.read(char))]
    [(17, ','), (20, ']')]
    >>> scan = _BracketScan(); _ = [scan.read(char) for char in '{"m": ["x\\n, {']; scan.depth, scan.in_string
    (3, False)
    """

    def __init__(self) -> None:
        self.depth, self.in_string, self.escaped = 0, False, False

    def read(self, char: str) -> str:
        """Count ``char``; return it where it is a ``,`` or ``]`` outside every string and bracket (where an
        array's item ends, or the array), else ''."""
        if self.in_string:
            if self.escaped:
                self.escaped = False
            elif char == "\\":
                self.escaped = True
            elif char in '"\n':
                self.in_string = False
        elif char == '"':
            self.in_string = True
        elif char in "[{":
            self.depth += 1
        elif char in "]}" and self.depth > 0:
            self.depth -= 1
        elif char == "]" or (char == "," and self.depth == 0):
            return char
        return ""


def split_json_array(text: str) -> list[str] | None:
    """The source text of each top-level item of a (possibly damaged) JSON array, or None if not an array.

    Items end at top-level commas, tracked through strings and nesting; a raw newline inside a string
    ends it (JSON strings hold none, so its closing quote was lost), which keeps one damaged item from
    swallowing the next line's. A missing ``]`` (a truncated file) ends the last item at the end. In a
    pretty-printed array an item also ends where the next one begins (:func:`record_starts`): a lost brace or
    comma costs that item, not the ones after it.

    >>> split_json_array('[{"a": 1}, {"b": [2, 3]}, oops]')
    ['{"a": 1}', ' {"b": [2, 3]}', ' oops']
    >>> split_json_array('{"data": [1, "x, y"')
    ['1', ' "x, y"']
    >>> split_json_array('{"a": 1') is None
    True
    """
    spans = split_json_array_at(text)
    return None if spans is None else [item for _, item in spans]


def split_json_array_at(text: str) -> list[tuple[int, str]] | None:
    """:func:`split_json_array`'s items, each with the offset in ``text`` where it starts."""
    opened = array_start(text)
    if opened is None:
        return None
    after = opened[0]
    first = after + len(text[after:]) - len(text[after:].lstrip())
    # Items at no indentation (json.dumps(indent=0)) are told from objects nested in them only by nesting: below.
    unindented = text[first - 1:first] == "\n"
    found = [] if unindented else record_starts(text, first)
    closed = _closing_bracket(text, after, first) if found else None
    if closed is not None:  # objects under keys after the array ({"data": [...], "splits": [{...}]}) are no records
        found = [start for start in found if start < closed]
    if found and text[first:text.find("\n", first)].strip() == "{":  # each item over lines of its own
        return _pretty_items(text, found, closed, wrapped=opened[1] is not None)
    starts = set(found[1:])
    items: list[tuple[int, str]] = []
    scan, start = _BracketScan(), after
    for index in range(start, len(text)):
        char = text[index]
        if index in starts or (unindented and scan.depth == 1 and not scan.in_string
                               and _opens_item_after_lost_brace(text, index)):
            # A record begins: whatever came before it ended there, closed or not.
            if text[start:index].strip():
                items.append((start, text[start:index]))
            scan, start = _BracketScan(), index
        top_level = scan.read(char)
        if top_level == "]":
            items.append((start, text[start:index]))
            break
        if top_level == ",":
            items.append((start, text[start:index]))
            start = index + 1
    else:
        items.append((start, text[start:]))
    return [(offset, item) for offset, item in items if item.strip()]


def _closing_bracket(text: str, after: int, first: int) -> int | None:
    """The offset of the ``]`` that closes a pretty-printed array opened just before ``after``, its first item at
    ``first``: the first line after it that opens with ``]`` at the indentation of the line holding the ``[`` (an
    item's lines are indented deeper); None where there is none (a truncated file, or the ``]`` is on an item's line).

    >>> text = '{\\n  "data": [\\n    {\\n      "a": [\\n  1\\n      ]\\n    }\\n  ],\\n  "count": 1\\n}\\n'
    >>> closed = _closing_bracket(text, text.index("[") + 1, text.index("{", 1)); closed, text[closed:closed + 2]
    (53, '],')
    """
    line = text.rfind("\n", 0, after) + 1
    indent = _INDENT.match(text, line).group()
    closing = re.compile(rf"\n{re.escape(indent)}\]").search(text, first)
    return None if closing is None else closing.end() - 1


def _pretty_items(text: str, starts: list[int], closed: int | None, wrapped: bool) -> list[tuple[int, str]]:
    """The items of a pretty-printed array (its first item's ``{`` alone on its line): each from where it begins
    (``starts``, :func:`record_starts`) to where the next does, less the commas between them (one, or more where a
    comma was doubled: ``},\\n  ,\\n  {``); the last to the array's closing ``]`` (``closed``,
    :func:`_closing_bracket`, whatever keys follow the array), else to where the last item decodes to if a ``]``
    follows it, else to the ``]`` that ends the file (less a wrapping object's ``}``), or to the end of a truncated
    file. Neither brackets nor commas inside are looked at, so a broken item (a lost brace, a stray ``]``, an
    unclosed string) is one item however it broke.

    >>> _pretty_items('[\\n  {\\n    "a": ]\\n  },\\n  {\\n    "b": 2\\n  }\\n]\\n', [4, 24], closed=41, wrapped=False)
    [(4, '{\\n    "a": ]\\n  }'), (24, '{\\n    "b": 2\\n  }')]
    >>> _pretty_items('[\\n  {\\n    "a": 1\\n  },\\n  ,\\n  {\\n    "b": 2\\n  }\\n]', [4, 28], closed=45, wrapped=False)
    [(4, '{\\n    "a": 1\\n  }'), (28, '{\\n    "b": 2\\n  }')]
    >>> _pretty_items('{"data": [\\n  {\\n    "a": 1,\\n  },\\n  {\\n    "b": 2\\n  }], "count": 2}', [13, 34],
    ...               closed=None, wrapped=True)
    [(13, '{\\n    "a": 1,\\n  }'), (34, '{\\n    "b": 2\\n  }')]
    """
    end = closed if closed is not None else _end_of_last_item(text, starts[-1], wrapped)
    bounds = zip(starts, [*starts[1:], end])
    return [(start, text[start:stop].rstrip(_SEPARATORS)) for start, stop in bounds]


def _end_of_last_item(text: str, last: int, wrapped: bool) -> int:
    """Where the text of a pretty-printed array's last item (at ``last``) ends when the array's ``]`` was not found
    on a line of its own (:func:`_closing_bracket`): at the ``]`` after the item, where the item decodes and one
    follows it; else at the ``]`` that ends the file, less a wrapping object's ``}``; else (a truncated file) at
    the end."""
    try:
        _, stop = json.JSONDecoder().raw_decode(text, last)
    except (ValueError, RecursionError):
        pass
    else:
        if (closing := _CLOSING.match(text, stop)) is not None:
            return closing.end() - 1
    tail = text.rstrip()
    if wrapped and tail.endswith("}"):
        tail = tail[:-1].rstrip()
    return len(tail) - 1 if tail.endswith("]") else len(text)


_SEPARATORS = ", \t\r\n"  # what may lie between two items: JSON's whitespace and the comma, doubled by a slip
