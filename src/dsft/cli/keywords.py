"""Keyword flags: a flag whose value is one word of a fixed list its help gives (``--format gguf``, ``--dtype
q8_0``, ``--engine vllm``) takes that word in any case, as the capitals of the docs and other tools spell it
(``GGUF``, ``Q8_0``, ``vLLM``). A value that is no word of the list is passed on as typed, so the check that
refuses it names it as the user wrote it.

Names stay exact: models, runs and presets (a hub id and a path are case-sensitive), template families and
metric names (recorded as written in run.json, config.yaml and reports), bench systems. So do values in a YAML
config, the run's record. README.md's "Flag values" lists which flag is which.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

Value = TypeVar("Value", str, None)


def keyword(value: Value, choices: Iterable[str]) -> Value:
    """``value`` spelt as the choice it names in any case; anything else (None included) as it is.

    >>> keyword("GGUF", ("hf", "gguf")), keyword("Q8_0", ("auto", "q8_0")), keyword("gguf2", ("hf", "gguf"))
    ('gguf', 'q8_0', 'gguf2')
    """
    if value is None:
        return value
    folded = value.casefold()
    return next((choice for choice in choices if choice.casefold() == folded), value)
