"""``prepare``: inputs -> valid, cleaned, split conversations, with a report that accounts for every record.

Order of steps (each optional step is configured under ``data.clean``):

1. read + normalise + validate every input (train inputs, explicit val/test files) -> rejections; under
   ``template.masking: last``, records whose last assistant turn has ``loss: false`` (nothing to train) removed;
2. text rewrites per record: HTML stripping, Unicode NFKC + control characters;
3. exact and near-duplicate removal across all inputs, evaluation files first (so the train copy of a
   record that is also in val/test is the one removed);
4. tokenization (model tokenizer, multiprocess) -> token-length filters; TF-IDF relevance; semantic filters
   (embedding question-answer consistency, IFD scored by an injected model scorer);
5. split (seeded, stratified, near-duplicate clusters and generated families on one side) unless val/test
   files are given; records filled from tables (``data.augment.templates``) join the train inputs first;
   ``data.mix`` records are held out of the split;
6. augmentation of the train split (``data.augment``); class balancing of the train split; ``data.mix``
   sources drawn into the train split at their ratios (:mod:`dsft.data.mix`); contamination check of
   train against val/test;
7. reasoning policy on every split; statistics, histograms, files.

The identity ``read + sum(added) == kept + rejected + sum(removed)`` (``kept`` = the records in the splits)
is asserted before anything is written.

This module runs the steps in that order; the steps themselves live in
:mod:`dsft.data.pool_cleaning` (1-4), :mod:`dsft.data.split_steps` (5-7), :mod:`dsft.data.report` (statistics) and
:mod:`dsft.data.prepared_folder` (the files written, read back by ``load_prepared``). Inputs are checked before
any of it by :mod:`dsft.data.input_checks`; what an empty result means is said by :mod:`dsft.data.empty_splits`
(shared with preference data).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dsft.config.schema import DsftConfig
from dsft.data import augment, mix, semantic
from dsft.data.input_checks import split_named_train_files, training_sources
from dsft.data.control_tokens import end_marker_note, role_markers_note
from dsft.data.empty_splits import check_splits_left
from dsft.data.ledger import Ledger
from dsft.data.pool_cleaning import (
    count_pool_tokens, deduplicate_pools, filter_pools, read_pools, reject_control_tokens_in_pools,
    remove_nothing_trained, rewrite_pools, score_pools,
)
from dsft.data.prepared_folder import REPORT_FILE, Prepared, mark_preparing, write_prepared, write_report
from dsft.data.reasoning_policy import reasoning_stats
from dsft.data.report import build_report
from dsft.data.split import missing_stratum_note, unused_ratio_notes
from dsft.data.split_steps import (
    apply_reasoning, augment_train, balance_train, check_contamination, mix_into_train, split_pools,
)
from dsft.errors import DataError

log = logging.getLogger(__name__)


def prepare(
    cfg: DsftConfig, tokenizer: Any, out_dir: str | Path, inputs: list[str] | None = None,
    ifd_scorer: semantic.Scorer | None = None, tokenizer_source: str | None = None,
    warn: Callable[[str], None] | None = None, draw_histograms: bool = True,
) -> Prepared:
    """Run the whole data pipeline and write its outputs to ``out_dir``.

    ``inputs`` (files, directories, globs) replace ``cfg.data.train`` when given. ``ifd_scorer`` scores
    conversations with the model being fine-tuned (:class:`dsft.training.ifd.IfdScorer`); it is needed
    only when ``data.clean.semantic.ifd`` is on. ``warn`` says what the preparation warns of (default: logged);
    ``dsft train`` passes one that says it once for a launched job, whose every process prepares the same data,
    and ``draw_histograms=False`` on all but its main process (the report is the same; one process draws).
    Writes
    ``train.jsonl``/``val.jsonl``/``test.jsonl`` (OpenAI messages form), ``rejects.jsonl``,
    ``removed.jsonl``, ``data_report.json``, ``data_report.md`` and token-length histograms.
    """
    started = time.perf_counter()
    data = cfg.data
    sources = {"train": training_sources(cfg, inputs), "val": list(data.val), "test": list(data.test)}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mark_preparing(out)  # before any other file is written into out
    scorers = semantic.score_steps(cfg.data.clean.semantic, ifd_scorer)  # before reading: a missing model or package fails fast
    augment.check_synonym_sources(cfg.data.augment)
    templated = augment.template_records(cfg.data.augment)  # a bad table fails before the inputs are read
    ledger = Ledger()
    clock = _Stopwatch()
    for note in split_named_train_files(cfg, inputs):  # val.jsonl given as a training input
        (warn or log.warning)(note)
    pools = clock("read_validate", read_pools, sources, cfg, ledger, out)
    if templated:
        pools["train"] += templated
        ledger.added["augment_template"] = len(templated)
    pools = clock("nothing_trained", remove_nothing_trained, pools, cfg, ledger)
    pools = clock("rewrite", rewrite_pools, pools, cfg, ledger)
    # Control tokens after NFKC, which defuses some.
    pools = clock("control_tokens", reject_control_tokens_in_pools, pools, tokenizer, cfg, ledger, out)
    if note := role_markers_note([c for pool in pools.values() for c in pool]):  # '<|user|>' in a text record
        (warn or log.warning)(note)
    if note := end_marker_note([c for pool in pools.values() for c in pool], tokenizer):  # '…<|endoftext|>' answers
        (warn or log.warning)(note)
    pools = clock("dedup", deduplicate_pools, pools, cfg, ledger)
    tokens = clock("tokenize", count_pool_tokens, pools, tokenizer, cfg)
    pools = clock("filter", filter_pools, pools, tokens, cfg, ledger)
    pools = clock("semantic", score_pools, pools, tokens, scorers, ledger)
    pools["train"], mixed = mix.take_mixed(pools["train"])  # data.mix records skip the split and augmentation
    dealt = (cfg.data.val_ratio and not sources["val"]) or (cfg.data.test_ratio and not sources["test"])
    if dealt and (note := missing_stratum_note(pools["train"], cfg.data.stratify_by)):  # a misspelt field, say
        (warn or log.warning)(note)
    for note in unused_ratio_notes(cfg):  # data.val_ratio beside data.val files
        (warn or log.warning)(note)
    splits = clock("split", split_pools, pools, sources, cfg)
    splits["train"] = clock("augment", augment_train, splits, tokens, tokenizer, cfg, ledger, out)
    splits["train"] = clock("balance", balance_train, splits["train"], cfg, ledger, warn or log.warning)
    splits["train"], mixing = clock("mix", mix_into_train, splits["train"], mixed, cfg, ledger)
    contamination = clock("contamination", check_contamination, splits, cfg, ledger)
    before_policy = reasoning_stats(splits["train"], [tokens[id(c)][1].reasoning for c in splits["train"]])
    splits = clock("reasoning_policy", apply_reasoning, splits, tokens, cfg)
    report = clock("report", build_report, sources, splits, tokens, ledger, contamination, before_policy, cfg, out,
                   draw_histograms)
    report["prepared_for"]["tokenizer"] = tokenizer_source  # None: the model's own
    report["semantic"] = ledger.scores
    report["mix"] = mixing
    clock("write", write_prepared, out, splits, ledger)
    report["seconds"] = round(time.perf_counter() - started, 2)
    report["step_seconds"] = clock.seconds
    write_report(out, report)
    empty = [m["path"] for m in mixing if not m["available"]]
    if empty:  # after the report and rejects are written: they say why
        raise DataError(f"data.mix: {', '.join(empty)}: no records left to mix in after reading and cleaning "
                        f"(see {out / REPORT_FILE} and {out / 'rejects.jsonl'})", job_wide=True)
    check_splits_left(report, sources, ledger, out)
    return Prepared(splits, report, out)


class _Stopwatch:
    """Wall time per pipeline stage (seconds), reported as ``step_seconds``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str, function: Any, *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args)
        finally:
            self.seconds[name] = round(time.perf_counter() - started, 3)
