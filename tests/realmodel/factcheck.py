"""Asking a model the fact samples' questions and scoring the answers (shared by the real-model tests)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from dsft.data.conversation import Conversation, Message
from dsft.eval.generate import DecodingOptions, generate_batched
from dsft.templates import get_template


def prompts_for(records: Sequence[dict[str, Any]], tokenizer: Any) -> list[str]:
    """Inference prompts (the model's own chat template) for each record's user question."""
    template = get_template("hf", tokenizer)
    return [template.render_prompt(Conversation([Message("user", r["messages"][0]["content"])])) for r in records]


def ask(model: Any, tokenizer: Any, records: Sequence[dict[str, Any]], max_new_tokens: int = 32) -> list[str]:
    """Greedy answers of ``model`` to each record's question."""
    generations, _ = generate_batched(model, tokenizer, prompts_for(records, tokenizer),
                                      DecodingOptions(max_new_tokens=max_new_tokens, batch_size=8), progress=False)
    return [g.text.strip() for g in generations]


def holds(answer: str, expected: str) -> bool:
    """Whether ``answer`` holds one of the ``|``-separated expected strings (case-insensitive, whole words
    for Latin text)."""
    for option in expected.split("|"):
        pattern = re.escape(option) if not option.isascii() else rf"(?<![A-Za-z0-9]){re.escape(option)}(?![A-Za-z0-9])"
        if re.search(pattern, answer, flags=re.IGNORECASE):
            return True
    return False


def score(answers: Sequence[str], records: Sequence[dict[str, Any]]) -> float:
    """Fraction of answers holding their record's ``expected`` string (the date, or a general keyword)."""
    return sum(holds(a, r["expected"]) for a, r in zip(answers, records, strict=True)) / len(records)
