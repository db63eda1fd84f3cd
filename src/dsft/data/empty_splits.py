"""What a preparation (SFT or preference data) says when a split it needs came out empty: no records left to
train on, or none left in the ``data.val`` / ``data.test`` files it was given by name.

Both errors name the counts, where the report is and why (the most frequent rejection reasons, each with its
count and first ``file:line``; what cleaning removed), in the words of :func:`dsft.data.report.rejection_notice`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dsft.data.ledger import Ledger, rejected_reasons
from dsft.data.prepared_folder import REPORT_FILE
from dsft.data.readers import expand_inputs
from dsft.data.report import rejection_notice
from dsft.errors import DataError


def check_splits_left(report: dict[str, Any], sources: dict[str, list[str]], ledger: Ledger, out: Path,
                      records: str = "records") -> None:
    """Refuse a preparation whose train split is empty, or whose ``data.val`` / ``data.test`` files (named, so an
    empty split would go unnoticed: no evaluation, no test) left no record; called once the report and rejects are
    written, which the errors point at. ``records`` names what was read (``pair records``).

    >>> report = {"read": 4, "rejected": 0, "removed": {}, "kept": 4, "splits": {"train": 3, "val": 1, "test": 0}}
    >>> check_splits_left(report, {"train": ["t.jsonl"], "val": [], "test": []}, Ledger(read=4), Path("out"))
    >>> check_splits_left(report, {"train": ["t.jsonl"], "val": [], "test": ["x.jsonl"]}, Ledger(read=4), Path("out"))
    Traceback (most recent call last):
    ...
    dsft.errors.DataError: data.test: no records left to test on: read 0, rejected 0 (x.jsonl; see \
out/data_report.json): the files hold no records
    """
    if not report["splits"]["train"]:
        raise nothing_left_to_train_on(report, ledger, out, records)
    for name in ("val", "test"):
        if sources[name] and not report["splits"][name]:
            raise named_split_left_empty(name, sources[name], ledger, out)


def nothing_left_to_train_on(report: dict[str, Any], ledger: Ledger, out: Path, records: str = "records") -> DataError:
    """The train split is empty: the counts, where the report is, what removed records and why records were
    rejected (the most frequent reasons).

    >>> from dsft.data.clean import Removed
    >>> from dsft.data.conversation import Conversation
    >>> from dsft.data.ingest import Rejection
    >>> ledger = Ledger(read=3, rejections=[Rejection("p.jsonl:3", ["malformed JSON"])])
    >>> for line, other in ((1, 2), (2, 1)):  # two pairs preferring opposite sides: both removed
    ...     ledger.remove("preference_conflict", Removed(Conversation([], meta={"origin": f"p.jsonl:{line}"}),
    ...                                                  f"preference conflicts with p.jsonl:{other}"))
    >>> report = {"read": 3, "rejected": 1, "removed": {"preference_conflict": 2}, "kept": 0,
    ...           "splits": {"train": 0, "val": 0, "test": 0}, "rejected_reasons": ledger.rejected_reasons()}
    >>> print(nothing_left_to_train_on(report, ledger, Path("out"), "pair records"))
    no pair records left to train on: read 3, rejected 1, removed 2, kept 0 (splits {'train': 0, 'val': 0, 'test': 0}; \
see out/data_report.json); removed by preference_conflict 2; first removed: p.jsonl:1: preference conflicts with \
p.jsonl:2
    data: 1 of 3 records rejected; each one and why: out/rejects.jsonl
      1 x malformed JSON (first: p.jsonl:3)
    """
    why = ": the inputs hold no records" if not report["read"] else ""  # often one wrong field name, or one filter
    removed = [f"{step} {count}" for step, count in report["removed"].items() if count]
    if removed:
        why += f"; removed by {', '.join(removed)}"
        first_removed = next(item for items in ledger.removed.values() for item in items)
        why += f"; first removed: {first_removed.conversation.meta.get('origin', '?')}: {first_removed.reason}"
    notice = rejection_notice(report, out)  # the most frequent reasons, as a preparation that kept some says them
    return DataError(
        f"no {records} left to train on: read {report['read']}, rejected {report['rejected']}, "
        f"removed {sum(report['removed'].values())}, kept {report['kept']} "
        f"(splits {report['splits']}; see {out / REPORT_FILE}){why}" + (f"\n{notice}" if notice else ""),
        job_wide=True,  # every process of a launched job prepares the same data
    )


def named_split_left_empty(name: str, files: list[str], ledger: Ledger, out: Path) -> DataError:
    """``data.val`` / ``data.test`` named files and none of their records is left: why, as the train check says
    (the most frequent reasons of the split's own rejections, and whether cleaning removed the rest).

    The evaluation splits are deduplicated first (test before val), so what cleaning removed of them is named by
    the first such record and its reason (a duplicate of a ``data.test`` record, a filter), not guessed:

    >>> from dsft.data.clean import Removed
    >>> from dsft.data.conversation import Conversation
    >>> from dsft.data.ingest import Rejection
    >>> ledger = Ledger(read=3, rejections=[Rejection("v.jsonl:1", ["empty"])])
    >>> ledger.read_by_split["val"], ledger.rejected_by_split["val"] = 2, list(ledger.rejections)
    >>> ledger.remove("exact_dedup", Removed(Conversation([], meta={"origin": "v.jsonl:2"}), "exact duplicate of t.jsonl:1"))
    >>> print(named_split_left_empty("val", ["v.jsonl"], ledger, Path("out")))
    data.val: no records left to validate on: read 2, rejected 1 (v.jsonl; see out/data_report.json); removed by \
exact_dedup 1, first v.jsonl:2: exact duplicate of t.jsonl:1
    data.val: 1 of 2 records rejected; each one and why: out/rejects.jsonl
      1 x empty (first: v.jsonl:1)
    """
    purpose = {"val": "validate on", "test": "test on"}[name]
    read, rejected = ledger.read_by_split[name], ledger.rejected_by_split.get(name, [])
    why = ": the files hold no records" if not read else ""
    if len(rejected) < read:
        why += f"; {_removed_from(files, ledger)}"
    notice = rejection_notice({"read": read, "rejected": len(rejected), "rejected_reasons": rejected_reasons(rejected)},
                              out, f"data.{name}")
    return DataError(f"data.{name}: no records left to {purpose}: read {read}, rejected {len(rejected)} "
                     f"({', '.join(files)}; see {out / REPORT_FILE}){why}" + (f"\n{notice}" if notice else ""),
                     job_wide=True)


def _removed_from(files: list[str], ledger: Ledger) -> str:
    """What cleaning removed of the records read from ``files`` (their ``origin`` is ``FILE:LINE`` or ``FILE row N``):
    the count per step and the first of them with its reason."""
    try:
        paths = [str(path) for path in expand_inputs(files)]
    except DataError:  # moved since they were read: their records' origins still begin with the names given
        paths = list(files)
    sources = tuple(f"{path}{separator}" for path in paths for separator in (":", " "))
    removed = {step: [item for item in items if str(item.conversation.meta.get("origin", "")).startswith(sources)]
               for step, items in ledger.removed.items()}
    counts = ", ".join(f"{step} {len(items)}" for step, items in removed.items() if items)
    first = next((item for items in removed.values() for item in items), None)
    if first is None:
        return "removed by cleaning"
    return f"removed by {counts}, first {first.conversation.meta['origin']}: {first.reason}"
