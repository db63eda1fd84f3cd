"""Small datasets shipped with dsft for the demo and tests.

>>> sample_path("reservoirs").name
'reservoirs.jsonl'
"""

from __future__ import annotations

from pathlib import Path

from dsft.errors import DataError

SAMPLES = {"reservoirs": "reservoirs.jsonl"}


def sample_path(name: str) -> Path:
    """Path of a shipped sample dataset (JSONL in OpenAI messages form)."""
    if name not in SAMPLES:
        raise DataError(f"unknown sample dataset {name!r}; available: {', '.join(SAMPLES)}")
    return Path(__file__).resolve().parent / SAMPLES[name]
