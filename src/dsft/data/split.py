"""Train/val/test split: seeded, optionally stratified, near-duplicate clusters kept on one side.

The split depends only on the records' content and the seed, not on the order they were read in:
groups are ordered by a content hash before the seeded shuffle. Within each stratum, whole groups are
dealt to test, then val, until each reaches its share (rounded) of the stratum; the rest is train.

>>> from dsft.data.conversation import Conversation, Message
>>> rows = [Conversation([Message("user", f"q{i}"), Message("assistant", f"a{i}")]) for i in range(10)]
>>> parts = split_conversations(rows, val_ratio=0.2, test_ratio=0.1, seed=0)
>>> {name: len(part) for name, part in parts.items()}
{'train': 7, 'val': 2, 'test': 1}
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from pathlib import Path

from dsft.config.schema import DsftConfig
from dsft.data.clean import MISSING_CLASS, class_of, dedup_key
from dsft.data.conversation import Conversation

SPLITS = ("train", "val", "test")
EVAL_SPLITS = ("test", "val")  # the order whole-dataset steps see them in, before train
# The meta keys dsft writes itself, no field of the records: where a record was read (dsft.data.ingest), its scores
# (dsft.data.semantic), what generated it (dsft.data.augment), the data.mix source it came from (dsft.data.mix).
BOOKKEEPING_META = frozenset({"origin", "scores", "augment_method", "augment_parent", "augment_family", "mix_source"})


def split_file(split: str) -> str:
    """The name of the file a prepared folder holds ``split`` in, SFT and preference data alike: what a preparation
    writes and every reader of a prepared folder opens.

    >>> [split_file(split) for split in SPLITS]
    ['train.jsonl', 'val.jsonl', 'test.jsonl']
    """
    return f"{split}.jsonl"


def may_have_validation_data(cfg: DsftConfig) -> bool:
    """Whether the run will (or may) have a validation split: explicit files, a ratio, or a prepared val file."""
    if cfg.data.prepared_dir:
        val = Path(cfg.data.prepared_dir) / split_file("val")
        return val.is_file() and val.stat().st_size > 0
    return bool(cfg.data.val) or cfg.data.val_ratio > 0


def split_conversations(
    conversations: Sequence[Conversation],
    val_ratio: float,
    test_ratio: float,
    seed: int,
    stratify_by: str | None = None,
    groups: Sequence[int] | None = None,
) -> dict[str, list[Conversation]]:
    """Split into ``{"train", "val", "test"}``.

    ``groups`` (aligned with ``conversations``) gives each conversation a cluster id; members of one
    cluster always land in the same split (see :func:`dsft.data.near_dedup.near_duplicate_groups`).
    With ``stratify_by`` each value of that meta field is split in the same proportions.
    """
    group_ids = list(groups) if groups is not None else list(range(len(conversations)))
    assert len(group_ids) == len(conversations)
    members: dict[int, list[int]] = {}
    for index, group in enumerate(group_ids):
        members.setdefault(group, []).append(index)
    strata: dict[str, list[list[int]]] = {}
    for indices in members.values():
        label = class_of(conversations[indices[0]], stratify_by) if stratify_by else ""
        strata.setdefault(label, []).append(indices)
    assignment = [""] * len(conversations)
    for label in sorted(strata):
        for indices, split in _deal(strata[label], conversations, val_ratio, test_ratio, seed, label):
            for index in indices:
                assignment[index] = split
    parts: dict[str, list[Conversation]] = {name: [] for name in SPLITS}
    for conversation, split in zip(conversations, assignment):
        parts[split].append(conversation)  # input order is kept inside each split
    return parts


def missing_stratum_note(conversations: Sequence[Conversation], stratify_by: str | None) -> str | None:
    """What :func:`split_conversations` did with the records that lack ``stratify_by`` (split as one stratum,
    ``(missing)``): how many lack it, and, when none has it (a misspelt field), the meta fields they do have;
    None when every record has it.

    >>> from dsft.data.conversation import Message
    >>> rows = [Conversation([Message("user", "q"), Message("assistant", "a")], meta={"difficulty": "basic"})]
    >>> missing_stratum_note(rows, "difficuly")
    "data.stratify_by=difficuly: 1 of 1 records have no 'difficuly' and were split as one stratum '(missing)'; \
the records' meta fields are difficulty"

    What dsft notes itself (``origin``, where a record was read) is no field of the records:

    >>> missing_stratum_note([Conversation(rows[0].messages, meta={"origin": "qa.jsonl:1"})], "difficulty")[-31:]
    'the records have no meta fields'
    """
    if not stratify_by:
        return None
    lacking = sum(1 for conversation in conversations if conversation.meta.get(stratify_by) is None)
    if not lacking:
        return None
    note = (f"data.stratify_by={stratify_by}: {lacking} of {len(conversations)} records have no '{stratify_by}' "
            f"and were split as one stratum '{MISSING_CLASS}'")
    if lacking == len(conversations):
        fields = sorted({name for conversation in conversations for name in conversation.meta} - BOOKKEEPING_META)
        note += f"; the records' meta fields are {', '.join(fields)}" if fields else "; the records have no meta fields"
    return note


def unused_ratio_notes(cfg: DsftConfig) -> list[str]:
    """One line per ``data.val_ratio`` / ``data.test_ratio`` set (above 0, away from its default) beside the files
    that split takes instead (``data.val`` / ``data.test``), which the split then does not apply.

    >>> unused_ratio_notes(DsftConfig.model_validate({"data": {"val": ["val.jsonl"], "val_ratio": 0.2}}))
    ['data.val_ratio=0.2: not applied; data.val gives the validation records (val.jsonl), and no share of the train records is dealt to it (remove data.val to split val_ratio off the train records, or remove the key)']
    """
    data, notes = cfg.data, []
    for split, name in (("val", "validation"), ("test", "test")):
        ratio, default = getattr(data, f"{split}_ratio"), type(data).model_fields[f"{split}_ratio"].default
        files = getattr(data, split)
        if files and ratio and ratio != default:  # 0 asks for no share, as the files' split deals none
            notes.append(f"data.{split}_ratio={ratio}: not applied; data.{split} gives the {name} records "
                         f"({', '.join(map(str, files))}), and no share of the train records is dealt to it (remove "
                         f"data.{split} to split {split}_ratio off the train records, or remove the key)")
    return notes


def content_hash(conversation: Conversation) -> str:
    """A stable id of a conversation's normalised content (:func:`dsft.data.clean.dedup_key`)."""
    return hashlib.sha1(dedup_key(conversation).encode("utf-8", "surrogatepass")).hexdigest()


def family_key(text: str) -> str:
    """The family id of records generated from something that is not a record (a table row)."""
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


def family_of(conversation: Conversation) -> str:
    """A generated record's ``meta.augment_family`` (its parent's :func:`content_hash`), else its own hash.

    A parent and everything generated from it share this id, even after being written and read again.
    """
    family = conversation.meta.get("augment_family")
    if isinstance(family, str):
        return family
    return content_hash(conversation)


def with_families(conversations: Sequence[Conversation], groups: Sequence[int] | None) -> list[int] | None:
    """``groups`` (or one group per record) merged so that every family is in one group.

    None when no record was generated (nothing to merge).

    >>> from dsft.data.conversation import Conversation, Message
    >>> parent = Conversation([Message("user", "q"), Message("assistant", "a")])
    >>> child = Conversation([Message("user", "q?"), Message("assistant", "a")],
    ...                      meta={"augment_family": content_hash(parent)})
    >>> other = Conversation([Message("user", "x"), Message("assistant", "y")])
    >>> with_families([parent, other, child], None)
    [0, 1, 0]
    """
    if not any("augment_family" in c.meta for c in conversations):
        return list(groups) if groups is not None else None
    parent = list(groups) if groups is not None else list(range(len(conversations)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[str, int] = {}
    for index, conversation in enumerate(conversations):
        seen = first.setdefault(family_of(conversation), index)
        low, high = sorted((root(seen), root(index)))
        parent[high] = low
    return [root(i) for i in range(len(conversations))]


def _deal(
    groups: list[list[int]], conversations: Sequence[Conversation], val_ratio: float, test_ratio: float,
    seed: int, label: str,
) -> list[tuple[list[int], str]]:
    """Assign whole groups of one stratum to test, val, then train, in seeded order."""
    ordered = sorted(groups, key=lambda g: min(content_hash(conversations[i]) for i in g))
    random.Random(f"{seed}:{label}").shuffle(ordered)
    size = sum(len(g) for g in ordered)
    targets = {"test": round(size * test_ratio), "val": round(size * val_ratio)}
    filled = {"test": 0, "val": 0}
    out: list[tuple[list[int], str]] = []
    for group in ordered:
        split = "train"
        for name in ("test", "val"):
            # A group goes to an eval split only if it does not overshoot the target by more than half
            # its size: large near-duplicate clusters then stay in train instead of swamping val.
            if filled[name] < targets[name] and filled[name] + len(group) / 2 <= targets[name]:
                split = name
                filled[name] += len(group)
                break
        out.append((group, split))
    return out
