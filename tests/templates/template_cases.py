"""Conversations and helpers shared by the template tests."""

from __future__ import annotations

from typing import Any

from dsft.data.conversation import Conversation, Message

SYSTEM = "You are a helpful assistant."


def reference_conversation(assistant: Message | None = None) -> Conversation:
    """The reference example: system, user "Hi", assistant, user "What is 2+2?"."""
    return Conversation([
        Message("system", SYSTEM),
        Message("user", "Hi"),
        assistant or Message("assistant", "Hello!"),
        Message("user", "What is 2+2?"),
    ])


def supervised_spans(rendered: Any, tokenizer: Any) -> list[str]:
    """Decode each maximal run of supervised tokens (what the model is trained to write)."""
    spans: list[str] = []
    run: list[int] = []
    for token, sup in [*zip(rendered.input_ids, rendered.supervised), (None, False)]:
        if sup:
            run.append(token)
        elif run:
            spans.append(tokenizer.decode(run, skip_special_tokens=False, clean_up_tokenization_spaces=False))
            run = []
    return spans
