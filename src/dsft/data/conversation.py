"""The one data model every input format is normalised to.

Everything downstream of the readers (templates, training, eval, serving) sees only
:class:`Conversation` and :class:`Message`. Chain of thought travels separately in
``Message.reasoning`` so that each template family decides where it goes.

>>> Conversation([Message("user", "Hi"), Message("assistant", "Hello!", reasoning="Greet.")]).roles
['user', 'assistant']
"""

from __future__ import annotations

import re
from collections.abc import Sequence
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


@dataclass(frozen=True, slots=True)  # one per message of every record held in memory: kept small
class Place:
    """Where one message is in a record as written, for naming a problem found in it there.

    ``at`` names the message (``messages[1]``, ``output``); ``fields`` names a field of it written under another
    name (``(".content", "conversations[1].value")`` for ShareGPT); ``parts`` splits a content joined from several
    fields (``(("instruction", 0), ("input", 7))``: each field's name and where its text starts, in characters);
    ``shifts`` says where a field's text starts in the record's (``(".content", 20)``: the answer after a leading
    ``<think>`` block that was split off), so that a character it names is counted as the record counts it.

    >>> Place("output", ((".content", "output"),)).name(".content: empty assistant message", "")
    'output: empty assistant message'
    >>> Place("instruction and input", parts=(("instruction", 0), ("input", 4))).name(
    ...     ".content: not valid UTF-8 (byte 0xC8 at character 6)", "Add\\n\\n1+\\udcc8")
    'input: not valid UTF-8 (byte 0xC8 at character 2)'
    >>> Place("output", ((".content", "output"),), shifts=((".content", 12),)).name(
    ...     ".content: holds the tokenizer's control token '<|EOT|>' (at character 1) as text", "")
    "output: holds the tokenizer's control token '<|EOT|>' (at character 13) as text"
    """

    at: str
    fields: tuple[tuple[str, str], ...] = ()
    parts: tuple[tuple[str, int], ...] = ()
    shifts: tuple[tuple[str, int], ...] = ()

    def name(self, rest: str, content: str) -> str:
        """``rest`` (what follows ``messages[i]`` in a problem) named where it is; ``content``: the message's text."""
        rest = self._shifted(rest)
        if self.parts and _opens_with_field(rest, ".content"):
            return self._part(rest[len(".content"):], content)
        for key, name in self.fields:
            if _opens_with_field(rest, key):
                return name + rest[len(key):]
        return self.at + rest

    def _shifted(self, rest: str) -> str:
        """``rest`` with the character it names counted from where its field's text starts in the record."""
        for key, shift in self.shifts:
            if _opens_with_field(rest, key) and (offset := _AT_CHARACTER.search(rest)):
                return f"{rest[:offset.start(1)]}{int(offset.group(1)) + shift}{rest[offset.end(1):]}"
        return rest

    def _part(self, rest: str, content: str) -> str:
        """The part of a joined content that holds the problem: by the character it names, else by the tag."""
        offset = _AT_CHARACTER.search(rest)
        tag = _THINK_TAG.search(rest)
        position = int(offset.group(1)) if offset else content.find(tag.group()) if tag else -1
        if position < 0:
            return self.at + rest
        name, start = [(name, start) for name, start in self.parts if start <= position][-1]
        if offset:
            rest = f"{rest[:offset.start(1)]}{position - start}{rest[offset.end(1):]}"
        return name + rest


_MESSAGE_AT = re.compile(r"messages\[(\d+)\]")
_AT_CHARACTER = re.compile(r"at character (\d+)")
_THINK_TAG = re.compile(r"</?think>")


def _opens_with_field(rest: str, key: str) -> bool:
    """Whether ``rest`` starts with the field ``key`` (``.content``, not ``.contents``)."""
    return rest.startswith(key) and (len(rest) == len(key) or not (rest[len(key)].isalnum() or rest[len(key)] == "_"))


def located(problem: str, locations: Sequence[str | Place], contents: Sequence[str] = ()) -> str:
    """``problem`` (about a conversation, opening ``messages[i]``) with ``messages[i]`` written as ``locations[i]``
    (``contents[i]``: that message's text, for a location joined from several fields).

    >>> located("messages[1].content: unclosed <think> block", ["system", "messages[0]"])
    'messages[0].content: unclosed <think> block'
    >>> located("meta.source: not valid UTF-8", ["prompt"])
    'meta.source: not valid UTF-8'
    """
    match = _MESSAGE_AT.match(problem)
    if match is None or int(match.group(1)) >= len(locations):
        return problem
    index = int(match.group(1))
    place = locations[index]
    if isinstance(place, str):
        place = Place(place)
    return place.name(problem[match.end():], contents[index] if index < len(contents) else "")


@dataclass
class Conversation:
    """A list of messages plus optional tool definitions and free-form metadata (source, domain, ...)."""

    messages: list[Message]
    tools: list[dict[str, Any]] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    # Where each message is in the record as written (``system``, ``messages[0]``, ``output``), for naming a problem
    # there; empty: the canonical form's (``messages[i]``), as in a prepared split.
    where: tuple[Place, ...] = field(default=(), compare=False, repr=False)
    # The record's field holding its list of turns (``conversations``, a renamed column), for naming a problem of
    # the whole list (``conversations: no messages``).
    turns_at: str = field(default="messages", compare=False, repr=False)

    @property
    def roles(self) -> list[str]:
        return [m.role for m in self.messages]

    def named(self, problem: str) -> str:
        """``problem`` (opening ``messages[i]``, as validation and cleaning word it) named where that message is in
        the record as written.

        >>> Conversation([Message("system", "s"), Message("user", "")],
        ...              where=(Place("system"), Place("messages[0]"))).named("messages[1].content: empty user message")
        'messages[0].content: empty user message'
        >>> Conversation([], turns_at="conversations").named("messages: no messages")
        'conversations: no messages'
        """
        if problem.startswith("messages:"):
            return self.turns_at + problem[len("messages"):]
        if len(self.where) != len(self.messages):  # canonical, or rebuilt since it was read
            return problem
        return located(problem, self.where, [m.content for m in self.messages])

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

