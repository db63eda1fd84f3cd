"""JSON decoded with an eye on keys named twice in one object (``{"output": "b", "output": "c"}``).

Python's json keeps the last value of such a key without a word, so a record whose export tool wrote a key
twice would lose the other value. The readers decode with :class:`KeyCheckingDecoder` and reject the record
instead (:func:`named_twice_reason`), wherever in it the object is.

>>> decoder = KeyCheckingDecoder()
>>> decoder.decode('{"instruction": "a", "output": "b", "output": "c"}')
{'instruction': 'a', 'output': 'c'}
>>> decoder.twice
['output']
>>> decoder.decode('{"text": "fine"}'), decoder.twice
({'text': 'fine'}, [])
"""

from __future__ import annotations

import json
from typing import Any


class _NamedTwice(dict):  # type: ignore[type-arg]
    """An object that named keys twice: the value json keeps (the last of each), and which keys (``twice``)."""

    twice: list[str]


class KeyCheckingDecoder:
    """A JSON decoder that notes the keys named twice in one object (``twice``, reset by every decode).

    The check is one ``dict`` and one length comparison per object (json's own ``object_pairs_hook``), so
    a record with none costs about what json's plain decoding does."""

    def __init__(self) -> None:
        self.twice: list[str] = []
        self._decoder = json.JSONDecoder(object_pairs_hook=self._object)

    def _object(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        value = dict(pairs)
        if len(value) == len(pairs):
            return value
        seen: set[str] = set()
        twice = list(dict.fromkeys(key for key, _ in pairs if key in seen or seen.add(key)))  # type: ignore[func-returns-value]
        self.twice.extend(key for key in twice if key not in self.twice)
        marked = _NamedTwice(value)
        marked.twice = twice
        return marked

    def decode(self, text: str) -> Any:
        """The value of the JSON document ``text`` (raises what :func:`json.loads` raises)."""
        self.twice = []
        return self._decoder.decode(text)

    def raw_decode(self, text: str, position: int = 0) -> tuple[Any, int]:
        """The JSON value that starts at ``position`` of ``text`` and where it ends (as ``JSONDecoder.raw_decode``)."""
        self.twice = []
        return self._decoder.raw_decode(text, position)


def keys_named_twice(value: Any) -> list[str]:
    """The keys named twice in any object within ``value`` decoded by a :class:`KeyCheckingDecoder` (walks it
    all: ask only where the decoder's ``twice`` says there are some).

    >>> items = KeyCheckingDecoder().decode('[{"a": 1}, {"m": [{"role": "x", "role": "y"}]}]')
    >>> keys_named_twice(items[0]), keys_named_twice(items[1])
    ([], ['role'])
    """
    found: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            found.extend(key for key in getattr(item, "twice", ()) if key not in found)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def named_twice_reason(keys: list[str]) -> str:
    """Why a record whose objects name ``keys`` twice is rejected.

    >>> named_twice_reason(["output"])
    "duplicate key 'output': an object names it twice and JSON readers keep only the last value; keep one"
    """
    if len(keys) == 1:
        return (f"duplicate key {keys[0]!r}: an object names it twice and JSON readers keep only the last value; "
                "keep one")
    named = ", ".join(repr(key) for key in keys)
    return f"duplicate keys {named}: an object names each twice and JSON readers keep only the last value; keep one"
