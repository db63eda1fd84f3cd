"""The pipeline's steps from the split on: deal the train pool into train/val/test (``data.val``/``data.test``
files take the place of a ratio), then grow or trim the train split (augmentation, class balancing,
``data.mix`` sources at their ratios), check train against val/test for contamination and apply the
reasoning policy to every split. Each step books what it added or removed in the :class:`Ledger`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from dsft.config.schema import DsftConfig
from dsft.data import augment, clean, mix, near_dedup, relevance
from dsft.data.conversation import Conversation
from dsft.data.ledger import Ledger
from dsft.data.reasoning_policy import apply_reasoning_policy
from dsft.data.split import EVAL_SPLITS, SPLITS, split_conversations, with_families
from dsft.data.tokens import TokenCounts, count_tokens


def split_pools(pools: dict[str, list[Conversation]], sources: dict[str, list[str]],
                cfg: DsftConfig) -> dict[str, list[Conversation]]:
    """Deal the train pool into train/val/test (seeded, stratified, near-duplicate clusters and generated families
    on one side); a split whose files are named (``data.val``, ``data.test``) gets no ratio, its pool instead."""
    data = cfg.data
    val_ratio = 0.0 if sources["val"] else data.val_ratio
    test_ratio = 0.0 if sources["test"] else data.test_ratio
    pool = pools["train"]
    groups = None
    # With near-dedup on, no two survivors are near-duplicates (same threshold), so grouping again would only
    # repeat the MinHash work; except copies that train different turns (loss flags), which dedup keeps.
    copies_kept = data.clean.near_dedup and any(m.loss is not None for c in pool for m in c.messages)
    if data.group_near_duplicates and (not data.clean.near_dedup or copies_kept) and (val_ratio or test_ratio) and pool:
        texts = [near_dedup.similarity_text(c) for c in pool]
        groups = near_dedup.near_duplicate_groups(texts, data.clean.near_dedup_threshold)
    groups = with_families(pool, groups)  # a table row's phrasings (and any generated family) stay together
    splits = split_conversations(pool, val_ratio, test_ratio, cfg.train.seed, data.stratify_by, groups)
    for name in EVAL_SPLITS:
        splits[name] = pools[name] + splits[name]
    return splits


def augment_train(
    splits: dict[str, list[Conversation]], tokens: TokenCounts, tokenizer: Any, cfg: DsftConfig, ledger: Ledger, out: Path,
) -> list[Conversation]:
    """Children of train records (never of val/test), checked against every split for near copies."""
    settings = cfg.data.augment
    train = splits["train"]
    if not (settings.synonym_copies or settings.paraphrase_copies or settings.back_translation) or not train:
        return train
    everything = [c for name in SPLITS for c in splits[name]]
    made = augment.augment_records(train, everything, settings, cfg.train.seed, out)
    for method, count in made.added.items():
        ledger.added[f"augment_{method}"] = count
    ledger.removed[augment.NEAR_DUPLICATE_STEP] = made.removed
    ledger.augment_skipped.update(made.skipped)
    for conversation, counted in zip(made.kept, count_tokens(made.kept, tokenizer, cfg.data.num_proc)):
        tokens[id(conversation)] = (conversation, counted)
    return train + made.kept


def balance_train(
    train: list[Conversation], cfg: DsftConfig, ledger: Ledger, warn: Callable[[str], None],
) -> list[Conversation]:
    """The train split balanced by ``data.clean.balance_by`` (under- or oversampled)."""
    settings = cfg.data.clean
    if not settings.balance_by or not train:
        return train
    result, added = clean.balance_classes(train, settings.balance_by, settings.balance_mode, cfg.train.seed)
    note = clean.missing_class_note(train, result, added, settings.balance_by, settings.balance_mode)
    if note:  # the report counts them among the class's removals; the log says they were records without the field
        warn(note)
    alike = clean.look_alike_class_note(train, result, added, settings.balance_by, settings.balance_mode)
    if alike:  # one mistyped label ('Intermediate') is a class of its own, and undersampling cuts every class to it
        warn(alike)
    kept = ledger.record("balance", result)
    if settings.balance_mode == "over":
        ledger.added["balance_oversample"] = len(added)
    return kept + added


def mix_into_train(
    train: list[Conversation], mixed: dict[int, list[Conversation]], cfg: DsftConfig, ledger: Ledger,
) -> tuple[list[Conversation], list[dict[str, Any]]]:
    """The train split with each ``data.mix`` source drawn in at its ratio, and what was drawn from each."""
    sources = cfg.data.mix
    counts = mix.mix_counts(len(train), [source.ratio for source in sources])
    added: list[Conversation] = []
    summary = []
    for position, (source, count) in enumerate(zip(sources, counts)):
        available = mixed.get(position, [])
        part = mix.draw_records(available, count, f"{cfg.train.seed}:{position}", source.path)
        ledger.removed.setdefault(mix.SAMPLE_STEP, []).extend(part.removed)
        if part.repeats:
            ledger.added[mix.REPEAT_STEP] = ledger.added.get(mix.REPEAT_STEP, 0) + part.repeats
        for conversation in available:
            conversation.meta.pop(mix.MIX_SOURCE_KEY, None)  # the tag served its purpose; origin names the file
        added += part.drawn
        summary.append({"path": source.path, "ratio": source.ratio, "available": len(available), "drawn": len(part.drawn),
                        "repeats": part.repeats})
    if sources and not ledger.removed.get(mix.SAMPLE_STEP):
        ledger.removed.pop(mix.SAMPLE_STEP, None)
    return train + added, summary


def check_contamination(splits: dict[str, list[Conversation]], cfg: DsftConfig, ledger: Ledger) -> dict[str, Any] | None:
    """What of val/test the train split holds (n-gram overlap), dropped from train under ``drop_contaminated``;
    None when there is nothing to compare."""
    evaluation = splits["val"] + splits["test"]
    if not evaluation or not splits["train"]:
        return None
    settings = cfg.data.clean
    found = relevance.check_contamination(splits["train"], evaluation, settings.contamination_ngram)
    if settings.drop_contaminated:
        splits["train"] = ledger.record("contamination", relevance.drop_contaminated(splits["train"], found))
    return {**found.as_dict(), "dropped": settings.drop_contaminated}


def apply_reasoning(splits: dict[str, list[Conversation]], tokens: TokenCounts,
                    cfg: DsftConfig) -> dict[str, list[Conversation]]:
    """``data.reasoning`` applied to every split (seeded per split); token counts follow the records it changes."""
    out: dict[str, list[Conversation]] = {}
    for offset, name in enumerate(SPLITS):
        before = splits[name]
        after = apply_reasoning_policy(before, cfg.data.reasoning, cfg.data.think_ratio, cfg.train.seed + offset)
        for old, new in zip(before, after):
            if new is not old:
                tokens[id(new)] = (new, tokens[id(old)][1].without_reasoning())
        out[name] = after
    return out
