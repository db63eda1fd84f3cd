"""Token counts per message, with the model's own tokenizer, batched and multiprocess for big inputs.

Counts are of the message texts (content and reasoning) tokenized without special tokens; the chat
template adds a handful of marker tokens per turn on top (templates are a later layer, so length
filters here work on text tokens: leave that margin when choosing ``max_tokens``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dsft.data.conversation import Conversation

_TOKENIZE_BATCH = 2000  # texts per tokenizer call
_MULTIPROCESS_MIN_TEXTS = 10_000  # below this, worker start-up costs more than it saves


@dataclass(frozen=True)
class ConversationTokens:
    """Tokens of each message: ``(role, content tokens, reasoning tokens)`` in message order."""

    messages: tuple[tuple[str, int, int], ...]

    @property
    def total(self) -> int:
        return sum(content + reasoning for _, content, reasoning in self.messages)

    @property
    def reasoning(self) -> int:
        return sum(reasoning for _, _, reasoning in self.messages)

    def by_role(self) -> dict[str, int]:
        """Tokens per role (content + reasoning), e.g. ``{"user": 12, "assistant": 40}``."""
        totals: dict[str, int] = {}
        for role, content, reasoning in self.messages:
            totals[role] = totals.get(role, 0) + content + reasoning
        return totals

    def without_reasoning(self) -> "ConversationTokens":
        return ConversationTokens(tuple((role, content, 0) for role, content, _ in self.messages))


TokenCounts = dict[int, tuple[Conversation, ConversationTokens]]  # id(conversation) -> (it, kept alive; its counts)


def resolve_num_proc(num_proc: int | None, tokenizer: Any) -> int:
    """Worker processes for tokenization.

    Unset: 1 for fast (Rust) tokenizers, whose batch encoding already runs on every core and measured
    faster in one process than split over datasets workers (100k texts on 2 cores: 16 s vs 18 s); the
    CPU count for slow (Python) tokenizers. Set: that many ``datasets.map`` processes.
    """
    if num_proc is not None:
        return max(1, num_proc)
    return 1 if getattr(tokenizer, "is_fast", False) else max(1, os.cpu_count() or 1)


def count_tokens(
    conversations: Sequence[Conversation], tokenizer: Any, num_proc: int | None = None
) -> list[ConversationTokens]:
    """Token counts for every conversation (aligned with the input order)."""
    texts: list[str] = []
    for conversation in conversations:
        for message in conversation.messages:
            texts += [message.content, message.reasoning or ""]
    lengths = token_lengths(texts, tokenizer, num_proc)
    counts: list[ConversationTokens] = []
    position = 0
    for conversation in conversations:
        per_message = []
        for message in conversation.messages:
            per_message.append((message.role, lengths[position], lengths[position + 1]))
            position += 2
        counts.append(ConversationTokens(tuple(per_message)))
    return counts


def token_lengths(texts: list[str], tokenizer: Any, num_proc: int | None = None) -> list[int]:
    """Number of tokens of each text (no special tokens); empty texts are 0 without tokenizing."""
    wanted = [index for index, text in enumerate(texts) if text]
    lengths = [0] * len(texts)
    if not wanted:
        return lengths
    to_tokenize = [texts[index] for index in wanted]
    processes = resolve_num_proc(num_proc, tokenizer)
    if processes > 1 and len(to_tokenize) >= _MULTIPROCESS_MIN_TEXTS:
        counted = _lengths_multiprocess(to_tokenize, tokenizer, processes)
    else:
        counted = _lengths_in_process(to_tokenize, tokenizer)
    for index, length in zip(wanted, counted):
        lengths[index] = length
    return lengths


def _lengths_in_process(texts: list[str], tokenizer: Any) -> list[int]:
    lengths: list[int] = []
    for start in range(0, len(texts), _TOKENIZE_BATCH):
        encoded = tokenizer(texts[start:start + _TOKENIZE_BATCH], add_special_tokens=False, return_attention_mask=False)
        lengths += [len(ids) for ids in encoded["input_ids"]]
    return lengths


class _LengthsOf:
    """Picklable batch function for ``datasets.map`` (a closure would be re-hashed for every call)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def __call__(self, batch: dict[str, list[str]]) -> dict[str, list[int]]:
        encoded = self.tokenizer(batch["text"], add_special_tokens=False, return_attention_mask=False)
        return {"length": [len(ids) for ids in encoded["input_ids"]]}


def _lengths_multiprocess(texts: list[str], tokenizer: Any, processes: int) -> list[int]:
    """datasets' multiprocess map over an in-memory Arrow table (no cache files left behind)."""
    import datasets

    progress_was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        table = datasets.Dataset.from_dict({"text": texts})
        counted = table.map(
            _LengthsOf(tokenizer), batched=True, batch_size=_TOKENIZE_BATCH, num_proc=processes,
            remove_columns=["text"], keep_in_memory=True, new_fingerprint="dsft-token-lengths",
        )
        return list(counted["length"])
    finally:
        if progress_was_enabled:
            datasets.enable_progress_bars()
