"""Request bodies of the OpenAI-compatible API (pydantic) and the JSON answers built from results.

Only the fields dsft acts on are declared. Of OpenAI's and vLLM's other fields, those that cannot change the
reply (``user``, ``metadata``) are ignored, and the rest are refused unless they ask for nothing
(:mod:`dsft.serve.unread_fields`). A name dsft does not know is ignored, except a name that looks like a
misspelt declared field (``max_token``, ``temp``, ``contnet``: :func:`dsft.config.spelling.meant_key`, as for a
config key) or transformers' name for one (``max_length``, ``max_new_tokens``, ``do_sample``): ignoring it would
silently drop what the client meant, so it is a 400 naming the field it resembles or the one to use
(:data:`UNKNOWN_FIELD`).
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from dsft.config.spelling import meant_key
from dsft.serve.logprobs import MAX_TOP_LOGPROBS
from dsft.serve.openai_errors import UNKNOWN_FIELD, ApiError
from dsft.serve.unread_fields import KNOWN_UNREAD_FIELDS, refused_field

# torch.Generator.manual_seed accepts exactly this range; a seed outside it cannot be honoured.
SEED_MIN, SEED_MAX = -(2**63), 2**64 - 1
# OpenAI's range for temperature: 0 (greedy) to 2.
TEMPERATURE_MAX = 2.0
_SURROGATE = re.compile("[\ud800-\udfff]")
# Request fields of OpenAI's API and vLLM's extensions that dsft does not read (ignored, or refused unless neutral:
# dsft.serve.unread_fields), never taken for a typo of a field it reads (min_tokens is as close to max_tokens as
# a misspelling).
TOLERATED_FIELDS = KNOWN_UNREAD_FIELDS
# Other names (transformers' generate(), a misremembered 'streaming') for what a field of this API does: ignoring one
# would drop what the client meant (max_length=200 ran to the 2,048-token default; streaming=true answered in one
# piece), so each is a 400 naming the field to use.
FOREIGN_FIELDS = {
    "max_length": "'max_tokens' (tokens generated, the prompt not counted)",
    "max_new_tokens": "'max_tokens'",
    "do_sample": "'temperature' (0 = greedy)",
    "num_return_sequences": "'n'",
    "streaming": "'stream'",  # ignored, the reply would come in one piece to a client reading a stream
}


# Fields the OpenAI endpoints answer and /generate does not, with where to ask instead.
GENERATE_ELSEWHERE = {
    "logprobs": "ask /v1/chat/completions (logprobs, top_logprobs) or /v1/completions (logprobs)",
    "top_logprobs": "ask /v1/chat/completions (logprobs, top_logprobs)",
    "stream": "stream from /v1/chat/completions or /v1/completions",
    "stream_options": "stream from /v1/chat/completions or /v1/completions",
}


def lone_surrogate_path(value: Any, path: str = "") -> str | None:
    """Where the first lone surrogate (``"\\ud800"`` in JSON) sits in a decoded body, or None.

    JSON may escape half of a UTF-16 pair on its own; such a string has no UTF-8 encoding, so no
    tokenizer can read it.

    >>> lone_surrogate_path({"messages": [{"content": "ok"}, {"content": "a\\ud800"}]})
    'messages.1.content'
    """
    if isinstance(value, str):
        return (path or "body") if _SURROGATE.search(value) else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        if isinstance(key, str) and lone_surrogate_path(key) is not None:
            return f"{path}.{key!r}" if path else repr(key)
        found = lone_surrogate_path(item, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None


class _Request(BaseModel):
    # strict: a wrong JSON type is a 400, not a guess ("stream": "yes" is not true, "max_tokens": true is not 1);
    # integers are still accepted where a number is expected.
    model_config = ConfigDict(extra="ignore", strict=True)
    foreign_fields: ClassVar[dict[str, str]] = FOREIGN_FIELDS  # a name -> the field to use instead

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        where = lone_surrogate_path(data)
        if where is not None:
            raise ValueError(f"{where}: holds a lone UTF-16 surrogate (e.g. \\ud800), which is not valid Unicode")
        return data

    @model_validator(mode="before")
    @classmethod
    def _no_misspelt_fields(cls, data: Any) -> Any:
        if not isinstance(data, dict) or cls.model_config.get("extra") == "allow":
            return data
        for key in data:
            if not isinstance(key, str) or key in cls.model_fields or key in TOLERATED_FIELDS:
                continue
            if key in cls.foreign_fields:
                raise PydanticCustomError(UNKNOWN_FIELD, "unknown field; use {use}",
                                          {"field": key, "use": cls.foreign_fields[key]})
            meant = meant_key(key, cls.model_fields)  # as a config key's: a slip, not a word sharing letters
            if meant:
                raise PydanticCustomError(UNKNOWN_FIELD, "unknown field; did you mean '{meant}'?",
                                          {"field": key, "meant": meant})
        return data


def one_of_types(value: Any, accepted: tuple[type, ...], described: str) -> Any:
    """``value`` if it has one of the JSON types a union field takes, else one error naming them all (pydantic would
    report each member of the union apart, under names such as ``content.str``)."""
    if value is not None and not isinstance(value, accepted):
        raise ValueError(f"must be {described}, got {type(value).__name__}")
    return value


class SamplingFields(_Request):
    """Sampling fields shared by every generation endpoint."""

    model: str | None = Field(None, description="Served model name or the name of an adapter given at start.")
    max_tokens: int | None = Field(None, ge=1, description="Most tokens to generate.")
    temperature: float | None = Field(None, ge=0.0, le=TEMPERATURE_MAX, description="0 = greedy.")
    top_p: float | None = Field(None, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    stop: str | list[str] | None = Field(None, description="Up to 4 strings that end generation (not returned).")
    seed: int | None = Field(None, ge=SEED_MIN, le=SEED_MAX, description="Makes sampling repeatable.")
    n: int = Field(1, description="Number of choices; only 1 is supported.")
    top_k: int | None = Field(None, description="Sample among the k most likely tokens; 0 or -1: all (vLLM's rule).")
    min_p: float | None = Field(None, ge=0.0, le=1.0, description="Drop tokens less likely than min_p times the "
                                "most likely one (after temperature).")
    repetition_penalty: float | None = Field(None, gt=0.0, description="> 1 makes tokens of the prompt and the "
                                             "output so far less likely (greedy decoding too); 1: off.")
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0, description="Subtracted once from the logit of "
                                           "every token the reply already holds (OpenAI's rule); 0: off.")
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0, description="Subtracted from a token's logit "
                                            "once per time the reply already holds it (OpenAI's rule); 0: off.")

    @model_validator(mode="before")
    @classmethod
    def _nothing_asked_is_ignored(cls, data: Any) -> Any:
        refused = refused_field(data) if isinstance(data, dict) else None
        if refused is not None:
            raise PydanticCustomError(UNKNOWN_FIELD, "{why}", {"field": refused[0], "why": refused[1]})
        return data

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_type(cls, value: Any) -> Any:
        return one_of_types(value, (str, list), "a string or a list of strings")

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

    @field_validator("top_k")
    @classmethod
    def _top_k_range(cls, value: int | None) -> int | None:
        if value is not None and value < -1:
            raise ValueError(f"must be 0 or -1 (all tokens) or at least 1, got {value}")
        return value

    def shaping(self) -> dict[str, float]:
        """The :class:`~dsft.serve.sampling.SamplingParams` fields beyond temperature and top_p this request sets."""
        given = {"top_k": max(self.top_k, 0) if self.top_k is not None else None, "min_p": self.min_p,
                 "repetition_penalty": self.repetition_penalty, "presence_penalty": self.presence_penalty,
                 "frequency_penalty": self.frequency_penalty, "logprobs": self.logprob_alternatives()}
        return {name: value for name, value in given.items() if value is not None}

    def logprob_alternatives(self) -> int | None:
        """How many most likely tokens to return beside each generated token's logprob; None: no logprobs."""
        return None


class ChatMessageIn(_Request):
    """One message of ``messages``; ``content`` may be a string or a list of text parts."""

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _content_type(cls, value: Any) -> Any:
        return one_of_types(value, (str, list), "a string, a list of content parts or null")

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


class FunctionDefinition(_Request):
    model_config = ConfigDict(extra="allow")  # description, parameters, strict: passed to the template as sent

    name: str = Field(..., min_length=1)


class ToolDefinition(_Request):
    """One entry of ``tools``: ``{"type": "function", "function": {"name": ..., "parameters": {...}}}``."""

    type: Literal["function"]
    function: FunctionDefinition


class StreamOptions(_Request):
    include_usage: bool = False


class ChatCompletionRequest(SamplingFields):
    """``POST /v1/chat/completions``."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}],
         "max_tokens": 64, "temperature": 0.6, "seed": 1},
    ]})

    messages: list[ChatMessageIn] = Field(..., min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1, description="Newer name of max_tokens.")
    stream: bool = False
    stream_options: StreamOptions | None = None
    chat_template_kwargs: dict[str, Any] | None = Field(None, description="e.g. {'thinking': true}.")
    tools: list[ToolDefinition] | None = Field(None, description="Function definitions, rendered into the prompt "
                                               "by templates that render them (deepseek-v3.2, deepseek-v4, hf "
                                               "templates that read them).")
    tool_choice: Literal["auto", "none"] | None = Field(
        None, description="auto (default): the model may call a tool; none: no tools, replies are not parsed for calls.")
    logprobs: bool | None = Field(None, description="Return each generated token's logprob (the model's own, before "
                                  "penalties and temperature, as vLLM).")
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS, description="With logprobs: also the N most "
                                     "likely tokens at each position.")

    @field_validator("top_logprobs")
    @classmethod
    def _needs_logprobs(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value and not info.data.get("logprobs"):
            raise ValueError("needs logprobs: true (OpenAI's rule); without it no logprobs are returned")
        return value

    def logprob_alternatives(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None

    @field_validator("tool_choice", mode="before")
    @classmethod
    def _choice_we_can_honour(cls, value: Any) -> Any:
        if value == "required" or isinstance(value, dict):
            raise ValueError("only 'auto' and 'none' are supported: dsft's server does not constrain decoding, so it "
                             "cannot force a call")
        return value

    def tool_definitions(self) -> list[dict[str, Any]] | None:
        """The ``tools`` to render, as sent (None when absent, empty, or ``tool_choice`` is none)."""
        if not self.tools or self.tool_choice == "none":
            return None
        return [tool.model_dump(exclude_none=True) for tool in self.tools]

    def parses_tool_calls(self) -> bool:
        return self.tool_choice != "none"

    def thinking(self) -> bool | None:
        """The ``thinking`` flag (alias ``enable_thinking``) from ``chat_template_kwargs``."""
        kwargs = self.chat_template_kwargs or {}
        value = kwargs.get("thinking", kwargs.get("enable_thinking"))
        return None if value is None else bool(value)


class CompletionRequest(SamplingFields):
    """``POST /v1/completions``: a raw prompt, no chat template."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"prompt": "The capital of France is", "max_tokens": 8}]})
    # The chat endpoint's name for the alternatives: ignored here, the answer would hold none.
    foreign_fields: ClassVar[dict[str, str]] = {
        **FOREIGN_FIELDS, "top_logprobs": "'logprobs' (here the number of most likely tokens at each position)"}

    prompt: str | list[str]
    stream: bool = False
    stream_options: StreamOptions | None = None
    logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS, description="Return each generated token's "
                                 "logprob and the N most likely tokens at each position (legacy shape).")

    def logprob_alternatives(self) -> int | None:
        return self.logprobs

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt_type(cls, value: Any) -> Any:
        return one_of_types(value, (str, list), "a string or a list of one string")

    def prompt_text(self) -> str:
        if isinstance(self.prompt, str):
            return self.prompt
        if len(self.prompt) != 1:
            raise ApiError(400, "only one prompt per request is supported", "prompt")
        return self.prompt[0]


class GenerateRequest(SamplingFields):
    """``POST /generate``: one user prompt, rendered with the model's chat template."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"prompt": "What is 2+2?", "max_tokens": 64}]})

    prompt: str = Field(..., min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _nothing_it_cannot_answer(cls, data: Any) -> Any:
        # Its answer is one JSON object with no place for these; ignoring one would hand back less than was asked.
        for key, where in GENERATE_ELSEWHERE.items():
            if isinstance(data, dict) and data.get(key) not in (None, False):
                raise PydanticCustomError(UNKNOWN_FIELD, "not answered by /generate; {where}",
                                          {"field": key, "where": where})
        return data


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
