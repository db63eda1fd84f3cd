"""Answer bodies of the OpenAI-compatible API, whole and streamed (chunk dicts for SSE).

Reasoning is split from content with the reasoning parser of :mod:`dsft.templates.reasoning` (vLLM's
deepseek_r1 semantics): ``message.reasoning_content`` and ``message.reasoning`` hold the chain of
thought, ``content`` the answer; streamed deltas carry the same fields.

Tool calls: an answer that ends in a whole calls block in the family's format
(:mod:`dsft.templates.tool_call_parsing`) is returned as ``message.tool_calls`` with ``finish_reason:
"tool_calls"``, the text before the block as ``content`` (null when empty). A stream sends content as it
comes until the block's opener appears, holds the rest back (and any tail that could begin the opener),
and at the end sends the calls as one delta (``index`` per call), or the held text as content when it was
not a whole block.

Logprobs (:mod:`dsft.serve.logprobs`), when asked for: a whole answer carries one entry per generated token; a
streamed chunk carries those of the tokens generated since the chunk before it (text held back, say a possible
stop string, leaves its tokens' entries waiting for the chunk that sends it, so each entry is sent once, in order).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from dsft.serve.engine import RequestStream
from dsft.serve.generation import RowResult
from dsft.serve.logprobs import TokenLogprob, chat_logprobs, completion_logprobs
from dsft.serve.protocol import new_id, now, reasoning_fields, usage_body
from dsft.templates.reasoning import StreamingReasoningSplitter
from dsft.templates.tool_call_parsing import ToolCallReader
from dsft.templates.reasoning import split_reasoning as split_reasoning_text  # the flag below is split_reasoning


@dataclass(frozen=True)
class ReplyFormat:
    """How to read a chat reply: split reasoning off, and read tool calls with ``tools`` (None: never)."""

    split_reasoning: bool
    tools: ToolCallReader | None = None


def _message(content: str | None, reasoning: str | None, tools: ToolCallReader | None) -> tuple[dict[str, Any], bool]:
    """The assistant message of a whole reply, and whether it calls tools."""
    calls: list[dict[str, Any]] = []
    if tools is not None and content:
        content, calls = tools.parse(content)
    message: dict[str, Any] = {"role": "assistant", "content": (content or None) if calls else content,
                               **reasoning_fields(reasoning)}
    if calls:
        message["tool_calls"] = calls
    return message, bool(calls)


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


def chat_completion(result: RowResult, model: str, prompt_tokens: int, reply: ReplyFormat) -> dict[str, Any]:
    """A whole ``chat.completion`` object."""
    reasoning, content = _split(result.text, reply.split_reasoning)
    message, calls = _message(content, reasoning, reply.tools)
    finish = "tool_calls" if calls else result.finish_reason
    return {
        "id": new_id("chatcmpl"), "object": "chat.completion", "created": now(), "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish,
                     "logprobs": chat_logprobs(result.logprobs) if result.logprobs is not None else None}],
        "usage": usage_body(prompt_tokens, result.completion_tokens),
    }


def completion(result: RowResult, model: str, prompt_tokens: int) -> dict[str, Any]:
    """A whole ``text_completion`` object."""
    return {
        "id": new_id("cmpl"), "object": "text_completion", "created": now(), "model": model,
        "choices": [{"index": 0, "text": result.text, "finish_reason": result.finish_reason,
                     "logprobs": completion_logprobs(result.logprobs) if result.logprobs is not None else None}],
        "usage": usage_body(prompt_tokens, result.completion_tokens),
    }


def generate_answer(result: RowResult, prompt_tokens: int, split_reasoning: bool) -> dict[str, Any]:
    """``POST /generate``: the answer text (reasoning apart), why it ended, and token counts."""
    reasoning, content = _split(result.text, split_reasoning)
    return {"text": content or "", "reasoning": reasoning, "finish_reason": result.finish_reason,
            "usage": usage_body(prompt_tokens, result.completion_tokens)}


def _chunk(base: dict[str, Any], choice: dict[str, Any] | None, usage: dict[str, int] | None = None) -> dict[str, Any]:
    return {**base, "choices": [choice] if choice is not None else [], "usage": usage}


class _CallsHoldBack:
    """Content deltas with everything from a calls block's opener on held back until the reply ends."""

    def __init__(self, reader: ToolCallReader) -> None:
        self.reader = reader
        self.sent = ""  # content already streamed
        self.held = ""  # content not yet streamed: a possible opener, or a block

    def feed(self, content: str) -> str:
        """The part of ``content`` that can be streamed now."""
        self.held += content
        start = self.held.find(self.reader.opener)
        if start >= 0:
            out, self.held = self.held[:start], self.held[start:]
        else:
            keep = next((k for k in range(min(len(self.reader.opener) - 1, len(self.held)), 0, -1)
                         if self.reader.opener.startswith(self.held[-k:])), 0)
            out, self.held = self.held[:len(self.held) - keep], self.held[len(self.held) - keep:]
        self.sent += out
        return out

    def finish(self) -> tuple[str, list[dict[str, Any]]]:
        """``(content still to send, calls)`` once the reply has ended."""
        if not self.held:
            return "", []
        content, calls = self.reader.parse(self.sent + self.held)
        if not calls:
            return self.held, []
        return content[len(self.sent):] if content.startswith(self.sent) else "", calls


async def chat_stream(
    stream: RequestStream, model: str, prompt_tokens: int, reply: ReplyFormat, include_usage: bool
) -> AsyncIterator[dict[str, Any]]:
    """``chat.completion.chunk`` dicts: the role first, then reasoning/content deltas, then the finish."""
    base = {"id": new_id("chatcmpl"), "object": "chat.completion.chunk", "created": now(), "model": model}
    splitter = StreamingReasoningSplitter() if reply.split_reasoning else None
    hold = _CallsHoldBack(reply.tools) if reply.tools is not None else None
    yield _chunk(base, {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None})
    waiting: list[TokenLogprob] | None = None  # entries not yet sent (None: the request asked for none)
    async for piece, result, logprob in stream:
        if logprob is not None:
            waiting = [*(waiting or []), logprob]
        reasoning, content = splitter.feed(piece) if splitter else (None, piece)
        if result is not None and splitter is not None:
            tail_reasoning, tail_content = splitter.finish()
            reasoning, content = (reasoning or "") + (tail_reasoning or ""), (content or "") + (tail_content or "")
        calls: list[dict[str, Any]] = []
        if hold is not None:
            content = hold.feed(content or "")
            if result is not None:
                rest, calls = hold.finish()
                content += rest
        delta: dict[str, Any] = {}
        if reasoning:
            delta.update(reasoning_fields(reasoning))
        if content:
            delta["content"] = content
        if calls:
            delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(calls)]
        finish = ("tool_calls" if calls else result.finish_reason) if result is not None else None
        if delta or finish is not None:
            logprobs = chat_logprobs(waiting) if waiting is not None else None
            waiting = [] if waiting is not None else None
            yield _chunk(base, {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": logprobs})
        if result is not None and include_usage:
            yield _chunk(base, None, usage_body(prompt_tokens, result.completion_tokens))


async def completion_stream(
    stream: RequestStream, model: str, prompt_tokens: int, include_usage: bool
) -> AsyncIterator[dict[str, Any]]:
    """``text_completion`` chunks, one per text piece, the last with the finish reason."""
    base = {"id": new_id("cmpl"), "object": "text_completion", "created": now(), "model": model}
    waiting: list[TokenLogprob] | None = None  # entries not yet sent (None: the request asked for none)
    async for piece, result, logprob in stream:
        if logprob is not None:
            waiting = [*(waiting or []), logprob]
        finish = result.finish_reason if result is not None else None
        if piece or finish is not None:
            logprobs = completion_logprobs(waiting) if waiting is not None else None
            waiting = [] if waiting is not None else None
            yield _chunk(base, {"index": 0, "text": piece, "finish_reason": finish, "logprobs": logprobs})
        if result is not None and include_usage:
            yield _chunk(base, None, usage_body(prompt_tokens, result.completion_tokens))
