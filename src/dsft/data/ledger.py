"""The running account of one data preparation (SFT or preference): what was read, rejected, removed per
step and added, so that ``read + sum(added) == kept + rejected + sum(removed)`` can be checked before
anything is written.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dsft.data.clean import Removed, StepResult
from dsft.data.conversation import Conversation
from dsft.data.ingest import Rejection

REJECTED_EXAMPLES = 10  # rejections quoted in the report (all of them are in rejects.jsonl)
REJECTED_REASONS = 10  # the most frequent reasons the report counts
# What varies between reasons that are one reason: a number standing alone (a column, a message's index, a byte
# offset, an undecodable byte written 0xC8) and a value quoted as JSON writes it (a KTO label's got "maybe"; a
# number inside it is part of it). Reasons that differ only there are counted as one, and a part that differs
# between them is written N or "..."; a part they share (UTF-8, a limit, the one value quoted) and a number inside
# a word (a field named q1) stay. Single quotes are left alone: they are also apostrophes (the tokenizer's ...).
_VARYING = re.compile(r'"(?:[^"\\]|\\.)*"|\b(?:0x[0-9A-Fa-f]+|\d+)\b')


def _placeholder(part: str) -> str:
    return '"..."' if part.startswith('"') else "N"


def rejected_reasons(rejections: Sequence[Rejection],
                     limit: int | None = REJECTED_REASONS) -> list[dict[str, object]]:
    """The ``limit`` most frequent reasons of ``rejections`` (every one for None), most frequent first (ties: the
    one met first): each with the records it rejected and where the first of them is. A record counts once for
    each of its reasons.

    >>> rejected_reasons([Rejection("a.jsonl:2", ["malformed JSON (column 1)"]), Rejection("a.jsonl:3", ["empty"]),
    ...                   Rejection("a.jsonl:5", ["malformed JSON (column 7)"])])
    [{'reason': 'malformed JSON (column N)', 'records': 2, 'first': 'a.jsonl:2'}, \
{'reason': 'empty', 'records': 1, 'first': 'a.jsonl:3'}]
    >>> rejected_reasons([Rejection("a.csv:2", ["not valid UTF-8 at byte 3"]),
    ...                   Rejection("b.csv:2", ["not valid UTF-8 at byte 9"])])[0]["reason"]
    'not valid UTF-8 at byte N'
    >>> rejected_reasons([Rejection("a.csv:2", ["not valid UTF-8 (byte 0xC8 at character 0)"]),
    ...                   Rejection("a.csv:3", ["not valid UTF-8 (byte 0xBD at character 0)"])])[0]["reason"]
    'not valid UTF-8 (byte N at character 0)'
    >>> [r["reason"] for r in rejected_reasons([Rejection("k.csv:2", ['label: expected 1 or 0; got "maybe"']),
    ...                                         Rejection("k.csv:3", ['label: expected 1 or 0; got "nope"']),
    ...                                         Rejection("k.csv:4", ['kto_tag: expected 1 or 0; got "12"'])])]
    ['label: expected 1 or 0; got "..."', 'kto_tag: expected 1 or 0; got "12"']
    """
    counts: Counter[str] = Counter()
    first: dict[str, tuple[str, str]] = {}  # key -> (where, the reason as first written)
    differs: dict[str, list[bool]] = {}  # key -> whether each of its varying parts differs between the records
    for rejection in rejections:
        own: dict[str, str] = {}  # this record's reasons by key, each key once, the first as written
        for reason in rejection.reasons:
            own.setdefault(_VARYING.sub(lambda part: _placeholder(part.group()), reason), reason)
        for key, reason in own.items():
            counts[key] += 1
            parts = _VARYING.findall(reason)
            if key not in first:
                first[key], differs[key] = (rejection.where, reason), [False] * len(parts)
            else:
                firsts = _VARYING.findall(first[key][1])
                differs[key] = [d or a != b for d, a, b in zip(differs[key], firsts, parts)]
    return [{"reason": _said(first[key][1], differs[key]), "records": count, "first": first[key][0]}
            for key, count in counts.most_common(limit)]


def _said(reason: str, differs: list[bool]) -> str:
    """``reason`` with each varying part that ``differs`` written as its placeholder (N, "...")."""
    flags = iter(differs)
    return _VARYING.sub(lambda part: _placeholder(part.group()) if next(flags) else part.group(), reason)


@dataclass
class Ledger:
    """Running accounts: what was read, rejected, removed per step and added by oversampling.

    >>> ledger = Ledger(read=3, rejections=[Rejection("a.jsonl:2", ["empty"])])
    >>> ledger.remove("exact_dedup", Removed(Conversation([]), "exact duplicate of a.jsonl:1"))
    >>> ledger.removed_counts(), ledger.rejected_examples()
    ({'exact_dedup': 1}, ['a.jsonl:2: empty'])
    >>> ledger.check_identity(kept=1)
    """

    read: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    removed: dict[str, list[Removed]] = field(default_factory=dict)  # step -> what it removed, in order
    added: dict[str, int] = field(default_factory=dict)  # step -> records it generated
    formats: Counter[str] = field(default_factory=Counter)  # input form -> records read in it
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)  # score name -> distribution
    augment_skipped: Counter[str] = field(default_factory=Counter)  # attempts that generated nothing, by reason
    # What each split's own files (data.train or the inputs, data.val, data.test) gave: records read, rejections.
    read_by_split: Counter[str] = field(default_factory=Counter)
    rejected_by_split: dict[str, list[Rejection]] = field(default_factory=dict)

    def record(self, step: str, result: StepResult) -> list[Conversation]:
        """Book what ``step`` removed (the step is listed even when it removed nothing); return what it kept."""
        self.removed.setdefault(step, []).extend(result.removed)
        return result.kept

    def remove(self, step: str, item: Removed) -> None:
        """Book one record ``step`` removed."""
        self.removed.setdefault(step, []).append(item)

    def removed_counts(self) -> dict[str, int]:
        return {step: len(items) for step, items in self.removed.items()}

    def rejected_examples(self) -> list[str]:
        return [f"{r.where}: {'; '.join(r.reasons)}" for r in self.rejections[:REJECTED_EXAMPLES]]

    def rejected_reasons(self) -> list[dict[str, object]]:
        return rejected_reasons(self.rejections)

    def check_identity(self, kept: int) -> None:
        """Every record read or generated is kept, rejected or removed by exactly one step (``kept`` counted
        in the same unit as ``read``)."""
        removed = self.removed_counts()
        assert self.read + sum(self.added.values()) == kept + len(self.rejections) + sum(removed.values()), (
            self.read, self.added, kept, len(self.rejections), removed)
