"""Split determinism, stratification, near-duplicates on one side; reasoning policy and statistics."""

import random

from dsft.data.conversation import Conversation, Message
from dsft.data.near_dedup import near_duplicate_groups, similarity_text
from dsft.data.reasoning_policy import apply_reasoning_policy, has_reasoning, length_stats, reasoning_stats
from dsft.data.split import split_conversations


def conv(i: int, **meta: object) -> Conversation:
    return Conversation([Message("user", f"question number {i}"), Message("assistant", f"answer {i}")], meta=dict(meta))


def names(parts: dict) -> dict:
    return {k: [c.messages[0].content for c in v] for k, v in parts.items()}


def test_split_is_deterministic_order_independent_and_seed_dependent() -> None:
    rows = [conv(i) for i in range(100)]
    first = names(split_conversations(rows, 0.1, 0.2, seed=7))
    assert {k: len(v) for k, v in first.items()} == {"train": 70, "val": 10, "test": 20}
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    again = names(split_conversations(shuffled, 0.1, 0.2, seed=7))
    assert {k: sorted(v) for k, v in again.items()} == {k: sorted(v) for k, v in first.items()}
    other = names(split_conversations(rows, 0.1, 0.2, seed=8))
    assert sorted(other["val"]) != sorted(first["val"])
    assert sorted(sum(first.values(), [])) == sorted(c.messages[0].content for c in rows)


def test_stratified_split_keeps_proportions() -> None:
    rows = [conv(i, domain="a" if i % 4 else "b") for i in range(200)]  # 150 a, 50 b
    parts = split_conversations(rows, 0.2, 0.0, seed=0, stratify_by="domain")
    val_domains = [c.meta["domain"] for c in parts["val"]]
    assert val_domains.count("a") == 30 and val_domains.count("b") == 10


def test_near_duplicates_never_straddle_the_split() -> None:
    rng = random.Random(0)
    rows = []
    for cluster in range(30):
        base = " ".join("".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(6)) for _ in range(20))
        for copy in range(3):  # three near-identical variants per cluster
            text = base + ("" if copy == 0 else f" v{copy}")
            rows.append(Conversation([Message("user", text), Message("assistant", "same answer")], meta={"cluster": cluster}))
    groups = near_duplicate_groups([similarity_text(c) for c in rows], 0.8)
    assert len(set(groups)) == 30
    parts = split_conversations(rows, 0.2, 0.1, seed=5, groups=groups)
    side = {}
    for name, part in parts.items():
        for c in part:
            side.setdefault(c.meta["cluster"], set()).add(name)
    assert all(len(s) == 1 for s in side.values())
    assert len(parts["val"]) == 18 and len(parts["test"]) == 9


def thinking(i: int) -> Conversation:
    return Conversation([Message("user", f"q{i}"), Message("assistant", f"a{i}", reasoning="r " * (i + 1))])


def test_reasoning_policies() -> None:
    rows = [thinking(i) for i in range(8)] + [conv(99)]
    assert apply_reasoning_policy(rows, "keep") == rows
    assert not any(has_reasoning(c) for c in apply_reasoning_policy(rows, "drop"))
    mixed = apply_reasoning_policy(rows, "mix", think_ratio=0.75, seed=1)
    assert sum(has_reasoning(c) for c in mixed) == 6 and len(mixed) == 9
    assert mixed == apply_reasoning_policy(rows, "mix", think_ratio=0.75, seed=1)
    assert [c.messages[1].content for c in mixed] == [c.messages[1].content for c in rows]  # answers untouched
    assert rows[0].messages[1].reasoning is not None  # input not mutated


def test_reasoning_stats() -> None:
    rows = [thinking(i) for i in range(4)] + [conv(1)]
    stats = reasoning_stats(rows, [2, 4, 6, 8, 0])
    assert stats["with_reasoning"] == 4 and stats["without_reasoning"] == 1 and stats["share_with_reasoning"] == 0.8
    assert stats["reasoning_tokens"] == {"count": 4, "mean": 5.0, "p50": 5.0, "p90": 7.4, "max": 8}
    assert length_stats([]) == {"count": 0, "mean": 0.0, "p50": 0.0, "p90": 0.0, "max": 0}
