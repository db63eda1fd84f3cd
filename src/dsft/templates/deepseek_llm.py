"""DeepSeek-LLM chat renderer (DeepSeek-LLM 7B/67B chat, DeepSeek-MoE-16B chat, V2 / V2-Lite chat).

Official rendering: BOS; each system message as ``content\\n\\n`` where it stands; users as
``User: content\\n\\n``; assistants as ``Assistant: content`` + EOS; generation prompt ``Assistant:``
with no trailing space. So a trained target starts with a space: the prompt ends ``Assistant:`` and
the model writes `` answer`` + EOS. The family has no tool format; tool messages are rejected.
"""

from __future__ import annotations

from dsft.data.conversation import Conversation
from dsft.errors import UnsupportedError
from dsft.templates.base import Segment, split_think_content
from dsft.templates.deepseek_v3 import inline_reasoning
from dsft.templates.markers import BOS, EOS

LLM_SPECIAL_TOKENS = (BOS, EOS)


def render_deepseek_llm(
    conv: Conversation, trained: frozenset[int], add_generation_prompt: bool, thinking: bool | None = None
) -> list[Segment]:
    """DeepSeek-LLM family (``thinking`` ignored). A trained turn with reasoning writes it inline as
    ``<think>\\n…\\n</think>\\n\\n`` before the answer (the family has no reasoning format of its own)."""
    segments = [Segment(BOS)]
    for i, message in enumerate(conv.messages):
        if message.role == "system":
            segments.append(Segment(message.content + "\n\n", owner=i))
        elif message.role == "user":
            segments.append(Segment(f"User: {message.content}\n\n", owner=i))
        else:
            if message.tool_calls:
                raise UnsupportedError(
                    f"template 'deepseek-llm': message {i} has tool_calls, which this family has no format "
                    "for; use a V3/R1 model or put the call in the content"
                )
            if i in trained:
                reasoning, answer = split_think_content(message)
                segments.append(Segment("Assistant:", owner=i))
                segments.append(Segment(" " + inline_reasoning(reasoning, answer) + EOS, owner=i, target=True))
            else:
                segments.append(Segment(f"Assistant: {message.content}{EOS}", owner=i))
    if add_generation_prompt:
        segments.append(Segment("Assistant:"))
    return segments
