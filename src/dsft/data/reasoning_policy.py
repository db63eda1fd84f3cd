"""Reasoning policy (keep / drop / mix think and no-think samples) and reasoning statistics.

``keep`` leaves chain of thought as read; ``drop`` removes it from every assistant turn (the model
learns to answer directly); ``mix`` keeps it on a seeded ``think_ratio`` share of the samples that carry
it and drops it from the rest, so a hybrid model sees both modes. No sample is removed by the policy.

>>> from dsft.data.conversation import Conversation, Message
>>> rows = [Conversation([Message("user", "q"), Message("assistant", "a", reasoning="r")]) for _ in range(4)]
>>> sum(has_reasoning(c) for c in apply_reasoning_policy(rows, "mix", think_ratio=0.5, seed=0))
2
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from dsft.data.conversation import Conversation
from dsft.errors import DataError

POLICIES = ("keep", "drop", "mix")


def has_reasoning(conversation: Conversation) -> bool:
    return any(m.role == "assistant" and m.reasoning for m in conversation.messages)


def without_reasoning(conversation: Conversation) -> Conversation:
    """A copy whose assistant turns carry no reasoning."""
    messages = [replace(m, reasoning=None) if m.role == "assistant" else m for m in conversation.messages]
    return replace(conversation, messages=messages, meta=dict(conversation.meta))


def apply_reasoning_policy(
    conversations: Sequence[Conversation], policy: str, think_ratio: float = 0.75, seed: int = 0
) -> list[Conversation]:
    """The conversations under ``policy`` (same length and order as the input)."""
    if policy not in POLICIES:
        raise DataError(f"data.reasoning: unknown policy {policy!r}; use one of {', '.join(POLICIES)}")
    if policy == "keep":
        return list(conversations)
    if policy == "drop":
        return [without_reasoning(c) if has_reasoning(c) else c for c in conversations]
    thinking = [i for i, c in enumerate(conversations) if has_reasoning(c)]
    keep = set(random.Random(seed).sample(thinking, round(len(thinking) * think_ratio)))
    return [
        without_reasoning(c) if (i not in keep and has_reasoning(c)) else c for i, c in enumerate(conversations)
    ]


def length_stats(values: Sequence[int]) -> dict[str, Any]:
    """count, mean, p50, p90 and max of a list of token counts (zeros when empty).

    >>> length_stats([1, 2, 3, 4])
    {'count': 4, 'mean': 2.5, 'p50': 2.5, 'p90': 3.7, 'max': 4}
    """
    if not values:
        return {"count": 0, "mean": 0.0, "p50": 0.0, "p90": 0.0, "max": 0}
    array = np.asarray(values, dtype=np.float64)
    return {
        "count": int(array.size),
        "mean": round(float(array.mean()), 2),
        "p50": round(float(np.percentile(array, 50)), 2),
        "p90": round(float(np.percentile(array, 90)), 2),
        "max": int(array.max()),
    }


def reasoning_stats(conversations: Sequence[Conversation], reasoning_tokens: Sequence[int]) -> dict[str, Any]:
    """How many samples carry reasoning and the token-length statistics of their reasoning."""
    assert len(conversations) == len(reasoning_tokens)
    lengths = [n for c, n in zip(conversations, reasoning_tokens) if has_reasoning(c)]
    total = len(conversations)
    return {
        "samples": total,
        "with_reasoning": len(lengths),
        "without_reasoning": total - len(lengths),
        "share_with_reasoning": round(len(lengths) / total, 4) if total else 0.0,
        "reasoning_tokens": length_stats(lengths),
    }
