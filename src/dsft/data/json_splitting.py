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

import re

ARRAY_START = re.compile(r'\s*(\{\s*"data"\s*:\s*)?\[')


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


def next_record_start(text: str, broken: int, starts: list[int]) -> int:
    """Where the record after the broken one at ``broken`` begins: the first of ``starts`` (:func:`record_starts`)
    after it where at most one of its brackets is still open (one: it lost its closing brace), brackets counted
    outside strings, a raw newline ending one. A ``{`` line in a list of its (``json.dumps(indent=0)``, or a record
    that lost a comma there) is two deeper. ``len(text)`` when none.

    >>> text = '{\\n"m": [\\n{\\n"x": 1\\n}\\n{\\n"x": 2\\n}\\n]\\n}\\n{\\n"m": []\\n}\\n'  # the first lost a comma
    >>> starts = record_starts(text, 0); starts, next_record_start(text, 0, starts)
    ([0, 20, 35], 35)
    """
    depth, in_string, escaped, index = 0, False, False, broken
    for start in (s for s in starts if s > broken):
        for char in text[index:start]:
            if in_string:
                escaped, in_string = (False, True) if escaped else (char == "\\", char not in '"\n')
            elif char == '"':
                in_string = True
            elif char in "[{":
                depth += 1
            elif char in "]}" and depth > 0:
                depth -= 1
        index = start
        if depth <= 1 and not in_string:
            return start
    return len(text)


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
    opened = ARRAY_START.match(text)
    if opened is None:
        return None
    first = opened.end() + len(text[opened.end():]) - len(text[opened.end():].lstrip())
    # Items at no indentation (json.dumps(indent=0)) are told from objects nested in them only by nesting: below.
    unindented = text[first - 1:first] == "\n"
    found = [] if unindented else record_starts(text, first)
    if found and text[first:text.find("\n", first)].strip() == "{":  # each item over lines of its own
        return _pretty_items(text, found, wrapped=opened.group(1) is not None)
    starts = set(found[1:])
    items: list[tuple[int, str]] = []
    depth, in_string, escaped, start = 0, False, False, opened.end()
    for index in range(start, len(text)):
        char = text[index]
        if index in starts or (unindented and depth == 1 and not in_string and _opens_item_after_lost_brace(text, index)):
            # A record begins: whatever came before it ended there, closed or not.
            if text[start:index].strip():
                items.append((start, text[start:index]))
            depth, in_string, escaped, start = 0, False, False, index
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
            items.append((start, text[start:index]))
            break
        elif char == "," and depth == 0:
            items.append((start, text[start:index]))
            start = index + 1
    else:
        items.append((start, text[start:]))
    return [(offset, item) for offset, item in items if item.strip()]


def _pretty_items(text: str, starts: list[int], wrapped: bool) -> list[tuple[int, str]]:
    """The items of a pretty-printed array (its first item's ``{`` alone on its line): each from where it begins
    (``starts``, :func:`record_starts`) to where the next does, less the commas between them (one, or more where a
    comma was doubled: ``},\\n  ,\\n  {``); the last to the array's closing ``]``, or to the end of a truncated
    file. Neither brackets nor commas inside are looked at, so a broken item (a lost brace, a stray ``]``, an
    unclosed string) is one item however it broke.

    >>> _pretty_items('[\\n  {\\n    "a": ]\\n  },\\n  {\\n    "b": 2\\n  }\\n]\\n', [4, 24], wrapped=False)
    [(4, '{\\n    "a": ]\\n  }'), (24, '{\\n    "b": 2\\n  }')]
    >>> _pretty_items('[\\n  {\\n    "a": 1\\n  },\\n  ,\\n  {\\n    "b": 2\\n  }\\n]', [4, 28], wrapped=False)
    [(4, '{\\n    "a": 1\\n  }'), (28, '{\\n    "b": 2\\n  }')]
    """
    tail = text.rstrip()
    if wrapped and tail.endswith("}"):
        tail = tail[:-1].rstrip()
    end = len(tail) - 1 if tail.endswith("]") else len(text)
    bounds = zip(starts, [*starts[1:], end])
    return [(start, text[start:stop].rstrip(_SEPARATORS)) for start, stop in bounds]


_SEPARATORS = ", \t\r\n"  # what may lie between two items: JSON's whitespace and the comma, doubled by a slip
