"""The pipeline's steps before the split, over the ``train``/``val``/``test`` pools (records from the train
inputs, ``data.val`` and ``data.test``): read and account for every input, remove what the masking trains
nothing of, rewrite text, reject control tokens, deduplicate (evaluation pools first), count tokens, filter
by length, relevance and semantic scores. Each step books what it rejected or removed in the :class:`Ledger`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dsft.config.schema import DsftConfig
from dsft.data import clean, mix, near_dedup, relevance, semantic
from dsft.data.control_tokens import reject_control_tokens
from dsft.data.conversation import Conversation
from dsft.data.ingest import fail_on_rejections, ingest
from dsft.data.ledger import Ledger
from dsft.data.split import EVAL_SPLITS, SPLITS
from dsft.data.tokens import TokenCounts, count_tokens
from dsft.data.validate import nothing_trained


def read_pools(sources: dict[str, list[str]], cfg: DsftConfig, ledger: Ledger, out: Path) -> dict[str, list[Conversation]]:
    """Read, normalise and validate each split's files (``data.mix`` sources join the train pool, tagged with their
    position), booking every record read and rejected; under ``data.on_error: fail`` a rejection stops here."""
    pools: dict[str, list[Conversation]] = {}
    for name in SPLITS:
        if not sources[name]:
            pools[name] = []
            continue
        ingested = ingest(sources[name], cfg.data.format, cfg.data.columns)
        ledger.read += ingested.read
        ledger.rejections += ingested.rejections
        ledger.read_by_split[name] += ingested.read
        ledger.rejected_by_split[name] = ingested.rejections
        ledger.formats.update(ingested.formats)
        pools[name] = ingested.conversations
    for conversation in pools["train"]:
        conversation.meta.pop(mix.MIX_SOURCE_KEY, None)  # only data.mix entries below are mixed sources
    for position, source in enumerate(cfg.data.mix):
        ingested = ingest([source.path], cfg.data.format, cfg.data.columns)
        ledger.read += ingested.read
        ledger.rejections += ingested.rejections
        ledger.formats.update(ingested.formats)
        for conversation in ingested.conversations:
            conversation.meta[mix.MIX_SOURCE_KEY] = position
        pools["train"] += ingested.conversations
    fail_on_rejections(ledger.rejections, cfg.data.on_error, out)
    return pools


def remove_nothing_trained(pools: dict[str, list[Conversation]], cfg: DsftConfig, ledger: Ledger) -> dict[str, list[Conversation]]:
    """Remove records the configured masking trains nothing of (listed only under ``last``, the one it can remove
    for): training would drop them anyway, and the report's counts would be untrue."""
    if cfg.template.masking != "last":
        return pools
    for name in SPLITS:
        result = clean.StepResult([])
        for conversation in pools[name]:
            reason = nothing_trained(conversation, cfg.template.masking)
            if reason is None:
                result.kept.append(conversation)
            else:
                result.removed.append(clean.Removed(conversation, reason))
        pools[name] = ledger.record("nothing_trained", result)
    return pools


def rewrite_pools(pools: dict[str, list[Conversation]], cfg: DsftConfig, ledger: Ledger) -> dict[str, list[Conversation]]:
    """The configured text rewrites (HTML stripping, Unicode NFKC) over every pool."""
    for step, function in clean.rewrite_steps(cfg.data.clean.strip_html, cfg.data.clean.normalize_unicode):
        pools = {name: ledger.record(step, function(pool)) for name, pool in pools.items()}
    return pools


def reject_control_tokens_in_pools(pools: dict[str, list[Conversation]], tokenizer: Any, cfg: DsftConfig,
                                   ledger: Ledger, out: Path) -> dict[str, list[Conversation]]:
    """Reject records whose text holds a tokenizer control token (see :mod:`dsft.data.control_tokens`)."""
    found = []
    for name in SPLITS:
        pools[name], rejected = reject_control_tokens(pools[name], tokenizer)
        ledger.rejected_by_split.setdefault(name, []).extend(rejected)
        found += rejected
    ledger.rejections += found
    fail_on_rejections(ledger.rejections, cfg.data.on_error, out)
    return pools


def _across_pools(pools: dict[str, list[Conversation]], step: str, function: Any, ledger: Ledger) -> dict[str, list[Conversation]]:
    """Run a whole-dataset step over evaluation pools first, then train, and split the result back."""
    order = [*EVAL_SPLITS, "train"]
    owner = {id(c): name for name in order for c in pools[name]}
    kept = ledger.record(step, function([c for name in order for c in pools[name]]))
    out: dict[str, list[Conversation]] = {name: [] for name in SPLITS}
    for conversation in kept:
        out[owner[id(conversation)]].append(conversation)
    return out


def deduplicate_pools(pools: dict[str, list[Conversation]], cfg: DsftConfig, ledger: Ledger) -> dict[str, list[Conversation]]:
    """Exact, then near-duplicate removal across all pools, evaluation pools first (the train copy is the one removed)."""
    settings = cfg.data.clean
    if settings.exact_dedup:
        pools = _across_pools(pools, "exact_dedup", clean.exact_dedup, ledger)
    if settings.near_dedup:
        step = lambda items: near_dedup.near_dedup(items, settings.near_dedup_threshold)  # noqa: E731
        pools = _across_pools(pools, "near_dedup", step, ledger)
    return pools


def count_pool_tokens(pools: dict[str, list[Conversation]], tokenizer: Any, cfg: DsftConfig) -> TokenCounts:
    """Token counts of every record of every pool, with the model's tokenizer."""
    everything = [c for name in SPLITS for c in pools[name]]
    counts = count_tokens(everything, tokenizer, cfg.data.num_proc)
    return {id(c): (c, n) for c, n in zip(everything, counts)}


def filter_pools(pools: dict[str, list[Conversation]], tokens: TokenCounts, cfg: DsftConfig,
                 ledger: Ledger) -> dict[str, list[Conversation]]:
    """The token-length filters, then the TF-IDF relevance filter, over every pool."""
    settings = cfg.data.clean
    if settings.min_tokens is not None or settings.max_tokens is not None or settings.max_tokens_per_role:
        for name in SPLITS:
            result = clean.filter_by_length(
                pools[name], [tokens[id(c)][1] for c in pools[name]],
                settings.min_tokens, settings.max_tokens, settings.max_tokens_per_role,
            )
            pools[name] = ledger.record("length_filter", result)
    if settings.relevance_references and settings.relevance_min > 0:
        references = relevance.read_reference_texts(settings.relevance_references)
        for name in SPLITS:
            if pools[name]:
                result = relevance.filter_by_relevance(pools[name], references, settings.relevance_min)
                pools[name] = ledger.record("relevance", result)
    return pools


def score_pools(
    pools: dict[str, list[Conversation]], tokens: TokenCounts, steps: list[semantic.ScoreStep], ledger: Ledger,
) -> dict[str, list[Conversation]]:
    """Score every pool, record the score distribution (before any cut) and drop what fails the cut-offs."""
    for step in steps:
        everything: list[float | None] = []
        for name in SPLITS:
            if not pools[name]:
                continue
            scores = step.scorer(pools[name])
            everything += scores
            result = semantic.filter_by_score(pools[name], scores, step.name, step.minimum, step.maximum, step.keep_top,
                                              step.higher_is_better)
            # Kept conversations are copies carrying their score in meta; they share the messages list.
            counted = {id(c.messages): tokens[id(c)][1] for c in pools[name]}
            for conversation in result.kept:
                tokens[id(conversation)] = (conversation, counted[id(conversation.messages)])
            pools[name] = ledger.record(step.name, result)
        ledger.scores[step.name] = semantic.score_distribution(everything)
    return pools
