"""Which conversation to inspect: record N of a data file, a prepared directory or a run's data.

Used by ``dsft data inspect`` and the dashboard's mask view.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from dsft.data import clean
from dsft.data.control_tokens import control_token_pattern, control_token_problems
from dsft.data.conversation import Conversation
from dsft.data.ingest import Rejection, parse_record
from dsft.data.readers import read_records
from dsft.data.split import split_file
from dsft.errors import DataError


def _preparation_report(source: Path) -> Path | None:
    """The ``data_report.json`` of the preparation ``source`` is (a prepared or run directory) or is a split file of
    (``PREPARED/val.jsonl``, as inspect's own header names a record); None for other data."""
    if source.is_dir():
        report = source / "data_report.json"
    elif source.is_file() and source.name in {split_file(name) for name in ("train", "val", "test")}:
        report = source.parent / "data_report.json"
    else:
        return None
    return report if report.is_file() else None


def prepared_defaults(source: Path) -> list[str]:
    """``--set`` overrides that make a prepared directory, or one of its split files, render as it was prepared
    (model, template, mask).

    A directory from ``dsft data prepare`` records them in ``data_report.json``; a run directory holds its
    data under ``data/``. Explicit ``--set``/``--template``/``--tokenizer`` still win.
    """
    report = _preparation_report(source)
    if report is None:
        return []
    prepared_for = json.loads(report.read_text(encoding="utf-8")).get("prepared_for") or {}
    keys = {"model": "model.name_or_path", "template": "template.name", "masking": "template.masking"}
    return [f"{keys[name]}={value}" for name, value in prepared_for.items() if name in keys and value]


def prepared_tokenizer(source: Path) -> str | None:
    """The ``--tokenizer`` a prepared directory (or split file) was prepared with (None: the model's own, or not
    prepared)."""
    report = _preparation_report(source)
    if report is None:
        return None
    value = (json.loads(report.read_text(encoding="utf-8")).get("prepared_for") or {}).get("tokenizer")
    return str(value) if value else None


def record_on_line(source: Path) -> tuple[Path, int] | None:
    """``(file, index)`` for ``FILE:LINE`` naming no file of its own, where FILE is a data file: the record on that
    line, as inspect's header, data preparation's rejections and reports name records (``train.jsonl:6``); None
    for any other source. A line that starts no record is a :class:`DataError` naming the file's records.
    """
    named = re.fullmatch(r"(.+):(\d+)", str(source))
    if source.exists() or named is None or not Path(named[1]).is_file():
        return None
    where, lines = f"{named[1]}:{int(named[2])}", []
    for position, raw in enumerate(read_records([named[1]])):
        if raw.where == where:
            return Path(named[1]), position
        lines.append(raw.where.rsplit(":", 1)[-1])
    shown = ", ".join(lines[:5]) + (", ..." if len(lines) > 5 else "")
    raise DataError(f"{source}: no record starts on line {int(named[2])} of {named[1]} (its records start on lines "
                    f"{shown}); or give the record's position: {named[1]} --index N")


def records_read(source: Path) -> Path:
    """What `dsft data inspect SOURCE` reads: a prepared directory's (or a run's) train split, else ``source``
    itself, a file or a directory read whole."""
    candidates = [source / split_file("train"), source / "data" / split_file("train")] if source.is_dir() else []
    return next((path for path in candidates if path.is_file()), source)


def pick_conversation(source: Path, index: int, cfg: Any, field: str = "") -> Conversation:
    """Conversation ``index`` of a prepared directory (its train.jsonl) or any readable data file. ``field``: the
    form field that chose it, which a refusal names (``record 5``) where the CLI names ``--index``.

    A record of a data file goes through the text rewrites preparation would apply (``data.clean.strip_html``,
    ``normalize_unicode``), so it renders as it would be trained; a prepared record already has.
    """
    target = records_read(source)
    count = 0
    for position, raw in enumerate(read_records([str(target)])):
        count = position + 1
        if position < index:
            continue
        parsed = parse_record(raw, cfg.data.format, cfg.data.columns)
        if isinstance(parsed, Rejection):
            raise invalid_record(raw.where, index, field, parsed.reasons)
        conversation = parsed[1]
        if target == source:
            for step, enabled in ((clean.strip_html, cfg.data.clean.strip_html),
                                  (clean.normalize_unicode, cfg.data.clean.normalize_unicode)):
                result = step([conversation]) if enabled else None
                if result is not None and result.removed:
                    raise invalid_record(raw.where, index, field, [result.removed[0].reason])
                conversation = result.kept[0] if result is not None else conversation
        return conversation
    if field:
        raise DataError(f"{target}: no {field} {index} (it holds {count}; the first is 0)")
    held = f"--index 0 to {count - 1}" if count > 1 else ("only --index 0" if count else "none")
    raise DataError(f"{target}: no record at --index {index}; it holds {count} record{'s' * (count != 1)}, {held}")


def invalid_record(where: str, index: int, field: str, reasons: list[str]) -> DataError:
    """The refusal of a record preparation would reject or remove, naming the CLI's flag or the form's field."""
    another = f"choose another {field}" if field else "another: --index N"
    at = f"{field} {index}" if field else f"the record at --index {index}"
    return DataError(f"{where}: {at} is invalid ({another})", reasons)


def check_control_tokens(conversation: Conversation, tokenizer: Any, index: int, field: str = "") -> None:
    """Refuse a record whose text holds one of ``tokenizer``'s control tokens (preparation rejects it; the view
    would show the token where the data has characters)."""
    problems = [conversation.named(p) for p in control_token_problems(conversation, control_token_pattern(tokenizer))]
    if problems:
        raise invalid_record(str(conversation.meta.get("origin", "?")), index, field, problems)
