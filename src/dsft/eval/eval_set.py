"""Evaluation items from any data file dsft reads: the prompt, the reference answer, optional choices.

Each record is read by :mod:`dsft.data.readers` and normalised by :func:`dsft.data.formats.to_conversation`
(so every training format works: messages, ShareGPT, Alpaca, CoT, ...). The reference is the LAST
assistant message's content (its reasoning is kept beside it, never scored); the prompt is every message
before it. A record may also carry ``choices`` (multiple choice) and ``label`` (label task) at the top
level (read as ``dsft metrics`` reads them, :func:`dsft.eval.scoring.record_choices`). Records that cannot be used
are skipped and counted per reason, never fatal.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from dsft.data.clean import map_texts, text_cleaner
from dsft.data.conversation import Conversation
from dsft.data.formats import FormatProblem, to_conversation
from dsft.data.ingest import Rejection
from dsft.data.ledger import rejected_reasons
from dsft.data.readers import read_records
from dsft.data.validate import find_bad_unicode
from dsft.errors import DsftError
from dsft.eval.scoring import missing_choice_or_label, record_choices
from dsft.templates import ChatTemplate
from dsft.training.rundir import RunDir


@dataclass
class EvalItem:
    """One prompt to answer, with what a good answer is. ``source`` is ``file:line`` of the record."""

    prompt: Conversation
    reference: str
    reference_reasoning: str | None = None
    choices: list[str] | None = None
    label: str | None = None
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


def item_from_conversation(conversation: Conversation, record: dict[str, Any] | None = None,
                           source: str = "") -> tuple[EvalItem | None, str | None]:
    """Split a conversation into prompt and reference; (None, reason) when it has no final answer."""
    messages = conversation.messages
    if not messages or messages[-1].role != "assistant":
        return None, "last message is not an assistant answer"
    answer = messages[-1]
    if not answer.content.strip():
        return None, "empty reference answer"
    if len(messages) < 2:
        return None, "no prompt before the answer"
    record = record or {}
    choices, reason = record_choices(record)  # "ABCD" is no options: skipped, as dsft metrics skips it
    # A NaN label or option would be scored as the text "nan".
    if reason := reason or missing_choice_or_label(record):
        return None, reason
    label = record.get("label")
    prompt = Conversation(messages[:-1], tools=conversation.tools, meta=dict(conversation.meta))
    return EvalItem(prompt, answer.content, answer.reasoning, choices,
                    None if label is None else str(label), source, dict(conversation.meta)), None


def renderable_items(items: Sequence[EvalItem], template: ChatTemplate) -> tuple[list[EvalItem], Counter[str]]:
    """The items whose prompt ``template`` can render as written, and the others counted per reason
    (``prompt: REASON``): the role orders :meth:`~dsft.templates.spec.ChatTemplate.prompt_problems` names, which
    ``dsft serve`` answers with a 400, except a system message after the first turn, which the families that move
    it to the start render as training did. Under V3.1 or V3.2 a prompt holding two assistant turns in a row, or ending
    with the assistant turn before the reference, would be scored on a reply written straight after an
    end-of-sentence token with no header.
    """
    kept: list[EvalItem] = []
    refused: Counter[str] = Counter()
    for item in items:
        # A late system message is rendered as training rendered it (moved to the start where the family does);
        # dsft serve refuses it only because a client who put it there may not expect the move.
        problems = template.prompt_problems(item.prompt, system_may_move=True)
        if problems:
            refused[f"prompt: {problems[0][1]}"] += 1
        else:
            kept.append(item)
    return kept, refused


def run_text_cleaner(model_or_run: str | Path) -> Callable[[str], str] | None:
    """The text rewrites (HTML stripping, Unicode normalisation) a run's data was prepared with, if any.

    References must be cleaned as the training targets were: a model trained on stripped text is
    otherwise scored against HTML it was never shown.
    """
    run = RunDir.find(model_or_run) or RunDir(model_or_run)  # a checkpoint's run, or the directory's own config
    if not run.config_path.is_file():
        return None
    clean_cfg = run.config.data.clean
    return text_cleaner(clean_cfg.strip_html, clean_cfg.normalize_unicode)


def data_reading(model_or_run: str | Path, data_config: Any = None) -> tuple[str, dict[str, str] | None]:
    """``(data.format, data.columns)`` that read the eval records: ``data_config``'s (a ``--config``'s data
    section), else the run directory's own config (raw files in the format the run was trained on need no
    repeating), else auto-detection with no renaming."""
    if data_config is None:
        run = RunDir.find(model_or_run) or RunDir(model_or_run)  # a checkpoint's run, or the directory's own
        if not run.config_path.is_file():
            return "auto", None
        data_config = run.config.data
    return data_config.format, dict(data_config.columns) or None


def undecodable_text(conversation: Conversation) -> str | None:
    """``messages[i].FIELD: why`` for the first text holding bytes the file's encoding could not read (the lone
    surrogates a GBK or UTF-16 file's bytes become), named where it is in the record as data preparation's
    validation names it (a CoT record's ``Question``, an Alpaca record's ``output``); None when all read.

    >>> from dsft.data.conversation import Message
    >>> undecodable_text(Conversation([Message("user", "Q"), Message("assistant", "\\udcb7\\udca2")]))[:49]
    'messages[1].content: not valid UTF-8 (byte 0xB7 a'
    """
    for index, message in enumerate(conversation.messages):
        for name in ("content", "reasoning"):
            value = getattr(message, name)
            if isinstance(value, str) and (bad := find_bad_unicode(value)):
                return conversation.named(f"messages[{index}].{name}: {bad}")  # where it is in the file
    return None


def reader_reason(error: str) -> str:
    """A line the reader could not read, as eval counts it: a malformed line by its kind alone (the parser's detail
    differs line by line), any other error whole (a GBK line's encoding and the conversion to run).

    >>> reader_reason("malformed JSON: Expecting value (column 1)")
    'malformed JSON'
    >>> reader_reason("not valid UTF-8 (bad byte at offset 9); it reads as GBK/GB18030 Chinese: save the file as UTF-8 "
    ...               "(e.g. iconv -f GB18030 -t UTF-8 IN > OUT)")[-64:]
    'save the file as UTF-8 (e.g. iconv -f GB18030 -t UTF-8 IN > OUT)'
    """
    return error.split(":")[0] if error.startswith("malformed ") else error


def _read(record: Any, fmt: str, columns: dict[str, str] | None) -> Conversation:
    """The record in the configured format; a record that is not in it but reads by itself (a prepared split's
    messages, where the run was trained from raw context/question/answer records) is read as detected."""
    try:
        return to_conversation(record, fmt, columns)
    except FormatProblem:
        if fmt == "auto" and not columns:
            raise
        try:
            return to_conversation(record)
        except FormatProblem:
            pass
        raise


# A line of the predictions.jsonl dsft eval writes (and dsft metrics reads): read as data it is a question/answer
# record whose reference is the earlier model's answer.
PREDICTIONS_LINE = ("a predictions line (prediction and reference, as dsft eval writes), not evaluation data: score "
                    "the file with `dsft metrics --predictions FILE`, or evaluate on the data it came from")


def _is_predictions_line(record: Any) -> bool:
    return isinstance(record, dict) and "prediction" in record and "reference" in record


class SkippedRecords(Counter[str]):
    """Records skipped per reason, with where the first of each is (``first``: reason -> ``file:line``)."""

    def __init__(self, counts: dict[str, int] | None = None, first: dict[str, str] | None = None) -> None:
        super().__init__(counts or {})
        self.first: dict[str, str] = dict(first or {})


def load_eval_set(data: str | Path | list[str], limit: int | None = None, fmt: str = "auto",
                  columns: dict[str, str] | None = None,
                  clean: Callable[[str], str] | None = None) -> tuple[list[EvalItem], SkippedRecords]:
    """Items from files / globs / directories (first ``limit`` usable ones) and skip counts per reason.

    ``fmt`` and ``columns`` read the records as data preparation does (a record they do not fit is read as
    detected, so a prepared split evaluates whatever format its run was trained from).

    ``clean`` rewrites every message text (prompt and reference) first, as data preparation did.

    A missing input or unsupported file type raises :class:`~dsft.errors.DataError`; no usable item at
    all raises :class:`~dsft.errors.DsftError` listing the reasons.
    """
    patterns = [str(p) for p in data] if isinstance(data, list) else [str(data)]
    items: list[EvalItem] = []
    rejections: list[Rejection] = []
    for raw in read_records(patterns):
        if limit is not None and len(items) >= limit:
            break
        if raw.error is not None:
            rejections.append(Rejection(raw.where, [reader_reason(raw.error)]))
            continue
        if fmt == "auto" and not columns and _is_predictions_line(raw.data):
            rejections.append(Rejection(raw.where, [PREDICTIONS_LINE]))
            continue
        try:
            conversation = _read(raw.data, fmt, columns)
        except FormatProblem as exc:
            rejections.append(Rejection(raw.where, [str(exc)]))
            continue
        if bad := undecodable_text(conversation):  # the tokenizer would fail on it with a TypeError
            rejections.append(Rejection(raw.where, [bad]))
            continue
        if clean is not None:
            conversation = map_texts(conversation, clean)
        item, reason = item_from_conversation(conversation, raw.data if isinstance(raw.data, dict) else None,
                                              raw.where)
        if item is None:
            rejections.append(Rejection(raw.where, [str(reason)]))
        else:
            items.append(item)
    # Counted as data preparation counts its rejections: reasons that differ only in a number (the byte a GBK
    # record begins with, a message's index) are one reason.
    reasons = rejected_reasons(rejections, limit=None)
    skipped = SkippedRecords({str(r["reason"]): int(str(r["records"])) for r in reasons},
                             {str(r["reason"]): str(r["first"]) for r in reasons})
    if not items:  # each reason with where its first record is, as data preparation names them
        problems = [f"{r['reason']}: {r['records']} (first at {r['first']})" for r in reasons]
        raise DsftError(f"--data {', '.join(patterns)}: no usable evaluation records",
                        problems or ["the input holds no records"])
    return items, skipped
