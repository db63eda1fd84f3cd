"""A whole number given as text, read by the one rule dsft's command line and config read it by.

typer reads a number flag (``--limit``, ``--index``, ``--port``) and the config schema a number key
(``train.max_steps``, ``--set`` included) with pydantic's integer parsing: ASCII digits, an optional sign, ``_``
between digits, surrounding spaces. ``int()`` and ``str.isdigit()`` take any script's digits, so a field checked
with them let a full-width ``１２`` (an East Asian input method's digits) through as 12 where the CLI refuses it.
What takes a whole number as text outside typer and the config (the dashboard's fields, a flag parsed by hand)
asks :func:`whole_number`. This module imports nothing from dsft, so any layer may read it.
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter, ValidationError

_INTEGER = TypeAdapter(int)  # the config schema's int keys; typer converts an int flag's text with it too (0.29)


def whole_number(value: Any) -> int | None:
    """``value``, a whole number or its text, as the number the CLI reads from that text; None where the CLI
    refuses it (a full-width or other non-ASCII digit, a fraction, words) or it is neither (a boolean, a float,
    a list: a JSON body's ``true`` or ``2.5`` is no whole number).

    >>> [whole_number(v) for v in ("12", " 12 ", "-3", 7, "1_000")]
    [12, 12, -3, 7, 1000]
    >>> [whole_number(v) for v in ("１２", "٣", "2.5", "x", "", True, 2.0)]
    [None, None, None, None, None, None, None]
    """
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return None
    try:
        return _INTEGER.validate_python(value)
    except ValidationError:
        return None
