"""Tiny preference pairs (chosen and rejected answers to sums) the DPO, ORPO and KTO tests train on."""

from __future__ import annotations

import json
from pathlib import Path


def pair_rows(n: int = 4) -> list[dict]:
    rows = []
    for i in range(n):
        rows.append({
            "messages": [{"role": "user", "content": f"What is {i} + {i}?"}],
            "chosen": [{"role": "assistant", "content": f"It is {2 * i}.", "reasoning_content": f"{i} + {i} = {2 * i}"}],
            # Every other rejected side has no reasoning: both sides still render in the same think format.
            "rejected": [{"role": "assistant", "content": f"It is {2 * i + 1}.",
                          **({"reasoning_content": "a guess"} if i % 2 else {})}],
        })
    return rows


def write_pairs(path: Path, n: int = 4) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in pair_rows(n)), encoding="utf-8")
    return path
