"""Read a conversation from a JSON file of OpenAI-form messages (``dsft template render --messages``).

The file holds a list of messages (or ``{"messages": [...], "tools": [...]}``), each with ``role``,
``content`` and optionally ``reasoning_content``, ``loss``, ``tool_calls``, ``name``, ``tool_call_id``.
Every problem is reported with the file and the message index.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dsft.data.conversation import ROLES, Conversation, Message
from dsft.data.format_converters import MESSAGE_FIELDS, SHAREGPT_ROLES, resembling, type_name
from dsft.errors import DsftError
from dsft.text_encoding import encoding_hint

_OPTIONAL_TYPES: dict[str, type | tuple[type, ...]] = {
    "reasoning_content": str, "loss": bool, "tool_calls": list, "name": str, "tool_call_id": str,
}


def _message(record: Any, where: str) -> tuple[Message | None, list[str]]:
    if not isinstance(record, dict):
        return None, [f"{where}: must be an object with role and content, got {type(record).__name__}"]
    problems = []
    role, content = record.get("role"), record.get("content")
    if role not in ROLES:
        other = SHAREGPT_ROLES.get(role) if isinstance(role, str) else None
        hint = f"; ShareGPT's {role!r} is {other!r}" if other else ""
        problems.append(f"{where}: unknown role {role!r} (expected one of {', '.join(ROLES)}{hint})")
    if content is None and role == "assistant" and record.get("tool_calls"):
        content = ""  # OpenAI call-only turns carry content: null
    # A misspelt field ('contnet', 'reasoning_contnet') would render the message without it.
    problems.extend(f"{where}: unknown field {key!r}; did you mean {field!r}?" for key, field in resembling(record, MESSAGE_FIELDS))
    if "content" not in record:
        if not any(field == "content" for _, field in resembling(record, MESSAGE_FIELDS)):
            problems.append(f"{where}: content is missing")
    elif not isinstance(content, str):
        problems.append(f"{where}: content must be a string, got {type_name(content)}")
    for key, kind in _OPTIONAL_TYPES.items():
        if record.get(key) is not None and not isinstance(record[key], kind):
            problems.append(f"{where}: {key} must be a {getattr(kind, '__name__', kind)}")
    if problems:
        return None, problems
    reasoning = record.get("reasoning_content", record.get("reasoning"))
    return Message(role, content, reasoning=reasoning, loss=record.get("loss"), tool_calls=record.get("tool_calls"),
                   name=record.get("name"), tool_call_id=record.get("tool_call_id")), []


def conversation_from_openai(data: Any, source: str = "messages") -> Conversation:
    """A :class:`Conversation` from OpenAI-form data; :class:`DsftError` listing every problem."""
    tools = None
    if isinstance(data, dict) and "messages" in data:
        data, tools = data["messages"], data.get("tools")
    elif isinstance(data, list) and data and all(isinstance(r, dict) and "messages" in r for r in data):
        raise DsftError(f"{source}: a list of {len(data)} records (each with messages), not one conversation; "
                        "give one record's messages, or see any record rendered with `dsft data inspect "
                        f"{source} --index N`")
    if not isinstance(data, list) or not data:
        raise DsftError(f"{source}: expected a non-empty JSON list of messages")
    if all(isinstance(r, dict) and {"from", "value"} <= set(r) and "role" not in r for r in data):
        raise DsftError(f"{source}: message 0: ShareGPT's from/value turns; write role/content (human -> user, gpt -> "
                        "assistant), as `dsft data` reads them from a data file")
    messages, problems = [], []
    for i, record in enumerate(data):
        message, found = _message(record, f"{source}: message {i}")
        problems.extend(found)
        if message is not None:
            messages.append(message)
    if problems:
        raise DsftError(f"{source}: invalid messages", problems)
    return Conversation(messages, tools=tools if isinstance(tools, list) else None)


def load_messages_file(path: str | Path) -> Conversation:
    """Read and validate a JSON messages file."""
    file = Path(path)
    try:
        raw = file.read_bytes()
        data = json.loads(raw.decode("utf-8-sig"))  # -sig: the byte-order mark Windows editors write is no JSON
    except FileNotFoundError:
        raise DsftError(f"--messages: file not found: {file}") from None
    except UnicodeDecodeError as exc:
        raise DsftError(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start}){encoding_hint(raw)}") from None
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data" and exc.colno == 1:  # a second JSON value on its own line
            raise DsftError(f"{file}: JSON Lines (one record per line), not one conversation; give one record's "
                            f"messages as a JSON file, or see any record rendered with `dsft data inspect {file} "
                            "--index N`") from None
        raise DsftError(f"{file}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except OSError as exc:
        raise DsftError(f"--messages: cannot read {file}: {exc.strerror}") from None
    return conversation_from_openai(data, str(file))
