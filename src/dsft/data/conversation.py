"""The one data model every input format is normalised to.

Everything downstream of the readers (templates, training, eval, serving) sees only
:class:`Conversation` and :class:`Message`. Chain of thought travels separately in
``Message.reasoning`` so that each template family decides where it goes.

>>> Conversation([Message("user", "Hi"), Message("assistant", "Hello!", reasoning="Greet.")]).roles
['user', 'assistant']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]
ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool")


@dataclass
class Message:
    """One turn. ``loss`` overrides the masking strategy for this message (None = follow strategy).

    ``tool_calls`` holds OpenAI-style calls (``{"type": "function", "function": {"name", "arguments"}}``)
    on assistant messages; ``name`` / ``tool_call_id`` may identify a tool message.
    """

    role: Role
    content: str
    reasoning: str | None = None
    loss: bool | None = None
    tool_calls: list[dict[str, Any]] | None = None
    name: str | None = None
    tool_call_id: str | None = None

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI ``messages`` form (reasoning as ``reasoning_content``), without empty fields."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.reasoning is not None:
            out["reasoning_content"] = self.reasoning
        for key in ("loss", "tool_calls", "name", "tool_call_id"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


@dataclass
class Conversation:
    """A list of messages plus optional tool definitions and free-form metadata (source, domain, ...)."""

    messages: list[Message]
    tools: list[dict[str, Any]] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def roles(self) -> list[str]:
        return [m.role for m in self.messages]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``{"messages": [...openai form...], "tools"?, "meta"?}``."""
        out: dict[str, Any] = {"messages": [m.to_openai() for m in self.messages]}
        if self.tools:
            out["tools"] = self.tools
        if self.meta:
            out["meta"] = self.meta
        return out

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> "Conversation":
        """Inverse of :meth:`to_dict` for already-validated records (prepared splits)."""
        messages = [
            Message(
                role=m["role"],
                content=m.get("content") or "",
                reasoning=m.get("reasoning_content", m.get("reasoning")),
                loss=m.get("loss"),
                tool_calls=m.get("tool_calls"),
                name=m.get("name"),
                tool_call_id=m.get("tool_call_id"),
            )
            for m in record["messages"]
        ]
        return cls(messages=messages, tools=record.get("tools"), meta=dict(record.get("meta") or {}))

