"""Request bodies of the OpenAI-compatible API (pydantic) and the JSON answers built from results.

Only the fields dsft acts on are declared; unknown fields are ignored, as vLLM does, so clients that
send ``user``, ``presence_penalty`` and the like still work.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dsft.serve.openai_errors import ApiError


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


class SamplingFields(_Request):
    """Sampling fields shared by every generation endpoint."""

    model: str | None = Field(None, description="Served model name or the name of an adapter given at start.")
    max_tokens: int | None = Field(None, ge=1, description="Most tokens to generate.")
    temperature: float | None = Field(None, ge=0.0, le=2.0, description="0 = greedy.")
    top_p: float | None = Field(None, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    stop: str | list[str] | None = Field(None, description="Up to 4 strings that end generation (not returned).")
    seed: int | None = Field(None, description="Makes sampling repeatable.")
    n: int = Field(1, description="Number of choices; only 1 is supported.")

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value: str | list[str] | None) -> list[str] | None:
        stops = [value] if isinstance(value, str) else value
        if stops is not None and (len(stops) > 4 or any(not s for s in stops)):
            raise ValueError("at most 4 non-empty stop strings")
        return stops

    @field_validator("n")
    @classmethod
    def _single_choice(cls, value: int) -> int:
        if value != 1:
            raise ValueError("only n=1 is supported")
        return value


class ChatMessageIn(_Request):
    """One message of ``messages``; ``content`` may be a string or a list of text parts."""

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        """The content as plain text (text parts joined; other part types are refused)."""
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        texts = []
        for part in self.content:
            if part.get("type") != "text":
                raise ApiError(400, f"content part type {part.get('type')!r} is not supported", "messages")
            texts.append(str(part.get("text", "")))
        return "".join(texts)


class StreamOptions(_Request):
    include_usage: bool = False


class ChatCompletionRequest(SamplingFields):
    """``POST /v1/chat/completions``."""

    messages: list[ChatMessageIn] = Field(..., min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1, description="Newer name of max_tokens.")
    stream: bool = False
    stream_options: StreamOptions | None = None
    chat_template_kwargs: dict[str, Any] | None = Field(None, description="e.g. {'thinking': true}.")

    def thinking(self) -> bool | None:
        """The ``thinking`` flag (alias ``enable_thinking``) from ``chat_template_kwargs``."""
        kwargs = self.chat_template_kwargs or {}
        value = kwargs.get("thinking", kwargs.get("enable_thinking"))
        return None if value is None else bool(value)


class CompletionRequest(SamplingFields):
    """``POST /v1/completions``: a raw prompt, no chat template."""

    prompt: str | list[str]
    stream: bool = False
    stream_options: StreamOptions | None = None

    def prompt_text(self) -> str:
        if isinstance(self.prompt, str):
            return self.prompt
        if len(self.prompt) != 1:
            raise ApiError(400, "only one prompt per request is supported", "prompt")
        return self.prompt[0]


class GenerateRequest(SamplingFields):
    """``POST /generate``: one user prompt, rendered with the model's chat template."""

    prompt: str = Field(..., min_length=1)


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


def usage_body(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def reasoning_fields(reasoning: str | None) -> dict[str, str | None]:
    """vLLM's two names for the chain of thought: ``reasoning_content`` (older) and ``reasoning``."""
    return {"reasoning_content": reasoning, "reasoning": reasoning}
