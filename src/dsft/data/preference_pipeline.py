"""Preparing preference / RL data: read -> validate -> deduplicate -> split -> report, every record accounted.

The same accounting as SFT data (:mod:`dsft.data.pipeline`): every record read is kept, rejected (with
``file:line`` and every reason, in ``rejects.jsonl``) or removed by one step (``removed.jsonl``), and
``read == kept + rejected + removed`` is asserted before anything is written. Splits are seeded and
content-ordered exactly like SFT splits, by the same function
(:func:`dsft.data.split_steps.split_pools`: near-duplicate clusters on one side).

The report adds what matters for preference data: how many sides carry reasoning, and how many pairs have
reasoning on one side only (a pair that differs in *whether* it reasons teaches "reason" / "don't reason"
as much as it teaches the answer; dsft renders both sides in the same think format either way).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsft.config.schema import DsftConfig
from dsft.data.clean import TEXT_REWRITES, rewrite_steps, source_of
from dsft.data.control_tokens import control_token_pattern
from dsft.data.empty_splits import check_splits_left
from dsft.data.ingest import Rejection, fail_on_rejections, write_rejections
from dsft.data.ledger import Ledger
from dsft.data.preference import (
    OBJECTIVE_KINDS, PreferenceRecord, control_token_problems_of, is_pair, parse_preference, split_pair_for_kto,
)
from dsft.data.preference_dedup import Group, as_conversation, deduplicate, removal, same_sides
from dsft.data.preference_fields import PreferenceProblem
from dsft.data.prepared_folder import mark_preparing, read_prepared_folder, write_report_json
from dsft.data.raw_record import RawRecord
from dsft.data.readers import read_records
from dsft.data.report import write_rows
from dsft.data.split import SPLITS, split_file
from dsft.data.split_steps import split_pools
from dsft.data.validate import is_blank
from dsft.errors import DataError


@dataclass
class PreparedPreference:
    """Prepared preference splits (``train``/``val``/``test``) and the report."""

    kind: str
    splits: dict[str, list[PreferenceRecord]]
    report: dict[str, Any]
    out_dir: Path | None = None


def parse_raw(raw: RawRecord, kind: str, columns: dict[str, str] | None = None) -> list[PreferenceRecord] | Rejection:
    """One raw record -> its preference records (a pair read as KTO data gives two), or a rejection."""
    if raw.error is not None:
        return Rejection(raw.where, [raw.error], raw=raw.raw, raw_cut=raw.raw_cut)
    try:
        if kind == "labeled" and is_pair(raw.data, columns):
            records = split_pair_for_kto(raw.data, columns)
        else:
            records = [parse_preference(raw.data, kind, columns)]  # type: ignore[arg-type]
    except PreferenceProblem as exc:
        return Rejection(raw.where, exc.problems, raw.data)  # each problem a reason, as SFT data's
    for record in records:
        record.meta["origin"] = raw.where
    return records


def prepare_preference(
    cfg: DsftConfig, out_dir: str | Path, objective: str, tokenizer: Any = None,
) -> PreparedPreference:
    """Read, validate, clean, deduplicate and split ``cfg.data`` for ``objective`` (dpo, orpo, kto, grpo); write the
    results.

    Text is cleaned as SFT data is: the same rewrites (``data.clean.strip_html``, ``normalize_unicode``;
    :func:`dsft.data.clean.rewrite_steps`) and, given the ``tokenizer`` of the model, the same rejection of control
    tokens written as text (:mod:`dsft.data.control_tokens`).

    Writes ``train.jsonl``/``val.jsonl``/``test.jsonl`` (the canonical form, readable again as input),
    ``rejects.jsonl``, ``removed.jsonl`` (each removed record in that form, :func:`dsft.data.preference_dedup.as_read`)
    and ``data_report.json`` into ``out_dir``.
    """
    started = time.perf_counter()
    kind = OBJECTIVE_KINDS[objective]
    data = cfg.data
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mark_preparing(out)  # before any other file is written into out
    sources = {"train": list(data.train), "val": list(data.val), "test": list(data.test)}
    if not sources["train"]:
        raise DataError("no training data: set data.train")
    ledger = Ledger()
    pools = {name: _read(name, sources[name], kind, cfg, ledger) for name in SPLITS}
    pools = {name: _rewrite(pool, cfg, ledger) for name, pool in pools.items()}
    pools = {name: _reject_control_tokens(name, pool, tokenizer, ledger) for name, pool in pools.items()}  # after NFKC
    fail_on_rejections(ledger.rejections, data.on_error, out)
    pools = deduplicate(pools, ledger, exact=data.clean.exact_dedup)
    grouped = _split(pools, sources, cfg)
    # The accounting identity, in records read (a pair read as KTO data is one record read, two kept).
    ledger.check_identity(kept=sum(len(part) for part in grouped.values()))
    splits = {name: [r for group in part for r in group] for name, part in grouped.items()}
    kept = sum(len(part) for part in splits.values())
    report = {
        "objective": objective, "kind": kind, "read": ledger.read, "kept": kept,
        "rejected": len(ledger.rejections), "removed": ledger.removed_counts(),
        "splits": {name: len(part) for name, part in splits.items()},
        "inputs": sources, "forms": dict(ledger.formats),
        "rejected_examples": ledger.rejected_examples(), "rejected_reasons": ledger.rejected_reasons(),
        "reasoning": reasoning_report(splits["train"]),
        "seed": cfg.train.seed,
        "data_config": data.model_dump(mode="json"),
    }
    for name in SPLITS:
        write_rows((r.to_dict() for r in splits[name]), out / split_file(name))
    write_rejections(ledger.rejections, out / "rejects.jsonl")
    # Each removed record as the step saw it, in its own form; ASCII as SFT's removed.jsonl (undecodable text survives)
    write_rows(({"step": step, "where": source_of(item.conversation), "reason": item.reason, "record": item.record}
                for step, items in ledger.removed.items() for item in items), out / "removed.jsonl", ensure_ascii=True)
    report["seconds"] = round(time.perf_counter() - started, 2)
    write_report_json(out, report)
    check_splits_left(report, sources, ledger, out, f"{kind} records")
    return PreparedPreference(kind, splits, report, out)


def load_prepared_preference(directory: str | Path, objective: str) -> PreparedPreference:
    """Read a directory written by :func:`prepare_preference` back (its files are ordinary input)."""
    kind = OBJECTIVE_KINDS[objective]

    def read_split(file: Path) -> list[PreferenceRecord]:
        records: list[PreferenceRecord] = []
        for raw in read_records([str(file)]):
            parsed = parse_raw(raw, kind)
            if isinstance(parsed, Rejection):
                raise DataError(f"{parsed.where}: not a prepared {kind} record ({'; '.join(parsed.reasons)})",
                                job_wide=True)
            records += parsed
        return records

    splits, report = read_prepared_folder(directory, read_split)
    return PreparedPreference(kind, splits, report, Path(directory))


def reasoning_report(records: list[PreferenceRecord]) -> dict[str, Any]:
    """Sides carrying reasoning, and pairs whose sides disagree on reasoning.

    >>> from dsft.data.conversation import Message as M
    >>> pair = PreferenceRecord("pair", [M("user", "q")], chosen=M("assistant", "a", reasoning="r"),
    ...                         rejected=M("assistant", "b"))
    >>> reasoning_report([pair])  # doctest: +NORMALIZE_WHITESPACE
    {'chosen_with_reasoning': 1, 'rejected_with_reasoning': 0, 'completion_with_reasoning': 0,
     'pairs_reasoning_on_one_side': 1}
    """
    counts = {f"{side}_with_reasoning": 0 for side in ("chosen", "rejected", "completion")}
    one_sided = 0
    for record in records:
        for side in ("chosen", "rejected", "completion"):
            message = getattr(record, side)
            if message is not None and message.reasoning:
                counts[f"{side}_with_reasoning"] += 1
        if record.chosen is not None and record.rejected is not None:
            one_sided += bool(record.chosen.reasoning) != bool(record.rejected.reasoning)
    return {**counts, "pairs_reasoning_on_one_side": one_sided}


def _read(split: str, patterns: list[str], kind: str, cfg: DsftConfig, ledger: Ledger) -> list[Group]:
    """``split``'s files read and parsed, every record and rejection booked (for the split too)."""
    if not patterns:
        return []
    out: list[Group] = []
    for raw in read_records(patterns):
        ledger.read += 1
        ledger.read_by_split[split] += 1
        parsed = parse_raw(raw, kind, cfg.data.columns)
        if isinstance(parsed, Rejection):
            ledger.rejections.append(parsed)
            ledger.rejected_by_split.setdefault(split, []).append(parsed)
            continue
        ledger.formats["pair" if is_pair(raw.data, cfg.data.columns) else kind] += 1
        out.append(parsed)
    return out


def _rewrite(pool: list[Group], cfg: DsftConfig, ledger: Ledger) -> list[Group]:
    """The SFT text rewrites on every prompt, completion and GRPO reference; a record one of them empties is removed,
    as SFT's is, and so is a pair whose two sides it makes identical (read as DPO/ORPO or as KTO data)."""
    for step, function in rewrite_steps(cfg.data.clean.strip_html, cfg.data.clean.normalize_unicode):
        kept: list[Group] = []
        for group in pool:
            texts = [record.texts() for record in group]
            result = function(texts)
            if result.removed:
                first = result.removed[0]
                record = group[next(i for i, text in enumerate(texts) if text is first.conversation)]
                ledger.remove(step, removal(group, record.named(first.reason)))
                continue
            rewritten = [record.with_texts(cleaned) for record, cleaned in zip(group, result.kept)]
            emptied = _rewrite_references(rewritten, step)
            if emptied is not None:
                ledger.remove(step, removal(group, emptied))
                continue
            same = same_sides(rewritten, after=step)
            if same:
                ledger.remove(step, removal(group, same))
                continue
            kept.append(rewritten)
        pool = kept
    return pool


def _rewrite_references(records: list[PreferenceRecord], step: str) -> str | None:
    """``step``'s text rewrite on each record's references (``answer``, ``solution``), as on its prompt: a reward
    compares them with completions of a model trained on cleaned text, and ``dsft eval`` cleans its references so
    too. Replaces each record's references; returns the reason to remove the group when one is emptied."""
    transform, what = TEXT_REWRITES[step]
    for record in records:
        cleaned = {name: transform(value) for name, value in record.references.items()}
        for name, value in record.references.items():
            if not is_blank(value) and is_blank(cleaned[name]):
                return f"{name} empty after {what}"
        record.references = cleaned
    return None


def _reject_control_tokens(split: str, pool: list[Group], tokenizer: Any, ledger: Ledger) -> list[Group]:
    """Records holding a control token of ``tokenizer`` written as text, rejected as SFT data's are (no tokenizer:
    left to the run, which drops them when it renders)."""
    pattern = control_token_pattern(tokenizer) if tokenizer is not None else None
    if pattern is None:
        return pool
    kept: list[Group] = []
    for group in pool:
        problems = list(dict.fromkeys(p for record in group for p in control_token_problems_of(record, pattern)))
        if problems:
            rejection = Rejection(str(group[0].meta.get("origin", "?")), problems, group[0].to_dict())
            ledger.rejections.append(rejection)
            ledger.rejected_by_split.setdefault(split, []).append(rejection)
        else:
            kept.append(group)
    return kept


def _split(pools: dict[str, list[Group]], sources: dict[str, list[str]], cfg: DsftConfig) -> dict[str, list[Group]]:
    """The pools dealt as SFT data's are (:func:`dsft.data.split_steps.split_pools`: seeded, content-ordered,
    optionally stratified by a meta field, near-duplicate clusters on one side, named val/test files in place of a
    ratio), each group by one conversation standing for it (:func:`as_conversation`)."""
    stand_ins = {name: [as_conversation(group) for group in pools[name]] for name in SPLITS}
    owner = {id(c): group for name in SPLITS for c, group in zip(stand_ins[name], pools[name])}
    return {name: [owner[id(c)] for c in part] for name, part in split_pools(stand_ins, sources, cfg).items()}
