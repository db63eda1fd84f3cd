"""What a JSON syntax error most likely is, for a record a person wrote or copied: the guides' records are copied
from web pages (typographic quotes), typed with a Chinese input method (full-width colons and commas), printed
from Python (single quotes, ``True``/``None``), annotated (``#`` comments), or separated by commas. The decoder's
own message (``Expecting property name enclosed in double quotes``) names none of these.

>>> try:
...     json.loads('{“q”: “a”}')
... except json.JSONDecodeError as exc:
...     print(json_slip(exc))
'“' (U+201C) is a typographic quote (copied from a web page?), not JSON's '"': write every quote as '"'
"""

from __future__ import annotations

import json
import re
import unicodedata

# Characters a Chinese input method types in place of JSON's punctuation.
_FULL_WIDTH = {"：": ":", "，": ",", "｛": "{", "｝": "}", "［": "[", "］": "]", "＂": '"', "、": ","}
_TYPOGRAPHIC_QUOTES = "“”„‟‘’‚‛″〝〞「」"
_PYTHON_WORDS = re.compile(r"(True|False|None)\b")


def json_slip(exc: json.JSONDecodeError) -> str:
    """The likely slip behind ``exc``, a clause naming it and its fix; '' when it is none of the known ones.

    >>> def slip(text):
    ...     try:
    ...         json.loads(text)
    ...     except json.JSONDecodeError as exc:
    ...         return json_slip(exc)
    >>> slip('{"q"："a"}')
    "'：' (U+FF1A) is a full-width character (typed with a Chinese input method), not JSON's ':': write it as ':'"
    >>> slip("{'q': 'a'}")
    "single quotes: this is Python's way of printing a dict, not JSON; write records with json.dumps(record, ensure_ascii=False)"
    >>> slip('{"q": "a", "ok": True}')
    "Python's True, not JSON's true: write true, false, null (json.dumps writes them)"
    >>> slip('# 标注规范 {"q": "a"}')
    'a comment: JSON has none; delete it'
    >>> slip('{"q": "a"},')
    "a ',' after the record: JSON lines are separated by line breaks alone; delete it"
    >>> slip('{"q": "a",}')
    "a ',' before '}': JSON allows no comma after the last item; delete it"
    >>> slip('[{"q": "a"}, , {"q": "b"}]')
    "a ',' with no item before it (a comma doubled, or left by a deleted record): delete it"
    >>> slip('{"q" "a"}')
    ''
    """
    text, pos = exc.doc, exc.pos
    char = text[pos] if pos < len(text) else ""
    if char in _TYPOGRAPHIC_QUOTES and char:
        return (f"{char!r} ({_codepoint(char)}) is a typographic quote (copied from a web page?), not JSON's '\"': "
                "write every quote as '\"'")
    if char in _FULL_WIDTH:
        return (f"{char!r} ({_codepoint(char)}) is a full-width character (typed with a Chinese input method), not "
                f"JSON's {_FULL_WIDTH[char]!r}: write it as {_FULL_WIDTH[char]!r}")
    if char == "'":
        return ("single quotes: this is Python's way of printing a dict, not JSON; write records with "
                "json.dumps(record, ensure_ascii=False)")
    if (word := _PYTHON_WORDS.match(text, pos)) is not None:
        meant = {"True": "true", "False": "false", "None": "null"}[word.group(1)]
        return f"Python's {word.group(1)}, not JSON's {meant}: write true, false, null (json.dumps writes them)"
    if pos == len(text) - len(text.lstrip()) and text.lstrip().startswith(("#", "//")):
        return "a comment: JSON has none; delete it"
    if exc.msg == "Extra data" and text[pos:].strip() == ",":
        return "a ',' after the record: JSON lines are separated by line breaks alone; delete it"
    before = text[:pos].rstrip()
    if char == "," and exc.msg == "Expecting value" and before.endswith((",", "[")):
        return "a ',' with no item before it (a comma doubled, or left by a deleted record): delete it"
    if char and char in "}]" and before.endswith(","):  # not at the end: a record cut off after a comma
        return f"a ',' before {char!r}: JSON allows no comma after the last item; delete it"
    return ""


def _codepoint(char: str) -> str:
    return f"U+{ord(char):04X}" if unicodedata.name(char, "") else repr(char)


def malformed(exc: json.JSONDecodeError, where: str) -> str:
    """``malformed JSON: MESSAGE (WHERE)``, with the slip behind it when it is a known one.

    >>> try:
    ...     json.loads("{'q': 1}")
    ... except json.JSONDecodeError as exc:
    ...     print(malformed(exc, "column 2")[:68])
    malformed JSON: Expecting property name enclosed in double quotes (c
    """
    slip = json_slip(exc)
    return f"malformed JSON: {exc.msg} ({where})" + (f": {slip}" if slip else "")
