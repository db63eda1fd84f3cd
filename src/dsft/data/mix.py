"""``data.mix``: other data (general conversations, say) mixed into the train split at a stated share.

A mixed source is read and cleaned with the ``data.train`` inputs, but it never enters the val/test split
(evaluation measures the task) and it is drawn only after augmentation and balancing, so that each source
makes up its ``ratio`` of the final train split. The draw is seeded: the same seed, data and ratios give
the same records in the same order.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from dsft.data.clean import Removed
from dsft.data.conversation import Conversation

# meta key naming the data.mix entry a record was read from (its position in data.mix).
MIX_SOURCE_KEY = "mix_source"
SAMPLE_STEP = "mix_sample"  # removed: records of a mixed source beyond its share
REPEAT_STEP = "mix_repeat"  # added: repeats of a mixed source's records when it holds fewer than its share


def mix_counts(task_records: int, ratios: list[float]) -> list[int]:
    """Records each mixed source contributes so that it makes up its ratio of the train split.

    With ``T`` task records and ratios summing to ``R``, the split holds ``N = T / (1 - R)`` records
    and a source of ratio ``r`` contributes ``round(r * N)``.

    >>> mix_counts(80, [0.2])
    [20]
    >>> mix_counts(60, [0.25, 0.15])
    [25, 15]
    >>> mix_counts(0, [0.5])
    [0]
    """
    total = task_records / (1 - sum(ratios))
    return [round(ratio * total) for ratio in ratios]


@dataclass
class MixDraw:
    """What one mixed source gives the train split: the records drawn, those left out, the repeats added."""

    drawn: list[Conversation]
    removed: list[Removed] = field(default_factory=list)
    repeats: int = 0


def draw_records(records: list[Conversation], count: int, seed: Any, label: str) -> MixDraw:
    """``count`` records of ``records``, seeded by ``seed``: a sample without repeats when there are enough,
    else every record once per whole pass and a sample for the remainder. The drawn records keep their
    input order within each pass.

    >>> from dsft.data.conversation import Message
    >>> rows = [Conversation([Message("user", str(i)), Message("assistant", "a")]) for i in range(5)]
    >>> part = draw_records(rows, 2, seed=0, label="g.jsonl")
    >>> len(part.drawn), len(part.removed), part.repeats
    (2, 3, 0)
    >>> part = draw_records(rows, 12, seed=0, label="g.jsonl")
    >>> len(part.drawn), len(part.removed), part.repeats
    (12, 0, 7)
    """
    rng = random.Random(seed)
    passes, remainder = divmod(count, len(records)) if records else (0, 0)
    chosen = set(rng.sample(range(len(records)), remainder))
    drawn = [r for _ in range(passes) for r in records] + [r for i, r in enumerate(records) if i in chosen]
    if passes:
        return MixDraw(drawn, repeats=count - len(records))
    removed = [Removed(r, f"data.mix {label}: not drawn (its ratio takes {count} of {len(records)} records)")
               for i, r in enumerate(records) if i not in chosen]
    return MixDraw(drawn, removed)


def take_mixed(pool: list[Conversation]) -> tuple[list[Conversation], dict[int, list[Conversation]]]:
    """Split a train pool into the ``data.train`` records and the mixed records by ``data.mix`` position."""
    task: list[Conversation] = []
    mixed: dict[int, list[Conversation]] = {}
    for conversation in pool:
        source = conversation.meta.get(MIX_SOURCE_KEY)
        if source is None:
            task.append(conversation)
        else:
            mixed.setdefault(int(source), []).append(conversation)
    return task, mixed
