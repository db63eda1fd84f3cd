"""Data files for the dashboard tests (used by conftest.py's fixtures and by the tests themselves)."""

from __future__ import annotations

import json
from pathlib import Path


def write_data(path: Path, n: int = 24, flawed: bool = False) -> Path:
    """``n`` chat records; ``flawed`` adds a duplicate of the first and a conversation without an answer."""
    rows = [{"messages": [{"role": "user", "content": f"Reservoir R{i} was completed in which year?"},
                          {"role": "assistant", "content": f"R{i} was completed in {1950 + i}."}]} for i in range(n)]
    if flawed:
        rows += [rows[0], {"messages": [{"role": "user", "content": "a question nobody answered"}]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path
