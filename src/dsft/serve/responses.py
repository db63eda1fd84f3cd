"""Answer bodies of the OpenAI-compatible API, whole and streamed (chunk dicts for SSE).

Reasoning is split from content with the reasoning parser of :mod:`dsft.templates.reasoning` (vLLM's
deepseek_r1 semantics): ``message.reasoning_content`` and ``message.reasoning`` hold the chain of
thought, ``content`` the answer; streamed deltas carry the same fields.
"""

from __future__ import annotations

from typing import Any, AsyncIterator

from dsft.serve.engine import RequestStream
from dsft.serve.generation import RowResult
from dsft.serve.protocol import new_id, now, reasoning_fields, usage_body
from dsft.templates.reasoning import StreamingReasoningSplitter
from dsft.templates.reasoning import split_reasoning as split_reasoning_text  # the flag below is split_reasoning


def _split(text: str, split_reasoning: bool) -> tuple[str | None, str | None]:
    if not split_reasoning:
        return None, text
    return split_reasoning_text(text)


def model_list(served_name: str, adapters: list[str]) -> dict[str, Any]:
    """``GET /v1/models``: the served model, then each adapter (with the served model as parent)."""
    created = now()
    entries = [{"id": served_name, "object": "model", "created": created, "owned_by": "dsft", "parent": None}]
    entries += [{"id": name, "object": "model", "created": created, "owned_by": "dsft", "parent": served_name}
                for name in adapters]
    return {"object": "list", "data": entries}


def chat_completion(result: RowResult, model: str, prompt_tokens: int, split_reasoning: bool) -> dict[str, Any]:
    """A whole ``chat.completion`` object."""
    reasoning, content = _split(result.text, split_reasoning)
    message = {"role": "assistant", "content": content, **reasoning_fields(reasoning)}
    return {
        "id": new_id("chatcmpl"), "object": "chat.completion", "created": now(), "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": result.finish_reason, "logprobs": None}],
        "usage": usage_body(prompt_tokens, result.completion_tokens),
    }


def completion(result: RowResult, model: str, prompt_tokens: int) -> dict[str, Any]:
    """A whole ``text_completion`` object."""
    return {
        "id": new_id("cmpl"), "object": "text_completion", "created": now(), "model": model,
        "choices": [{"index": 0, "text": result.text, "finish_reason": result.finish_reason, "logprobs": None}],
        "usage": usage_body(prompt_tokens, result.completion_tokens),
    }


def generate_answer(result: RowResult, prompt_tokens: int, split_reasoning: bool) -> dict[str, Any]:
    """``POST /generate``: the answer text (reasoning apart), why it ended, and token counts."""
    reasoning, content = _split(result.text, split_reasoning)
    return {"text": content or "", "reasoning": reasoning, "finish_reason": result.finish_reason,
            "usage": usage_body(prompt_tokens, result.completion_tokens)}


def _chunk(base: dict[str, Any], choice: dict[str, Any] | None, usage: dict[str, int] | None = None) -> dict[str, Any]:
    return {**base, "choices": [choice] if choice is not None else [], "usage": usage}


async def chat_stream(
    stream: RequestStream, model: str, prompt_tokens: int, split_reasoning: bool, include_usage: bool
) -> AsyncIterator[dict[str, Any]]:
    """``chat.completion.chunk`` dicts: the role first, then reasoning/content deltas, then the finish."""
    base = {"id": new_id("chatcmpl"), "object": "chat.completion.chunk", "created": now(), "model": model}
    splitter = StreamingReasoningSplitter() if split_reasoning else None
    yield _chunk(base, {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None})
    async for piece, result in stream:
        reasoning, content = splitter.feed(piece) if splitter else (None, piece)
        if result is not None and splitter is not None:
            tail_reasoning, tail_content = splitter.finish()
            reasoning, content = (reasoning or "") + (tail_reasoning or ""), (content or "") + (tail_content or "")
        delta: dict[str, Any] = {}
        if reasoning:
            delta.update(reasoning_fields(reasoning))
        if content:
            delta["content"] = content
        finish = result.finish_reason if result is not None else None
        if delta or finish is not None:
            yield _chunk(base, {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None})
        if result is not None and include_usage:
            yield _chunk(base, None, usage_body(prompt_tokens, result.completion_tokens))


async def completion_stream(
    stream: RequestStream, model: str, prompt_tokens: int, include_usage: bool
) -> AsyncIterator[dict[str, Any]]:
    """``text_completion`` chunks, one per text piece, the last with the finish reason."""
    base = {"id": new_id("cmpl"), "object": "text_completion", "created": now(), "model": model}
    async for piece, result in stream:
        finish = result.finish_reason if result is not None else None
        if piece or finish is not None:
            yield _chunk(base, {"index": 0, "text": piece, "finish_reason": finish, "logprobs": None})
        if result is not None and include_usage:
            yield _chunk(base, None, usage_body(prompt_tokens, result.completion_tokens))
