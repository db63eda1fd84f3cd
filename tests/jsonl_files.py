"""Reading and writing JSONL files (data samples, ``metrics.jsonl``, predictions) in tests of every directory.

A module of its own, imported by name: test files never import from a ``conftest``, since pytest puts every
test directory's ``conftest.py`` on ``sys.path`` under that same name and the one found depends on the order
directories were given in.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The JSON records of ``path``, one per non-blank line."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_reservoir_chats(path: Path, count: int = 8) -> Path:
    """``count`` one-turn conversations ("Which reservoir is R{i}?") written to ``path``; returns ``path``."""
    rows = [{"messages": [{"role": "user", "content": f"Which reservoir is R{i}?"},
                          {"role": "assistant", "content": f"R{i} is on river {i % 5}."}]} for i in range(count)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path
