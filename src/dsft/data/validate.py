"""Validation of normalised conversations: every problem, each naming the message and field.

Rules (a conversation passes when :func:`validate_conversation` returns no problems):

- roles are system/user/assistant/tool; fields are strings (``loss`` a boolean);
- after optional system messages the first turn is a user turn (plain-text records, ``meta.kind ==
  "text"``, are one assistant message and exempt);
- a tool message follows an assistant message with ``tool_calls`` (or another tool message);
- the last message is an assistant turn, and at least one message is trained (``loss`` not all false);
- no empty content (an assistant turn may be empty only when it carries tool calls);
- ``<think>``/``</think>`` only in assistant content (a system, user or tool message holding one is refused as
  such), and there no unclosed or stray tags; no empty reasoning, reasoning only on assistant turns;
- no lone surrogates (what undecodable bytes become) in any text.

>>> from dsft.data.conversation import Conversation, Message
>>> validate_conversation(Conversation([Message("assistant", "Hi")]))
['messages[0]: the first turn after system messages must be a user turn, got assistant']
>>> validate_conversation(Conversation([Message("user", "Q"), Message("assistant", "<think>unclosed")]))
['messages[1].content: unclosed <think> block']
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from dsft.data.conversation import ROLES, Conversation, Message
from dsft.text_encoding import encoding_hint

_SURROGATE = re.compile("[\ud800-\udfff]")


def find_bad_unicode(text: str) -> str | None:
    """A description of the first lone surrogate in ``text`` (undecodable input bytes), or None."""
    match = _SURROGATE.search(text)
    if match is None:
        return None
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape maps an undecodable byte 0xNN to U+DCNN
        hint = encoding_hint(text.encode("utf-8", errors="surrogateescape"))
        return f"not valid UTF-8 (byte 0x{code - 0xDC00:02X} at character {match.start()}){hint}"
    return f"invalid Unicode (lone surrogate U+{code:04X} at character {match.start()})"


def is_blank(text: str) -> bool:
    """Whether ``text`` shows nothing: only whitespace and invisible format characters (zero-width space
    and joiners, direction marks, soft hyphen, byte-order mark: Unicode category Cf).

    >>> is_blank(" \\n\u200b\u200d\u200e"), is_blank("\u200dok")
    (True, False)
    """
    return all(char.isspace() or unicodedata.category(char) == "Cf" for char in text)


def validate_conversation(conversation: Conversation) -> list[str]:
    """Every problem found, ``messages[i].field: reason``; an empty list means valid."""
    messages = conversation.messages
    if not isinstance(messages, list) or not messages:
        return ["messages: no messages"]
    problems: list[str] = []
    # A plain-text record's one message is its text, not a turn of a chat: an empty one is said so.
    empty = "empty text" if conversation.meta.get("kind") == "text" else None
    for index, message in enumerate(messages):
        problems += _message_problems(message, f"messages[{index}]", empty)
    if problems:
        return problems  # order checks need sane messages
    problems += _order_problems(conversation)
    for key, value in conversation.meta.items():
        if isinstance(value, str) and (bad := find_bad_unicode(value)):
            problems.append(f"meta.{key}: {bad}")
    return problems


def nothing_trained(conversation: Conversation, masking: str) -> str | None:
    """Why a valid conversation trains no token under ``template.masking`` (None when it trains some).

    Validation already refuses loss=false on every assistant turn; ``last`` trains only the last assistant
    turn, unless another message has loss=true, so loss=false there leaves nothing either.

    >>> last_off = Conversation([Message("user", "Q"), Message("assistant", "A"), Message("user", "Q2"),
    ...                          Message("assistant", "A2", loss=False)])
    >>> nothing_trained(last_off, "last")
    'template.masking=last trains only the last assistant turn, messages[3], which has loss: false: nothing to train on'
    >>> nothing_trained(last_off, "assistant") is None
    True
    """
    messages = conversation.messages
    if masking != "last" or any(m.loss is True for m in messages):
        return None
    last = max((i for i, m in enumerate(messages) if m.role == "assistant"), default=None)
    if last is None or messages[last].loss is not False:
        return None
    return (f"template.masking=last trains only the last assistant turn, {conversation.named(f'messages[{last}]')}, "
            "which has loss: false: nothing to train on")


def _message_problems(message: Message, where: str, empty: str | None = None) -> list[str]:
    if message.role not in ROLES:
        return [f"{where}.role: unknown role {message.role!r}"]
    problems: list[str] = []
    for field in ("content", "reasoning", "name", "tool_call_id"):
        value: Any = getattr(message, field)
        if value is None and field != "content":
            continue
        if not isinstance(value, str):
            problems.append(f"{where}.{field}: expected a string, got {type(value).__name__}")
        elif bad := find_bad_unicode(value):
            problems.append(f"{where}.{field}: {bad}")
    if message.loss is not None and not isinstance(message.loss, bool):
        problems.append(f"{where}.loss: expected true/false, got {type(message.loss).__name__}")
    if problems:
        return problems
    problems += _think_problems(message, where)
    if is_blank(message.content) and not (message.role == "assistant" and message.tool_calls):
        problems.append(f"{where}.content: {empty or f'empty {message.role} message'}")
    if message.tool_calls and message.role != "assistant":
        problems.append(f"{where}.tool_calls: only assistant messages may call tools")
    for number, call in enumerate(message.tool_calls or []):
        problems += _tool_call_problems(call, f"{where}.tool_calls[{number}]")
    return problems


def _tool_call_problems(call: Any, where: str) -> list[str]:
    """OpenAI form: ``{"type": "function", "function": {"name": str, "arguments": str | object}}``."""
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict):
        return [f"{where}: expected {{'type': 'function', 'function': {{'name', 'arguments'}}}}"]
    if not isinstance(function.get("name"), str) or not function["name"].strip():
        return [f"{where}.function.name: expected a non-empty string"]
    if not isinstance(function.get("arguments", "{}"), (str, dict)):
        return [f"{where}.function.arguments: expected a JSON string or an object"]
    return []


def _think_problems(message: Message, where: str) -> list[str]:
    content = message.content
    if message.role != "assistant" and ("<think>" in content or "</think>" in content):
        tag = "<think>" if "<think>" in content else "</think>"
        return [f"{where}.content: {tag} is not allowed in a {message.role} message, only in an assistant "
                "message's leading think block"]
    if "<think>" in content:
        if "</think>" not in content:
            return [f"{where}.content: unclosed <think> block"]
        if message.reasoning is not None and content.lstrip().startswith("<think>"):  # else it would have been split
            return [f"{where}.content: a leading <think> block, and the reasoning given in its own field too "
                    "(reasoning_content, Complex_CoT): give the chain of thought once"]
        return [f"{where}.content: <think> block not at the start of the message, or nested"]
    if "</think>" in content:
        return [f"{where}.content: </think> without an opening <think>"]
    if message.reasoning is None:
        return []
    if message.role != "assistant":
        return [f"{where}.reasoning_content: reasoning is only allowed on assistant messages"]
    if is_blank(message.reasoning):
        return [f"{where}.reasoning_content: empty reasoning (<think> block); drop it for a no-think sample"]
    if "<think>" in message.reasoning or "</think>" in message.reasoning:
        return [f"{where}.reasoning_content: contains <think>/</think> tags"]
    return []


def _order_problems(conversation: Conversation) -> list[str]:
    messages = conversation.messages
    if conversation.meta.get("kind") == "text":
        if len(messages) != 1 or messages[0].role != "assistant":
            return ["messages: a plain-text record must be a single assistant message"]
        return []
    problems: list[str] = []
    first = next((i for i, m in enumerate(messages) if m.role != "system"), None)
    if first is None:
        return ["messages: only system messages, nothing to train on"]
    if messages[first].role != "user":
        problems.append(
            f"messages[{first}]: the first turn after system messages must be a user turn, got {messages[first].role}"
        )
    for index, message in enumerate(messages):
        if message.role != "tool":
            continue
        previous = messages[index - 1] if index > 0 else None
        if previous is None or not (previous.role == "tool" or (previous.role == "assistant" and previous.tool_calls)):
            problems.append(f"messages[{index}]: a tool message must follow an assistant message with tool_calls")
    if messages[-1].role != "assistant":
        problems.append(f"messages[{len(messages) - 1}]: the last message must be an assistant turn, got {messages[-1].role}")
    elif not any(m.loss is True or (m.role == "assistant" and m.loss is not False) for m in messages):
        problems.append("messages: every assistant turn has loss=false, nothing to train on")
    return problems
