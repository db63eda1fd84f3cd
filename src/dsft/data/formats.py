"""Input formats -> :class:`~dsft.data.conversation.Conversation`, detected per record.

``data.format`` forces one format; ``data.columns`` maps canonical names to your column names
(``{"question": "q"}`` reads the column ``q`` wherever the format expects ``question``). Fields a format
does not use are kept in ``Conversation.meta`` when they are scalars (``domain``, ``difficulty``, ...).

A record that cannot be converted raises :class:`FormatProblem` naming the field, which the pipeline
turns into a rejection with the record's file and line. A converted conversation records where each of its
messages is in the record as written (``Conversation.where``), so that a problem found later is named there
(the user's ``messages[1]`` after a separate ``system`` field, Alpaca's ``output``, ShareGPT's
``conversations[0].value``, a renamed column by its own name), not by the messages dsft built.

>>> to_conversation({"instruction": "Add", "input": "1+1", "output": "2"}).roles
['user', 'assistant']
>>> to_conversation({"Question": "Q", "Complex_CoT": "think", "Response": "A"}).messages[1].reasoning
'think'
>>> detect_format({"from": "x"}) is None
True
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterable
from typing import Any

from dsft.data.conversation import ROLES, Conversation, Message, Place
from dsft.data.validate import find_bad_unicode, is_blank

# Canonical field names each format reads (the keys of ``data.columns``).
FORMAT_FIELDS: dict[str, tuple[str, ...]] = {
    "messages": ("messages", "system", "tools"),
    "conversations": ("conversations", "system", "tools"),
    "sharegpt": ("conversations", "system", "tools"),
    "alpaca": ("instruction", "input", "output", "system", "history"),
    "input_output": ("input", "output", "system"),
    "context_qa": ("context", "question", "answer", "system"),
    "cot": ("Question", "Complex_CoT", "Response", "system"),
    "prompt_completion": ("prompt", "completion", "system"),
    "text": ("text",),
}
# Fields a format cannot do without (a missing one rejects the record).
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "messages": ("messages",),
    "conversations": ("conversations",),
    "sharegpt": ("conversations",),
    "alpaca": ("instruction", "output"),
    "input_output": ("input", "output"),
    "context_qa": ("question", "answer"),
    "cot": ("Question", "Response"),
    "prompt_completion": ("prompt", "completion"),
    "text": ("text",),
}
SHAREGPT_ROLES = {
    "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant",
    "bing": "assistant", "bard": "assistant", "model": "assistant", "system": "system",
    "function_call": "assistant", "observation": "tool", "tool": "tool", "function": "tool",
}
# The keys of one OpenAI-style message (``messages`` and role/content ``conversations``) that are read.
MESSAGE_FIELDS = ("role", "content", "reasoning_content", "reasoning", "loss", "weight", "tool_calls", "name",
                  "tool_call_id")
SHAREGPT_TURN_FIELDS = ("from", "value", "loss", "weight")  # the keys of one ShareGPT turn that are read
META_KEYS_SKIPPED = ("meta",)  # a record's own "meta" mapping is merged instead


class FormatProblem(ValueError):
    """A record does not fit its format; the message names the field."""


def detect_format(record: Any) -> str | None:
    """The format a record looks like, or None. Checked most-specific first."""
    if not isinstance(record, dict):
        return None
    keys = record.keys()
    if "messages" in keys:
        return "messages"
    if "conversations" in keys:
        turns = record["conversations"]
        if isinstance(turns, list) and turns and isinstance(turns[0], dict) and "from" in turns[0]:
            return "sharegpt"
        return "conversations"
    if "instruction" in keys and "output" in keys:
        return "alpaca"
    if "Question" in keys and "Response" in keys:
        return "cot"
    if "question" in keys and "answer" in keys:
        return "context_qa"
    if "prompt" in keys and "completion" in keys:
        return "prompt_completion"
    if "input" in keys and "output" in keys:
        return "input_output"
    if "text" in keys:
        return "text"
    return None


def to_conversation(record: Any, fmt: str = "auto", columns: dict[str, str] | None = None) -> Conversation:
    """Normalise one raw record. ``fmt="auto"`` detects the format; ``columns`` renames fields first."""
    return convert(record, fmt, columns)[1]


def convert(record: Any, fmt: str = "auto", columns: dict[str, str] | None = None) -> tuple[str, Conversation]:
    """Like :func:`to_conversation`, also returning the format name that was used."""
    if not isinstance(record, dict):
        raise FormatProblem(f"record is {_type_name(record)}, expected a JSON object")
    view = apply_columns(record, columns or {})
    name = detect_format(view) if fmt == "auto" else fmt
    if name is None:
        keys = ", ".join(sorted(map(str, record))[:12]) or "none"
        bad = find_bad_unicode("".join(map(str, record)))
        if bad is not None:  # the field names themselves are unreadable: no mapping can name them
            raise FormatProblem(f"field names are {bad}")
        raise FormatProblem(f"unknown format (keys: {keys}); {_unknown_format_hint(view)}")
    missing = [field for field in REQUIRED_FIELDS[name] if field not in view]
    slips = misnamed_fields(view, name)
    if missing:
        if mapped := _mapped_to_an_unread_name(view, name, columns or {}, missing):
            raise FormatProblem(mapped)
        hint = (f"; did you mean {', '.join(f'{field!r} for {key!r}' for key, field in slips)}" if slips
                else f" (the record has: {', '.join(sorted(map(str, view))[:12]) or 'no fields'})")
        raise FormatProblem(f"format {name}: missing field(s) {', '.join(missing)}{hint}; rename the field(s) or map "
                            "them with data.columns")
    if slips:  # read as metadata it would be dropped from the training text without a word
        key, field = slips[0]
        raise FormatProblem(f"format {name}: field {key!r} is not read; did you mean {field!r}? Rename it, or set "
                            f"data.columns: {{{field}: {key}}}")
    spelled = {canonical: column for canonical, column in (columns or {}).items()}
    try:
        conversation = CONVERTERS[name](view)
    except FormatProblem as exc:
        raise FormatProblem(_respelled(str(exc), spelled)) from None
    conversation.meta = {**_extra_meta(view, name), **conversation.meta}
    conversation.where = tuple(_shared(_respelled_place(place, spelled)) for place in conversation.where)
    conversation.turns_at = _respelled(conversation.turns_at, spelled)
    return name, conversation


_FIELD_NAME = re.compile(r"[A-Za-z_]\w*")


def _respelled(text: str, spelled: dict[str, str]) -> str:
    """``text`` (opening with a canonical field name) with that name written as the record's column.

    >>> _respelled("output is an integer, expected a string", {"output": "answer"})
    'answer is an integer, expected a string'
    >>> _respelled("conversations[0].value: empty", {"conversations": "dialog"})
    'dialog[0].value: empty'
    """
    match = _FIELD_NAME.match(text)
    if match is None or match.group() not in spelled:
        return text
    return spelled[match.group()] + text[match.end():]


_SHARED_PLACES: dict[Place, Place] = {}


def _shared(place: Place) -> Place:
    """One instance per distinct place without offsets (``messages[1]``, ``output``: the same in most records), so
    that a million records held in memory do not each hold their own copies; a place with offsets is its record's.
    """
    if place.parts or place.shifts:
        return place
    return _SHARED_PLACES.setdefault(place, place)


def _respelled_place(place: Place, spelled: dict[str, str]) -> Place:
    if not spelled:
        return place
    parts = tuple((_respelled(name, spelled), start) for name, start in place.parts)
    return Place(" and ".join(name for name, _ in parts) if parts else _respelled(place.at, spelled),
                 tuple((key, _respelled(name, spelled)) for key, name in place.fields), parts, place.shifts)


def _unknown_format_hint(view: dict[str, Any]) -> str:
    """What to do with a record no format is detected in: when a format's required fields are all there but some
    spelt another way (``question`` for CoT's ``Question``, ``answr``), which to rename; when it is a whole file's
    lists of records by split (``{"train": [...], "val": [...]}``), to give each a file; else set the format.

    >>> _unknown_format_hint({"question": "Q", "Complex_CoT": "t", "Response": "A"})
    "it looks like format cot with 'question' for 'Question': rename it, or set data.columns: {Question: question}"
    >>> _unknown_format_hint({"train": [{"text": "a"}], "validation": [{"text": "b"}]})[:72]
    'it holds lists of records (under train, validation), not one record: wri'
    >>> _unknown_format_hint({"foo": 1})
    'set data.format and data.columns'
    """
    lists = [key for key, value in view.items() if isinstance(value, list) and value
             and all(isinstance(item, dict) for item in value)]
    if lists and len(lists) == len(view):
        return (f"it holds lists of records (under {', '.join(map(str, lists))}), not one record: write each list to a "
                "file of its own (JSON lines, or a JSON array) and name them in data.train / data.val")
    for fmt, required in REQUIRED_FIELDS.items():
        slips = [(key, field) for key, field in _resembling(view, FORMAT_FIELDS[fmt]) if field in required]
        if slips and all(field in view or field in {meant for _, meant in slips} for field in required):
            named = ", ".join(f"{key!r} for {field!r}" for key, field in slips)
            mapping = ", ".join(f"{field}: {key}" for key, field in slips)
            return (f"it looks like format {fmt} with {named}: rename {'them' if len(slips) > 1 else 'it'}, or set "
                    f"data.columns: {{{mapping}}}")
    return "set data.format and data.columns"


def misnamed_fields(view: dict[str, Any], fmt: str) -> list[tuple[str, str]]:
    """``(key, field)`` for each field of ``fmt`` the record lacks while a key it does not read resembles it
    (the same name in another case, or a close spelling): a slip that would otherwise lose the field.

    >>> misnamed_fields({"Question": "Q", "Complex_COT": "t", "Response": "A", "domain": "x"}, "cot")
    [('Complex_COT', 'Complex_CoT')]
    """
    return _resembling(view, FORMAT_FIELDS[fmt])


def _resembling(mapping: dict[str, Any], fields: tuple[str, ...]) -> list[tuple[str, str]]:
    unread = [key for key in mapping if isinstance(key, str) and key not in fields and key not in META_KEYS_SKIPPED]
    slips = []
    for field in fields:
        if field in mapping:
            continue
        same_name = [key for key in unread if key.lower() == field.lower()]
        close = same_name or difflib.get_close_matches(field, unread, n=1, cutoff=0.8)
        if close:
            slips.append((close[0], field))
    return slips


def _mapped_to_an_unread_name(view: dict[str, Any], fmt: str, columns: dict[str, str], missing: list[str]) -> str:
    """When a record lacks a field because ``data.columns`` renamed a column to a name ``fmt`` does not read: what
    to change ('' when that is not why).

    >>> _mapped_to_an_unread_name({"question": "Q", "Response": "A"}, "cot", {"question": "Question"}, ["Question"])
    "format cot: data.columns maps question to 'Question', a column already named as format cot reads it; remove question from data.columns (format cot reads Question, Complex_CoT, Response, system)"
    >>> _mapped_to_an_unread_name({"question": "Q", "Response": "A"}, "cot", {"question": "q"}, ["Question"])
    "format cot: data.columns maps question to 'q', a name format cot does not read; write data.columns: {Question: q} (format cot reads Question, Complex_CoT, Response, system)"
    """
    fields = FORMAT_FIELDS[fmt]
    for canonical, column in columns.items():
        if canonical in fields:
            continue
        reads = f"(format {fmt} reads {', '.join(fields)})"
        if column in missing:
            return (f"format {fmt}: data.columns maps {canonical} to {column!r}, a column already named as format "
                    f"{fmt} reads it; remove {canonical} from data.columns {reads}")
        meant = [field for key, field in _resembling(view, fields) if key == canonical and field in missing]
        if meant:
            return (f"format {fmt}: data.columns maps {canonical} to {column!r}, a name format {fmt} does not read; "
                    f"write data.columns: {{{meant[0]}: {column}}} {reads}")
    return ""


def apply_columns(record: dict[str, Any], columns: dict[str, str]) -> dict[str, Any]:
    """A view of ``record`` with user columns renamed to canonical names; a missing column is an error."""
    if not columns:
        return record
    view = dict(record)
    for canonical, column in columns.items():
        if column not in record:
            raise FormatProblem(f"column {column!r} (mapped to {canonical}) is missing from the record"
                                f"{_reversed_mapping_hint(record, columns)}")
        view.pop(column)
        view[canonical] = record[column]
    return view


def _extra_meta(view: dict[str, Any], fmt: str) -> dict[str, Any]:
    used = set(FORMAT_FIELDS[fmt])
    meta: dict[str, Any] = {}
    own = view.get("meta")
    if isinstance(own, dict):
        meta.update({str(k): v for k, v in own.items() if _is_scalar(v)})
    for key, value in view.items():
        if key not in used and key not in META_KEYS_SKIPPED and _is_scalar(value):
            meta[str(key)] = value
    return meta


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", type(None): "null", bool: "a boolean",
            int: "an integer", float: "a number"}.get(type(value), f"a {type(value).__name__}")


def _reversed_mapping_hint(record: dict[str, Any], columns: dict[str, str]) -> str:
    """When ``columns`` is written your column -> name (the record has its keys, not its values): the mapping meant
    (data.columns maps the name dsft reads to your column).

    >>> _reversed_mapping_hint({"q": "Q"}, {"q": "question"})
    ', but the record has q: the mapping is reversed; write data.columns: {question: q}'
    """
    swapped = {column: canonical for canonical, column in columns.items() if canonical in record and column not in record}
    if not swapped:
        return ""
    meant = ", ".join(f"{name}: {column}" for name, column in swapped.items())
    return f", but the record has {next(iter(swapped.values()))}: the mapping is reversed; write data.columns: {{{meant}}}"


def _text(value: Any, where: str, optional: bool = False) -> str:
    """A string field; None allowed only when optional. Numbers are NOT silently stringified."""
    if value is None and optional:
        return ""
    if isinstance(value, str):
        return value
    raise FormatProblem(f"{where} is {_type_name(value)}, expected a string")


def _content(value: Any, where: str) -> str:
    """OpenAI content: a string, null, or a list of ``{"type": "text", "text": ...}`` parts."""
    if value is None or isinstance(value, str):
        return value or ""
    if isinstance(value, list):
        texts = []
        for index, part in enumerate(value):
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            else:
                raise FormatProblem(f"{where}[{index}] is not a text part (only text content is supported)")
        return "".join(texts)
    raise FormatProblem(f"{where} is {_type_name(value)}, expected a string")


def split_inline_think(content: str) -> tuple[str | None, str]:
    """Split ``<think>reasoning</think>answer`` into (reasoning, answer); other text is returned as is.

    Only a well-formed leading block is split; an unclosed or stray tag stays in the content so that
    validation rejects it with a precise reason.

    >>> split_inline_think("<think>\\nAdd.\\n</think>\\n\\n2")
    ('Add.', '2')
    >>> split_inline_think("plain")
    (None, 'plain')
    """
    stripped = content.lstrip()
    if not stripped.startswith("<think>") or "</think>" not in stripped:
        return None, content
    inner, answer = stripped[len("<think>"):].split("</think>", 1)
    if "<think>" in inner:
        return None, content
    return inner.strip(), answer.lstrip("\n")


def _assistant(content: str, reasoning: str | None = None, **extra: Any) -> Message:
    if reasoning is None:
        reasoning, content = split_inline_think(content)
    return Message("assistant", content, reasoning=reasoning, **extra)


def _system_prefix(view: dict[str, Any]) -> list[Message]:
    system = _text(view.get("system"), "system", optional=True)
    return [Message("system", system)] if system else []


def _opened(view: dict[str, Any], messages: list[Message], places: list[Place],
            tools: list[dict[str, Any]] | None = None, turns_at: str = "messages") -> Conversation:
    """``messages`` (read from the places ``places``; from the list ``turns_at``, where there is one) opened by the
    record's ``system`` field, if any."""
    system = _system_prefix(view)
    return Conversation(system + messages, tools, where=(*[_text_place("system")] * len(system), *places),
                        turns_at=turns_at)


def _text_place(field: str, reasoning_field: str | None = None, answer: Any = None) -> Place:
    """Where a message read from one string field is: every problem of its text is that field's (its reasoning
    ``reasoning_field``'s, when read from a field of its own; ``answer``: the field's text, when a leading think
    block may have been split from it)."""
    reasoning = reasoning_field or field  # validation says .reasoning_content, or .reasoning of its encoding
    return Place(field, ((".content", field), (".reasoning_content", reasoning), (".reasoning", reasoning)),
                 shifts=_think_shifts(answer))


def _think_shifts(answer: Any) -> tuple[tuple[str, int], ...]:
    """Where the answer and the reasoning that :func:`split_inline_think` takes from ``answer`` start in it, in
    characters (none when it splits nothing), for counting a character of theirs as the record does.

    >>> _think_shifts("<think>\\nAdd.\\n</think>\\n\\n2")
    (('.content', 23), ('.reasoning_content', 8), ('.reasoning', 8))
    """
    if not isinstance(answer, str):
        return ()
    reasoning, content = split_inline_think(answer)
    if reasoning is None:
        return ()
    opened = answer.index("<think>") + len("<think>")
    inner = answer[opened:]
    at = opened + len(inner) - len(inner.lstrip())  # split_inline_think strips the reasoning
    return ((".content", len(answer) - len(content)), (".reasoning_content", at), (".reasoning", at))


def _turn_place(where: str, turn: Any) -> Place:
    """Where a ``{role, content}`` turn is; an assistant's content may have had its leading think block split off."""
    split = (isinstance(turn, dict) and turn.get("role") == "assistant"
             and turn.get("reasoning_content", turn.get("reasoning")) is None)
    return Place(where, shifts=_think_shifts(turn.get("content")) if split else ())


def _joined_place(first: str, first_text: str, second: str) -> Place:
    """Where a content joined as ``first_text``, a blank line, then ``second``'s text is."""
    return Place(f"{first} and {second}", parts=((first, 0), (second, len(first_text) + 2)))


def _tools(view: dict[str, Any]) -> list[dict[str, Any]] | None:
    tools = view.get("tools")
    if tools is None:
        return None
    if isinstance(tools, str):  # ShareGPT/LLaMA-Factory store tools as a JSON string
        try:
            tools = json.loads(tools) if tools.strip() else None
        except json.JSONDecodeError:
            raise FormatProblem("tools is a string but not valid JSON") from None
    if tools is not None and not (isinstance(tools, list) and all(isinstance(t, dict) for t in tools)):
        raise FormatProblem("tools must be a list of objects")
    return tools or None


def from_messages(view: dict[str, Any]) -> Conversation:
    """OpenAI ``messages`` (roles system/user/assistant/tool; ``reasoning_content``, ``loss`` or OpenAI's
    ``weight``, ``tool_calls``); a top-level ``system`` string (LLaMA-Factory's system column) opens it."""
    raw_messages = view["messages"]
    if not isinstance(raw_messages, list):
        raise FormatProblem(f"messages is {_type_name(raw_messages)}, expected a list")
    messages = [_openai_message(m, f"messages[{i}]") for i, m in enumerate(raw_messages)]
    places = [_turn_place(f"messages[{i}]", turn) for i, turn in enumerate(raw_messages)]
    return _opened(view, messages, places, _tools(view))


def _openai_message(raw: Any, where: str) -> Message:
    if not isinstance(raw, dict):
        raise FormatProblem(f"{where} is {_type_name(raw)}, expected an object")
    if "role" not in raw and "from" in raw:  # the two conventions mixed in one list
        raise FormatProblem(f"{where}: a ShareGPT {{from, value}} turn in a list of {{role, content}} turns: write "
                            "every turn as {role, content}, or every one as {from, value}")
    role = raw.get("role")
    if not isinstance(role, str) or role not in ROLES:
        known = isinstance(role, str) and role in SHAREGPT_ROLES  # a list or object role is unhashable
        sharegpt = f"; {role!r} is ShareGPT's name for {SHAREGPT_ROLES[role]!r}" if known else ""
        raise FormatProblem(f"{where}.role: unknown role {role!r} (expected one of {', '.join(ROLES)}{sharegpt})"
                            f"{_case_slip(role, ROLES)}")
    slips = _resembling(raw, MESSAGE_FIELDS)
    if slips:  # the answer or its reasoning under a misspelt key would be dropped without a word
        key, field = slips[0]
        raise FormatProblem(f"{where}: field {key!r} is not read; did you mean {field!r}?")
    if "content" not in raw and not raw.get("tool_calls"):  # else rejected as an empty message, the text unseen
        texts = [key for key, value in raw.items() if key not in MESSAGE_FIELDS and isinstance(value, str) and value]
        if texts:
            raise FormatProblem(f"{where}: no 'content' field; the text under {texts[0]!r} is not read: rename "
                                f"{texts[0]!r} to 'content'")
    content = _content(raw.get("content"), f"{where}.content")
    reasoning_raw = raw.get("reasoning_content", raw.get("reasoning"))
    if raw.get("reasoning") is not None and raw.get("reasoning_content") not in (None, raw["reasoning"]):
        raise FormatProblem(f"{where}: reasoning_content and reasoning differ; give the chain of thought once")
    reasoning = None if reasoning_raw is None else _text(reasoning_raw, f"{where}.reasoning_content")
    loss = _loss_flag(raw, role, where)
    tool_calls = raw.get("tool_calls")
    if tool_calls is not None and not (isinstance(tool_calls, list) and all(isinstance(c, dict) for c in tool_calls)):
        raise FormatProblem(f"{where}.tool_calls must be a list of objects")
    extra = {
        "loss": loss,
        "tool_calls": tool_calls or None,
        "name": None if raw.get("name") is None else _text(raw.get("name"), f"{where}.name"),
        "tool_call_id": None if raw.get("tool_call_id") is None else _text(raw["tool_call_id"], f"{where}.tool_call_id"),
    }
    if role == "assistant":
        return _assistant(content, reasoning, **extra)
    return Message(role, content, reasoning=reasoning, **extra)  # type: ignore[arg-type]


def _case_slip(name: Any, names: Iterable[str]) -> str:
    """``; did you mean 'x'?`` when ``name`` is one of ``names`` in another case (roles are lower case), else ''.

    >>> _case_slip("Assistant", ("user", "assistant")), _case_slip("bot", ("user",))
    ("; did you mean 'assistant'?", '')
    """
    meant = next((known for known in names if isinstance(name, str) and name.lower() == known), None)
    return f"; did you mean {meant!r}?" if meant else ""


def _loss_flag(turn: dict[str, Any], role: str, where: str) -> bool | None:
    """A turn's ``loss`` (true/false), or OpenAI fine-tuning's ``weight`` (0/1, assistant turns only).

    >>> _loss_flag({"weight": 0}, "assistant", "messages[1]"), _loss_flag({"loss": True}, "user", "messages[0]")
    (False, True)
    """
    loss = turn.get("loss")
    if loss is not None and not isinstance(loss, bool):
        raise FormatProblem(f"{where}.loss is {_type_name(loss)}, expected true/false")
    weight = turn.get("weight")
    if weight is None:
        return loss
    if isinstance(weight, str) or weight not in (0, 1):
        raise FormatProblem(f"{where}.weight is {weight!r}, expected 0 (not trained) or 1 (trained)")
    if role != "assistant":
        raise FormatProblem(f"{where}.weight: only assistant turns take a weight (use loss: true to train a {role} turn)")
    if loss is not None and loss != bool(weight):
        raise FormatProblem(f"{where}: loss {str(loss).lower()} and weight {weight} disagree")
    return bool(weight)


def from_conversations(view: dict[str, Any]) -> Conversation:
    """``conversations`` as a list of ``{"role", "content"}`` turns (OpenAI-like, roles strict)."""
    turns = view["conversations"]
    if not isinstance(turns, list):
        raise FormatProblem(f"conversations is {_type_name(turns)}, expected a list")
    messages = [_openai_message(t, f"conversations[{i}]") for i, t in enumerate(turns)]
    places = [_turn_place(f"conversations[{i}]", turn) for i, turn in enumerate(turns)]
    return _opened(view, messages, places, _tools(view), "conversations")


def from_sharegpt(view: dict[str, Any]) -> Conversation:
    """ShareGPT ``conversations`` of ``{"from", "value"}`` (human/gpt/system/function_call/observation)."""
    turns = view["conversations"]
    if not isinstance(turns, list):
        raise FormatProblem(f"conversations is {_type_name(turns)}, expected a list")
    messages: list[Message] = []
    for index, turn in enumerate(turns):
        where = f"conversations[{index}]"
        if not isinstance(turn, dict):
            raise FormatProblem(f"{where} is {_type_name(turn)}, expected an object")
        _check_sharegpt_keys(turn, where)
        speaker = turn.get("from")
        role = SHAREGPT_ROLES.get(speaker) if isinstance(speaker, str) else None
        if role is None:
            raise FormatProblem(f"{where}.from: unknown role {speaker!r} (expected {', '.join(SHAREGPT_ROLES)})"
                                f"{_case_slip(speaker, SHAREGPT_ROLES)}")
        value = _text(turn.get("value"), f"{where}.value")
        loss = _loss_flag(turn, role, where)  # read, not dropped: a turn marked untrained must stay untrained
        if speaker == "function_call":
            messages.append(Message("assistant", "", tool_calls=[_sharegpt_call(value, where)], loss=loss))
        elif role == "assistant":
            messages.append(_assistant(value, loss=loss))
        else:
            messages.append(Message(role, value, loss=loss))  # type: ignore[arg-type]
    return _opened(view, messages, [_sharegpt_place(index, turn) for index, turn in enumerate(turns)], _tools(view),
                   "conversations")


def _check_sharegpt_keys(turn: dict[str, Any], where: str) -> None:
    """Refuse a turn whose speaker or text is under a key ShareGPT does not read: a ``{role, content}`` turn among
    ShareGPT turns, a slip (``Value``), or the text alone under another key (``text``), which would otherwise be
    called a missing value or dropped.

    >>> _check_sharegpt_keys({"from": "gpt", "text": "A"}, "conversations[1]")
    Traceback (most recent call last):
    ...
    dsft.data.formats.FormatProblem: conversations[1]: no 'value' field; the text under 'text' is not read: rename ...
    """
    if "from" not in turn and "role" in turn:  # the two conventions mixed in one list
        raise FormatProblem(f"{where}: a {{role, content}} turn in a ShareGPT list of {{from, value}} turns: write "
                            "every turn as {from, value}, or every one as {role, content}")
    slips = _resembling(turn, SHAREGPT_TURN_FIELDS)
    if slips:
        key, field = slips[0]
        raise FormatProblem(f"{where}: field {key!r} is not read; did you mean {field!r}?")
    if "value" not in turn:
        texts = [key for key, value in turn.items()
                 if key not in SHAREGPT_TURN_FIELDS and isinstance(value, str) and value]
        if texts:
            raise FormatProblem(f"{where}: no 'value' field; the text under {texts[0]!r} is not read: rename "
                                f"{texts[0]!r} to 'value'")


def _sharegpt_place(index: int, turn: dict[str, Any]) -> Place:
    """A ShareGPT turn: its text (answer, inline reasoning, a function call's JSON) is ``value``, its role ``from``."""
    where = f"conversations[{index}]"
    texts = tuple((key, f"{where}.value") for key in (".content", ".reasoning_content", ".reasoning", ".tool_calls"))
    answer = SHAREGPT_ROLES[turn["from"]] == "assistant" and turn["from"] != "function_call"
    # A function_call turn's value is the call's JSON, read into tool_calls[0].
    return Place(where, ((".tool_calls[0].function.name", f"{where}.value: function_call name"), *texts,
                         (".role", f"{where}.from")), shifts=_think_shifts(turn["value"]) if answer else ())


def _sharegpt_call(value: str, where: str) -> dict[str, Any]:
    try:
        call = json.loads(value)
    except json.JSONDecodeError:
        raise FormatProblem(f"{where}.value: function_call is not valid JSON") from None
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        raise FormatProblem(f"{where}.value: function_call needs a string name")
    arguments = call.get("arguments", {})
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments, ensure_ascii=False)
    return {"type": "function", "function": {"name": call["name"], "arguments": arguments}}


def from_alpaca(view: dict[str, Any]) -> Conversation:
    """Alpaca: user = instruction (+ blank line + input); optional system and ``history`` [[q, a], ...]."""
    instruction = _text(view["instruction"], "instruction")
    extra_input = _text(view.get("input"), "input", optional=True)
    messages: list[Message] = []
    places: list[Place] = []
    history = view.get("history") or []
    if not isinstance(history, list):
        raise FormatProblem(f"history is {_type_name(history)}, expected a list of [question, answer] pairs")
    for index, pair in enumerate(history):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            raise FormatProblem(f"history[{index}] is not a [question, answer] pair")
        messages += [Message("user", _text(pair[0], f"history[{index}][0]")), _assistant(_text(pair[1], f"history[{index}][1]"))]
        places += [_text_place(f"history[{index}][0]"), _text_place(f"history[{index}][1]", answer=pair[1])]
    if is_blank(extra_input):  # "input": " " is none
        user, user_place = instruction, _text_place("instruction")
    elif is_blank(instruction):  # the input alone is the question, not two newlines and it
        user, user_place = extra_input, _text_place("input")
    else:
        user, user_place = f"{instruction}\n\n{extra_input}", _joined_place("instruction", instruction, "input")
    messages += [Message("user", user), _assistant(_text(view["output"], "output"))]
    places += [user_place, _text_place("output", answer=view["output"])]
    return _opened(view, messages, places)


def _pair(view: dict[str, Any], user_key: str, answer_key: str, reasoning_key: str | None = None,
          user_place: Place | None = None) -> Conversation:
    reasoning = None
    if reasoning_key is not None and view.get(reasoning_key) is not None:
        reasoning = _text(view[reasoning_key], reasoning_key)
    answer = _assistant(_text(view[answer_key], answer_key), reasoning)
    places = [user_place or _text_place(user_key),
              _text_place(answer_key, reasoning_key, None) if reasoning is not None
              else _text_place(answer_key, answer=view[answer_key])]
    return _opened(view, [Message("user", _text(view[user_key], user_key)), answer], places)


def from_context_qa(view: dict[str, Any]) -> Conversation:
    """context/question/answer: the user turn is the context, a blank line, then the question."""
    context = _text(view.get("context"), "context", optional=True)
    question = _text(view["question"], "question")
    if is_blank(context):  # "context": " " is none
        return _pair(view, "question", "answer")
    if is_blank(question):  # the context alone is the prompt, not it and two newlines
        return _pair({**view, "question": context}, "question", "answer", user_place=_text_place("context"))
    return _pair({**view, "question": f"{context}\n\n{question}"}, "question", "answer",
                 user_place=_joined_place("context", context, "question"))


CONVERTERS: dict[str, Callable[[dict[str, Any]], Conversation]] = {
    "messages": from_messages,
    "conversations": from_conversations,
    "sharegpt": from_sharegpt,
    "alpaca": from_alpaca,
    "input_output": lambda view: _pair(view, "input", "output"),
    "context_qa": from_context_qa,
    "cot": lambda view: _pair(view, "Question", "Response", "Complex_CoT"),
    "prompt_completion": lambda view: _pair(view, "prompt", "completion"),
    # Continued pre-training: the whole text is one supervised assistant message, marked kind=text so
    # templates render it raw (no chat markers) and validation allows it without a user turn.
    "text": lambda view: Conversation([Message("assistant", _text(view["text"], "text"))], meta={"kind": "text"},
                                      where=(_text_place("text"),)),
}
