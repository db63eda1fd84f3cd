"""Distillation: ask a teacher model (any OpenAI-compatible endpoint) each question, keep its reasoning.

The common DeepSeek workflow: R1-style reasoning traces from a strong model become SFT data for a small
one. For each question the teacher is asked up to ``samples`` times (rejection sampling); the first
answer that passes is kept as a messages-format record with ``reasoning_content``. An answer fails when:

* the output is unusable: validation problems of the resulting record (an unclosed ``<think>``, empty
  reasoning, an empty answer), or no reasoning at all while ``require_reasoning`` is on;
* it is wrong: the question has a reference and the injected ``check(answer, reference)`` names a
  problem (dsft's answer check, :func:`dsft.eval.answer_check.check_answer`, wired in by the CLI).

Reasoning comes from the response's ``reasoning_content`` (DeepSeek API, vLLM's reasoning parser,
``dsft serve``), else from a ``<think>…</think>`` block at the start of the content, or from the text
before a lone ``</think>`` (an R1 prompt opens the block itself).

Every question is accounted for, with ``read + added == kept + rejected + sum(removed)`` (``added`` is
always empty here): ``kept`` = answered; ``rejected`` = input records without a usable question;
``removed`` = ``wrong_answer`` (some sample was checked and wrong, none right), ``unusable_output``
(every sample unusable) and ``request_failed`` (a request still failed after its retries: rerun to retry
it; answered requests come from the cache and are not asked again).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dsft.config.schema import DistillConfig
from dsft.data.clean import Removed
from dsft.data.conversation import Conversation, Message
from dsft.data.endpoint import ChatClient, Completion, EndpointSettings, RequestFailed, ResponseCache
from dsft.data.ingest import Rejection, write_rejections
from dsft.data.inline_think import split_inline_think
from dsft.data.ledger import rejected_reasons
from dsft.data.readers import check_outputs_spare_inputs, expand_inputs, read_records
from dsft.data.report import write_jsonl, write_removed
from dsft.data.validate import validate_conversation
from dsft.disk import check_fresh_output_dir
from dsft.errors import DataError

AnswerCheck = Callable[[str, str], str | None]  # (answer, reference) -> None if right, else why not
QUESTION_FIELDS = ("question", "Question", "prompt", "instruction", "query", "problem", "input")
REFERENCE_FIELDS = ("answer", "Response", "reference", "output", "solution", "completion", "response")
DISTILLED_FILE = "distilled.jsonl"
DISTILL_REPORT_FILE = "distill_report.json"
DISTILL_CACHE_FILE = "distill_cache.jsonl"
# Every file `dsft data distill` writes into --out (the cache only where no data.distill.cache names another).
DISTILL_FILES = (DISTILLED_FILE, "removed.jsonl", "rejects.jsonl", DISTILL_REPORT_FILE, DISTILL_CACHE_FILE)


@dataclass
class Question:
    """What the teacher is asked (``messages``), the reference answer if any, and where it was read."""

    messages: list[dict[str, str]]
    reference: str | None
    where: str
    meta: dict[str, Any] = field(default_factory=dict)


def question_from_record(data: Any) -> tuple[list[dict[str, str]], str | None] | str:
    """(prompt messages, reference) of a record, or why it has no question.

    Messages records ask everything up to the last user turn and take the final assistant turn, if any,
    as the reference; other records take the first of the question fields and reference fields
    (alpaca's ``instruction`` + ``input`` are joined).

    >>> question_from_record({"question": "1+1?", "answer": "2"})
    ([{'role': 'user', 'content': '1+1?'}], '2')
    >>> question_from_record({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]})
    ([{'role': 'user', 'content': 'Hi'}], 'Yo')
    >>> question_from_record({"text": "no question here"})
    'no question field (one of messages, question, Question, prompt, instruction, query, problem, input)'
    """
    if not isinstance(data, dict):
        return f"a record must be an object, got {type(data).__name__}"
    if isinstance(data.get("messages"), list):
        messages = [m for m in data["messages"] if isinstance(m, dict)]
        users = [i for i, m in enumerate(messages) if m.get("role") == "user" and isinstance(m.get("content"), str)]
        if not users or not messages[users[-1]]["content"].strip():
            return "messages: no user turn with text"
        prompt = [{"role": m["role"], "content": m["content"]} for m in messages[:users[-1] + 1]
                  if m.get("role") in ("system", "user", "assistant") and isinstance(m.get("content"), str)]
        after = messages[users[-1] + 1:]
        reference = after[-1].get("content") if after and after[-1].get("role") == "assistant" else None
        return prompt, reference if isinstance(reference, str) and reference.strip() else None
    name = next((f for f in QUESTION_FIELDS if isinstance(data.get(f), str) and data[f].strip()), None)
    if name is None:
        return f"no question field (one of messages, {', '.join(QUESTION_FIELDS)})"
    text = data[name]
    if name == "instruction" and isinstance(data.get("input"), str) and data["input"].strip():
        text = f"{text}\n\n{data['input']}"
    reference = next((data[f] for f in REFERENCE_FIELDS if isinstance(data.get(f), str) and data[f].strip()
                      and f != name), None)
    return [{"role": "user", "content": text}], reference


def read_questions(inputs: list[str]) -> tuple[list[Question], list[Rejection]]:
    """Every record of ``inputs`` as a question, or a rejection naming file:line and why."""
    questions, rejections = [], []
    for raw in read_records(inputs):
        parsed = question_from_record(raw.data) if raw.error is None else raw.error
        if isinstance(parsed, str):
            rejections.append(Rejection(raw.where, [parsed], raw.data, raw=raw.raw, raw_cut=raw.raw_cut))
            continue
        meta = {k: v for k, v in raw.data.items() if isinstance(v, (str, int, float, bool)) and k not in
                (*QUESTION_FIELDS, *REFERENCE_FIELDS)}
        questions.append(Question(parsed[0], parsed[1], raw.where, meta))
    return questions, rejections


@dataclass
class Outcome:
    """What became of one question: the record (answered), or the removal step and every sample's reason."""

    record: Conversation | None = None
    step: str | None = None
    reasons: list[str] = field(default_factory=list)


def _sample_record(question: Question, completion: Completion, settings: DistillConfig) -> tuple[Conversation, str | None]:
    """The record a completion makes, and why it is unusable (None when usable)."""
    reasoning, answer = completion.reasoning, completion.content
    if reasoning is None and "</think>" in answer and "<think>" not in answer:
        # R1 prompts open the think block themselves; a server without a reasoning parser returns the rest.
        reasoning, _, answer = answer.partition("</think>")
    elif reasoning is None:
        reasoning, answer = split_inline_think(answer)
    answer = answer.strip()
    messages = [Message(m["role"], m["content"]) for m in question.messages]  # type: ignore[arg-type]
    record = Conversation([*messages, Message("assistant", answer, reasoning.strip() if reasoning is not None else None)])
    problems = validate_conversation(record)
    if problems:
        return record, problems[0].split(": ", 1)[-1]
    if settings.require_reasoning and reasoning is None:
        return record, "no reasoning (require_reasoning is on)"
    return record, None


def distill_one(question: Question, client: ChatClient, settings: DistillConfig, check: AnswerCheck | None) -> Outcome:
    """Up to ``settings.samples`` answers; the first usable and right one is kept (see the module doc)."""
    has_system = bool(question.messages) and question.messages[0]["role"] == "system"
    prompt = ([{"role": "system", "content": settings.system}] if settings.system and not has_system else [])
    prompt += question.messages  # a question's own system prompt wins over data.distill.system
    outcome = Outcome(step="unusable_output")
    for sample in range(settings.samples):
        try:
            completion = client.complete(prompt, sample=sample)
        except RequestFailed as failure:
            return Outcome(step="request_failed", reasons=[*outcome.reasons, f"sample {sample}: {failure}"])
        record, problem = _sample_record(question, completion, settings)
        if problem is None and check is not None and question.reference is not None:
            problem = check(record.messages[-1].content, question.reference)
            if problem is not None:
                outcome.step = "wrong_answer"
        if problem is None:
            record.meta = {**question.meta, "origin": question.where, "distill_model": client.settings.model,
                           "distill_sample": sample, "verified": check is not None and question.reference is not None}
            return Outcome(record=record)
        outcome.reasons.append(f"sample {sample}: {problem}")
    return outcome


def check_distill_request(cfg_distill: DistillConfig, inputs: list[str], out_dir: str | Path,
                          overwrite: bool = False) -> None:
    """Refuse what :func:`distill_files` would refuse before it reads a question: no endpoint, an ``out_dir`` it may
    not write, an input that is not there. ``dsft data distill`` calls it before it warns of the files an input
    directory holds that are not read, so a refusal comes alone."""
    if not cfg_distill.endpoint.configured():
        raise DataError("data.distill.endpoint: set base_url and model "
                        "(--set data.distill.endpoint.base_url=http://... --set data.distill.endpoint.model=NAME)")
    out = Path(out_dir)
    check_fresh_output_dir(out, overwrite, rerun_markers=(DISTILL_REPORT_FILE, DISTILL_CACHE_FILE))
    check_outputs_spare_inputs(inputs, out, DISTILL_FILES, f"--out {out}")
    expand_inputs(inputs)  # each named input is there (a glob matches a file)


def distill_files(cfg_distill: DistillConfig, inputs: list[str], out_dir: str | Path,
                  check: AnswerCheck | None, overwrite: bool = False) -> dict[str, Any]:
    """``dsft data distill``: answer every question of ``inputs``; write ``distilled.jsonl``,
    ``removed.jsonl``, ``rejects.jsonl`` and ``distill_report.json`` (the ledger). Returns the report.

    ``out_dir`` follows the output-directory rule (:func:`dsft.disk.check_fresh_output_dir`): an earlier
    distill output (its report or response cache) is rewritten, which is how an interrupted run resumes;
    another non-empty directory only with ``overwrite``; never over one of the inputs."""
    check_distill_request(cfg_distill, inputs, out_dir, overwrite)
    endpoint, out = cfg_distill.endpoint, Path(out_dir)
    questions, rejections = read_questions(inputs)
    out.mkdir(parents=True, exist_ok=True)  # once the inputs are read: a missing one leaves no directory
    params = {k: v for k, v in (("temperature", endpoint.temperature), ("max_tokens", endpoint.max_tokens)) if v is not None}
    cache = ResponseCache(Path(cfg_distill.cache) if cfg_distill.cache else out / DISTILL_CACHE_FILE)
    cached_before = len(cache)
    client = ChatClient(EndpointSettings(
        endpoint.base_url or "", endpoint.model or "", endpoint.api_key_env, endpoint.concurrency,
        endpoint.requests_per_minute, endpoint.max_retries, endpoint.timeout, endpoint.backoff, params), cache)
    started = time.perf_counter()
    try:
        if questions:
            client.check_reachable()
        outcomes = client.complete_many([lambda q=q: distill_one(q, client, cfg_distill, check) for q in questions])
    finally:
        client.close()
    seconds = time.perf_counter() - started
    kept = [o.record for o in outcomes if o.record is not None]
    removed: dict[str, list[Removed]] = {"wrong_answer": [], "unusable_output": [], "request_failed": []}
    for question, outcome in zip(questions, outcomes):
        if outcome.record is None:
            stub = Conversation([Message(m["role"], m["content"]) for m in question.messages],  # type: ignore[arg-type]
                                meta={**question.meta, "origin": question.where})
            removed[outcome.step or "unusable_output"].append(Removed(stub, "; ".join(outcome.reasons)))
    report = _report(questions, rejections, kept, removed, client.stats, cached_before, seconds, inputs, cfg_distill)
    write_jsonl(kept, out / DISTILLED_FILE)
    write_removed(removed, out / "removed.jsonl")
    write_rejections(rejections, out / "rejects.jsonl")
    (out / DISTILL_REPORT_FILE).write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    failed = removed["request_failed"]
    if questions and len(failed) == len(questions):
        raise DataError(f"no question answered: every request failed (first: {failed[0].reason}); check the "
                        f"endpoint, the model name and the key in ${endpoint.api_key_env}. Ledger in "
                        f"{out / DISTILL_REPORT_FILE}; rerunning resumes")
    return report


def _report(
    questions: Sequence[Question], rejections: Sequence[Rejection], kept: Sequence[Conversation],
    removed: dict[str, list[Removed]], stats: dict[str, int], cached_before: int, seconds: float,
    inputs: list[str], settings: DistillConfig,
) -> dict[str, Any]:
    read = len(questions) + len(rejections)
    counts = {step: len(items) for step, items in removed.items()}
    # Every question read is answered (kept), unreadable (rejected) or removed with its reason.
    assert read == len(kept) + len(rejections) + sum(counts.values()), (read, len(kept), counts)
    reasons = Counter(r.reason.split("; ")[-1].split(": ", 1)[-1] for items in removed.values() for r in items)
    return {
        "read": read, "added": {}, "kept": len(kept), "rejected": len(rejections), "removed": counts,
        "verified": sum(bool(c.meta.get("verified")) for c in kept),
        "last_reasons": dict(reasons.most_common(20)),
        "rejected_examples": [f"{r.where}: {'; '.join(r.reasons)}" for r in rejections[:10]],
        "rejected_reasons": rejected_reasons(rejections),
        "requests": stats["requests"], "retries": stats["retries"], "from_cache": stats["cached"],
        "cache_entries_before": cached_before, "seconds": round(seconds, 2),
        "questions_per_second": round(len(questions) / seconds, 2) if seconds else None,
        "inputs": inputs, "distill_config": settings.model_dump(mode="json"),
    }
