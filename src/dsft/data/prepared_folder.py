"""The prepared-data folder: what a preparation writes into it, the placeholder report that marks one under
way, and reading it back.

``train.jsonl``/``val.jsonl``/``test.jsonl`` (OpenAI messages form), ``rejects.jsonl``, ``removed.jsonl``,
``data_report.json`` and ``data_report.md``; the token-length histograms are written with the report's
statistics (:func:`dsft.data.report.build_report`). Where a preparation may write at all is
:mod:`dsft.data.prepared_output`'s concern.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from dsft.data.conversation import Conversation
from dsft.data.ingest import write_rejections
from dsft.data.ledger import Ledger
from dsft.data.report import render_markdown, write_jsonl, write_removed
from dsft.data.split import SPLITS, split_file
from dsft.disk import replaced_atomically
from dsft.errors import DataError

REPORT_FILE = "data_report.json"
PLACEHOLDER_REPORT = {"preparing": True}  # the report of a preparation under way (see mark_preparing)
# What a reader says of a folder whose report is still the placeholder, after naming the folder.
UNFINISHED_PREPARATION = (f"a preparation that did not finish (its {REPORT_FILE} is still the placeholder a preparation "
                          "writes first; its rejects.jsonl or the error it stopped with says why): rerun the "
                          "preparation into it")
Record = TypeVar("Record")  # what one line of a split file is read as: a conversation, a preference record


@dataclass
class Prepared:
    """The prepared splits (``train``/``val``/``test``) and the report (see ``data_report.json``)."""

    splits: dict[str, list[Conversation]]
    report: dict[str, Any]
    out_dir: Path | None = None


def mark_preparing(out: Path) -> None:
    """Make ``out`` hold a data report from the start of a preparation (a placeholder, which the real report replaces).

    Every process of a launched job prepares the same data into ``RUN/data`` at once, and a process that is still
    checking that folder before its own preparation (:func:`dsft.data.prepared_output.check_prepared_output`) took
    another's splits, written before their report, for the user's files and stopped the job. A preparation that
    fails before its report (``data.on_error: fail`` writes rejects.jsonl only) is known for one too, so the same
    command can be rerun over it.
    """
    if not (out / REPORT_FILE).is_file():
        with replaced_atomically(out / REPORT_FILE) as handle:
            handle.write(json.dumps(PLACEHOLDER_REPORT) + "\n")


def preparation_state(directory: str | Path) -> Literal["finished", "unfinished"] | None:
    """What ``directory``'s data report says of it: None (no report: no preparation wrote it), ``"unfinished"`` (the
    placeholder of :func:`mark_preparing`: a preparation under way, or one that stopped before its report) or
    ``"finished"``. Every reader that takes a folder for prepared data by its report asks this, never the file alone.

    >>> preparation_state("/nonexistent")
    """
    path = Path(directory) / REPORT_FILE
    if not path.is_file():
        return None
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "finished"  # written whole or not at all (a rename): a report someone edited; its readers say more
    return "unfinished" if report == PLACEHOLDER_REPORT else "finished"


def check_finished_preparation(path: Path) -> None:
    """Refuse to read ``path`` as prepared data unless a preparation finished writing it (its splits, then its
    report): :class:`DataError` naming what is missing."""
    if preparation_state(path) == "unfinished":
        raise DataError(f"{path}: {UNFINISHED_PREPARATION}", job_wide=True)
    train = split_file("train")
    if not (path / train).is_file():
        raise DataError(f"{path}: not a prepared data directory (no {train}); run `dsft data prepare` first",
                        job_wide=True)


def write_prepared(out: Path, splits: dict[str, list[Conversation]], ledger: Ledger) -> None:
    """Write the splits, every rejection and every removal into ``out`` (the report comes last, see
    :func:`write_report`)."""
    for name in SPLITS:
        write_jsonl(splits[name], out / split_file(name))
    write_rejections(ledger.rejections, out / "rejects.jsonl")
    write_removed(ledger.removed, out / "removed.jsonl")


def write_report(out: Path, report: dict[str, Any]) -> None:
    """Replace the placeholder with the finished report, ``data_report.json`` and ``data_report.md``."""
    write_report_json(out, report)
    with replaced_atomically(out / "data_report.md", errors="backslashreplace") as handle:
        handle.write(render_markdown(report))


def write_report_json(out: Path, report: dict[str, Any]) -> None:
    """Replace the placeholder with the finished ``data_report.json`` (SFT and preference data)."""
    # Rejection reasons may quote input bytes that are not UTF-8 (lone surrogates, e.g. a GBK column name): written
    # as \\udcXX escapes, which JSON reads back as the same characters, instead of failing the whole write.
    with replaced_atomically(out / REPORT_FILE, errors="backslashreplace") as handle:
        handle.write(json.dumps(report, ensure_ascii=False, indent=2) + "\n")


def read_prepared_folder(directory: str | Path, read_split: Callable[[Path], list[Record]],
                         ) -> tuple[dict[str, list[Record]], dict[str, Any]]:
    """The splits and the report of the preparation that finished writing ``directory``, SFT or preference data
    alike: each split's file read by ``read_split`` (a split without a file is empty), the report ``{}`` if there is
    none. Refused, naming what is missing, as :func:`check_finished_preparation` refuses."""
    path = Path(directory)
    check_finished_preparation(path)
    splits = {name: read_split(file) if (file := path / split_file(name)).is_file() else [] for name in SPLITS}
    report_path = path / REPORT_FILE
    report = json.loads(report_path.read_text(encoding="utf-8")) if report_path.is_file() else {}
    return splits, report


def load_prepared(directory: str | Path) -> Prepared:
    """Read a directory written by :func:`dsft.data.pipeline.prepare` (``dsft data prepare``) back into a
    :class:`Prepared`."""
    splits, report = read_prepared_folder(directory, _read_conversations)
    return Prepared(splits, report, Path(directory))


def _read_conversations(file: Path) -> list[Conversation]:
    """A split file of SFT data: one conversation per line (blank lines skipped)."""
    conversations: list[Conversation] = []
    with open(file, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                conversations.append(Conversation.from_dict(json.loads(line)))
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise DataError(f"{file}:{number}: not a prepared conversation ({exc})", job_wide=True) from None
    return conversations
