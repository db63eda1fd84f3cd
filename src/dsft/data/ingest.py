"""Read -> normalise -> validate: raw inputs become valid conversations or reported rejections.

Every record read ends up in exactly one of ``Ingested.conversations`` or ``Ingested.rejections``;
each conversation records where it came from in ``meta["origin"]`` (``file:line`` or ``file row N``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dsft.data.conversation import Conversation
from dsft.data.formats import FormatProblem, convert
from dsft.data.raw_record import RawRecord
from dsft.data.readers import read_records
from dsft.data.validate import validate_conversation
from dsft.disk import replaced_atomically
from dsft.errors import DataError

MAX_LISTED_PROBLEMS = 20  # problems spelled out in a DataError; the rest are counted


@dataclass
class Rejection:
    """A record that could not be used: where it is, every reason, and the record as read (or, when it did
    not parse, the start of its source text: ``raw``, with ``raw_cut`` when it was longer)."""

    where: str
    reasons: list[str]
    record: Any = None
    raw: str | None = None
    raw_cut: bool = False

    def as_dict(self) -> dict[str, Any]:
        row = {"where": self.where, "reasons": self.reasons, "record": self.record}
        if self.raw is not None:
            row.update(raw=self.raw, raw_cut=self.raw_cut)
        return row


@dataclass
class Ingested:
    conversations: list[Conversation] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    formats: Counter[str] = field(default_factory=Counter)

    @property
    def read(self) -> int:
        return len(self.conversations) + len(self.rejections)


def parse_record(raw: RawRecord, fmt: str = "auto", columns: dict[str, str] | None = None) -> tuple[str, Conversation] | Rejection:
    """One raw record -> (format name, valid conversation) or a :class:`Rejection`."""
    if raw.error is not None:
        return Rejection(raw.where, [raw.error], raw=raw.raw, raw_cut=raw.raw_cut)
    try:
        name, conversation = convert(raw.data, fmt, columns)
    except FormatProblem as exc:
        return Rejection(raw.where, [str(exc)], raw.data)
    problems = validate_conversation(conversation)
    if problems:  # named where each is in the record as written, not in the messages built from it
        return Rejection(raw.where, [conversation.named(problem) for problem in problems], raw.data)
    conversation.meta["origin"] = raw.where
    return name, conversation


def ingest_records(records: Iterable[RawRecord], fmt: str = "auto", columns: dict[str, str] | None = None) -> Ingested:
    """Parse and validate a stream of raw records (only kept conversations stay in memory)."""
    out = Ingested()
    for raw in records:
        parsed = parse_record(raw, fmt, columns)
        if isinstance(parsed, Rejection):
            out.rejections.append(parsed)
        else:
            out.formats[parsed[0]] += 1
            out.conversations.append(parsed[1])
    return out


def ingest(patterns: list[str], fmt: str = "auto", columns: dict[str, str] | None = None) -> Ingested:
    """Read, normalise and validate every record named by ``patterns`` (files, directories, globs)."""
    return ingest_records(read_records(patterns), fmt, columns)


def rejection_error(rejections: list[Rejection], rejects_path: Path | None = None) -> DataError:
    """The one error raised under ``data.on_error: fail``: the first problems and the total count."""
    listed = [f"{r.where}: {'; '.join(r.reasons)}" for r in rejections[:MAX_LISTED_PROBLEMS]]
    if len(rejections) > MAX_LISTED_PROBLEMS:
        listed.append(f"... and {len(rejections) - MAX_LISTED_PROBLEMS} more")
    where = f" (all listed in {rejects_path})" if rejects_path else ""
    return DataError(
        f"{len(rejections)} invalid record(s){where}; fix them or set data.on_error=skip to drop and report them",
        listed, job_wide=True,  # every process of a launched job reads the same records
    )


def fail_on_rejections(rejections: list[Rejection], on_error: str, out: Path) -> None:
    """Under ``data.on_error: fail`` a rejection stops the preparation: every one written to ``out/rejects.jsonl``
    (which the error names), then :func:`rejection_error` raised. Under ``skip``, nothing."""
    if rejections and on_error == "fail":
        write_rejections(rejections, out / "rejects.jsonl")
        raise rejection_error(rejections, out / "rejects.jsonl")


def write_rejections(rejections: list[Rejection], path: Path) -> None:
    """One JSON object per line; ASCII-escaped so undecodable input survives the round trip."""
    with replaced_atomically(path) as handle:
        for rejection in rejections:
            handle.write(json.dumps(rejection.as_dict(), ensure_ascii=True, default=repr) + "\n")
