"""Small datasets shipped with dsft for the demo and tests.

>>> sample_path("reservoirs").name
'reservoirs.jsonl'
"""

from __future__ import annotations

from pathlib import Path

from dsft.errors import DataError

SAMPLES = {
    "reservoirs": "reservoirs.jsonl",
    # Closed-book facts about fictional reservoirs (make_reservoir_facts.py): trained, held-out paraphrases,
    # and general questions for measuring what fine-tuning keeps.
    "reservoir_facts": "reservoir_facts.jsonl",
    "reservoir_facts_paraphrased": "reservoir_facts_paraphrased.jsonl",
    "general_questions": "general_questions.jsonl",
}


def sample_path(name: str) -> Path:
    """Path of a shipped sample dataset (JSONL in OpenAI messages form)."""
    if name not in SAMPLES:
        raise DataError(f"unknown sample dataset {name!r}; available: {', '.join(SAMPLES)}")
    return Path(__file__).resolve().parent / SAMPLES[name]
