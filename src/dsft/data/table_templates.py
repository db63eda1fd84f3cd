"""Template filling: question-answer records from the rows of a table, each row asked several ways.

Guide 000's numeric QA: a table of reservoirs (name, completion year and month, capacity) becomes, for
every row, one record per question phrasing, all with the row's answer. Templates are Python format
strings over the row's columns (``{name}水库是哪年建成的？``). The records of one row share a family key
(:func:`dsft.data.split.family_key`), so the split keeps all phrasings of a row on one side: the
validation set asks about reservoirs the model never saw, which is what it should measure.

>>> rows = [{"name": "青山", "year": 1958}]
>>> records = fill_rows(rows, ["t.csv row 1"], ["{name}水库哪年建成？", "{name}水库的建成年份是？"], "{year}年。")
>>> [(c.messages[0].content, c.messages[1].content, c.meta["augment_method"]) for c in records]
[('青山水库哪年建成？', '1958年。', 'template'), ('青山水库的建成年份是？', '1958年。', 'template')]
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from typing import Any

from dsft.data.conversation import Conversation, Message
from dsft.data.readers import read_records
from dsft.data.split import family_key
from dsft.errors import DataError

METHOD = "template"


def template_fields(template: str) -> set[str]:
    """The column names a format string uses (``{name}`` -> ``name``)."""
    return {field.split(".")[0].split("[")[0] for _, field, _, _ in string.Formatter().parse(template) if field}


def fill_rows(
    rows: Sequence[dict[str, Any]], wheres: Sequence[str], questions: Sequence[str], answer: str,
    reasoning: str | None = None, system: str | None = None,
) -> list[Conversation]:
    """One conversation per (row, question template), in row order; meta names the row and the phrasing."""
    out = []
    for row, where in zip(rows, wheres):
        family = family_key(f"table\x1f{where}")
        for number, question in enumerate(questions):
            messages = [Message("system", system.format_map(row))] if system else []
            messages += [Message("user", question.format_map(row)),
                         Message("assistant", answer.format_map(row), reasoning.format_map(row) if reasoning else None)]
            meta = {"origin": f"{where} × question {number + 1}",
                    "augment_method": METHOD, "augment_parent": where, "augment_family": family}
            out.append(Conversation(messages, meta=meta))
    return out


def read_table(path: str, templates: Sequence[str], where: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows of a CSV/JSON/JSONL table and their locations; a row lacking a used column is an error."""
    needed = set().union(*(template_fields(t) for t in templates))
    rows, wheres = [], []
    try:
        records = list(read_records([path]))
    except DataError as exc:
        raise DataError(f"{where}.table: {exc}") from None
    for raw in records:
        if raw.error is not None:
            raise DataError(f"{where}: {raw.where}: {raw.error}")
        if not isinstance(raw.data, dict):
            raise DataError(f"{where}: {raw.where}: a table row must be an object, got {type(raw.data).__name__}")
        missing = sorted(needed - raw.data.keys())
        if missing:
            raise DataError(f"{where}: {raw.where}: no column {', '.join(map(repr, missing))} "
                            f"(the row has {', '.join(map(repr, raw.data))})")
        rows.append(raw.data)
        wheres.append(raw.where)
    if not rows:
        raise DataError(f"{where}: {path} has no rows")
    return rows, wheres
