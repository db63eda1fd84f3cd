"""Which conversation to inspect: record N of a data file, a prepared directory or a run's data.

Used by ``dsft data inspect`` and the dashboard's mask view.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dsft.data.conversation import Conversation
from dsft.data.ingest import Rejection, parse_record
from dsft.data.readers import read_records
from dsft.errors import DataError


def prepared_defaults(source: Path) -> list[str]:
    """``--set`` overrides that make a prepared directory render as it was prepared (model, template, mask).

    A directory from ``dsft data prepare`` records them in ``data_report.json``; a run directory holds its
    data under ``data/``. Explicit ``--set``/``--template``/``--tokenizer`` still win.
    """
    report = source / "data_report.json"
    if not (source.is_dir() and report.is_file()):
        return []
    prepared_for = json.loads(report.read_text(encoding="utf-8")).get("prepared_for") or {}
    keys = {"model": "model.name_or_path", "template": "template.name", "masking": "template.masking"}
    return [f"{keys[name]}={value}" for name, value in prepared_for.items() if name in keys and value]


def prepared_tokenizer(source: Path) -> str | None:
    """The ``--tokenizer`` a prepared directory was prepared with (None: the model's own, or not prepared)."""
    report = source / "data_report.json"
    if not (source.is_dir() and report.is_file()):
        return None
    value = (json.loads(report.read_text(encoding="utf-8")).get("prepared_for") or {}).get("tokenizer")
    return str(value) if value else None


def pick_conversation(source: Path, index: int, cfg: Any, field: str = "") -> Conversation:
    """Conversation ``index`` of a prepared directory (its train.jsonl) or any readable data file. ``field``: the
    form field that chose it, which a refusal names (``record 5``) where the CLI names ``--index``."""
    candidates = [source / "train.jsonl", source / "data" / "train.jsonl"] if source.is_dir() else []
    target = next((path for path in candidates if path.is_file()), source)
    count = 0
    for position, raw in enumerate(read_records([str(target)])):
        count = position + 1
        if position < index:
            continue
        parsed = parse_record(raw, cfg.data.format, cfg.data.columns)
        if isinstance(parsed, Rejection):
            another = f"choose another {field}" if field else "another: --index N"
            at = f"{field} {index}" if field else f"the record at --index {index}"
            raise DataError(f"{raw.where}: {at} is invalid ({another})", parsed.reasons)
        return parsed[1]
    if field:
        raise DataError(f"{target}: no {field} {index} (it holds {count}; the first is 0)")
    raise DataError(f"{target}: no record at --index {index} (indices start at 0)")
