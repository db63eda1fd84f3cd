"""Where each message of a converted record is in the record as written (:class:`~dsft.data.conversation.Place`).

A problem found later in a message is named there: the user's ``messages[1]`` after a separate ``system`` field,
Alpaca's ``output``, ShareGPT's ``conversations[0].value``, a renamed column by its own name, a character counted
as the record counts it where a leading ``<think>`` block was split off.

>>> text_place("output").name(".content: empty assistant message", "")
'output: empty assistant message'
>>> respelled_place(text_place("answer"), {"answer": "a"}).name(".content: empty assistant message", "")
'a: empty assistant message'
"""

from __future__ import annotations

import re
from typing import Any

from dsft.data.conversation import Place
from dsft.data.inline_think import think_shifts


_FIELD_NAME = re.compile(r"[A-Za-z_]\w*")


def respelled(text: str, spelled: dict[str, str]) -> str:
    """``text`` (opening with a canonical field name) with that name written as the record's column.

    >>> respelled("output is an integer, expected a string", {"output": "answer"})
    'answer is an integer, expected a string'
    >>> respelled("conversations[0].value: empty", {"conversations": "dialog"})
    'dialog[0].value: empty'
    """
    match = _FIELD_NAME.match(text)
    if match is None or match.group() not in spelled:
        return text
    return spelled[match.group()] + text[match.end():]


_SHARED_PLACES: dict[Place, Place] = {}


def shared(place: Place) -> Place:
    """One instance per distinct place without offsets (``messages[1]``, ``output``: the same in most records), so
    that a million records held in memory do not each hold their own copies; a place with offsets is its record's.
    """
    if place.parts or place.shifts:
        return place
    return _SHARED_PLACES.setdefault(place, place)


def respelled_place(place: Place, spelled: dict[str, str]) -> Place:
    if not spelled:
        return place
    parts = tuple((respelled(name, spelled), start) for name, start in place.parts)
    return Place(" and ".join(name for name, _ in parts) if parts else respelled(place.at, spelled),
                 tuple((key, respelled(name, spelled)) for key, name in place.fields), parts, place.shifts)


def text_place(field: str, reasoning_field: str | None = None, answer: Any = None) -> Place:
    """Where a message read from one string field is: every problem of its text is that field's (its reasoning
    ``reasoning_field``'s, when read from a field of its own; ``answer``: the field's text, when a leading think
    block may have been split from it)."""
    reasoning = reasoning_field or field  # validation says .reasoning_content, or .reasoning of its encoding
    return Place(field, ((".content", field), (".reasoning_content", reasoning), (".reasoning", reasoning)),
                 shifts=think_shifts(answer))


def turn_place(where: str, turn: Any) -> Place:
    """Where a ``{role, content}`` turn is; an assistant's content may have had its leading think block split off."""
    split = (isinstance(turn, dict) and turn.get("role") == "assistant"
             and turn.get("reasoning_content", turn.get("reasoning")) is None)
    return Place(where, shifts=think_shifts(turn.get("content")) if split else ())


def joined_place(first: str, first_text: str, second: str) -> Place:
    """Where a content joined as ``first_text``, a blank line, then ``second``'s text is."""
    return Place(f"{first} and {second}", parts=((first, 0), (second, len(first_text) + 2)))


def sharegpt_place(index: int, value: str, answer: bool) -> Place:
    """A ShareGPT turn: its text (answer, inline reasoning, a function call's JSON) is ``value``, its role ``from``;
    ``answer``: whether ``value`` was read as an assistant's answer (a leading think block may have been split off).

    >>> sharegpt_place(1, "<think>r</think>2", answer=True).name(".content: empty assistant message", "")
    'conversations[1].value: empty assistant message'
    """
    where = f"conversations[{index}]"
    texts = tuple((key, f"{where}.value") for key in (".content", ".reasoning_content", ".reasoning", ".tool_calls"))
    # A function_call turn's value is the call's JSON, read into tool_calls[0].
    return Place(where, ((".tool_calls[0].function.name", f"{where}.value: function_call name"), *texts,
                         (".role", f"{where}.from")), shifts=think_shifts(value) if answer else ())
