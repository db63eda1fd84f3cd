"""One converter per input format: a record's fields (renamed to the canonical names) -> a Conversation.

Each reads only the fields its format names, refuses a field it cannot read with :class:`FormatProblem` naming the
field, and records where each message it builds is in the record (:mod:`dsft.data.record_places`).
:mod:`dsft.data.formats` detects the format, applies ``data.columns`` and picks the converter.

>>> from_alpaca({"instruction": "Add", "input": "1+1", "output": "<think>1 and 1</think>2"}).messages[1].reasoning
'1 and 1'
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from dsft.config.spelling import meant_key
from dsft.data.conversation import ROLES, Conversation, Message, Place
from dsft.data.inline_think import split_inline_think
from dsft.data.record_places import joined_place, sharegpt_place, text_place, turn_place
from dsft.data.validate import is_blank

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



def resembling(mapping: dict[str, Any], fields: tuple[str, ...]) -> list[tuple[str, str]]:
    """``(key, field)`` for each of ``fields`` that ``mapping`` lacks while one of its unread keys is a slip of it, as
    a config key is of one (:func:`dsft.config.spelling.meant_key`; a change of case is no edit). A key that only
    shares letters with a field (``system_id``, ``prompt_id``) is no slip: it is the record's own metadata.

    >>> resembling({"instrution": "Q", "output": "A", "system_id": 3}, ("instruction", "input", "output", "system"))
    [('instrution', 'instruction')]
    """
    unread = [key for key in mapping if isinstance(key, str) and key not in fields and key not in META_KEYS_SKIPPED]
    slips = []
    for field in fields:
        if field in mapping:
            continue
        close = [key for key in unread if meant_key(key, fields, any_case=True) == field]
        if close:
            slips.append((close[0], field))
    return slips


def type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", type(None): "null", bool: "a boolean",
            int: "an integer", float: "a number"}.get(type(value), f"a {type(value).__name__}")


def _text(value: Any, where: str, optional: bool = False) -> str:
    """A string field; None allowed only when optional. Numbers are NOT silently stringified."""
    if value is None and optional:
        return ""
    if isinstance(value, str):
        return value
    raise FormatProblem(f"{where} is {type_name(value)}, expected a string")


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
    raise FormatProblem(f"{where} is {type_name(value)}, expected a string")


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
    return Conversation(system + messages, tools, where=(*[text_place("system")] * len(system), *places),
                        turns_at=turns_at)


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
        raise FormatProblem(f"messages is {type_name(raw_messages)}, expected a list")
    messages = [_openai_message(m, f"messages[{i}]") for i, m in enumerate(raw_messages)]
    places = [turn_place(f"messages[{i}]", turn) for i, turn in enumerate(raw_messages)]
    return _opened(view, messages, places, _tools(view))


def _openai_message(raw: Any, where: str) -> Message:
    if not isinstance(raw, dict):
        raise FormatProblem(f"{where} is {type_name(raw)}, expected an object")
    if "role" not in raw and "from" in raw:  # the two conventions mixed in one list
        raise FormatProblem(f"{where}: a ShareGPT {{from, value}} turn in a list of {{role, content}} turns: write "
                            "every turn as {role, content}, or every one as {from, value}")
    role = raw.get("role")
    if not isinstance(role, str) or role not in ROLES:
        known = isinstance(role, str) and role in SHAREGPT_ROLES  # a list or object role is unhashable
        sharegpt = f"; {role!r} is ShareGPT's name for {SHAREGPT_ROLES[role]!r}" if known else ""
        raise FormatProblem(f"{where}.role: unknown role {role!r} (expected one of {', '.join(ROLES)}{sharegpt})"
                            f"{_case_slip(role, ROLES)}")
    slips = resembling(raw, MESSAGE_FIELDS)
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
        raise FormatProblem(f"{where}.loss is {type_name(loss)}, expected true/false")
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
        raise FormatProblem(f"conversations is {type_name(turns)}, expected a list")
    messages = [_openai_message(t, f"conversations[{i}]") for i, t in enumerate(turns)]
    places = [turn_place(f"conversations[{i}]", turn) for i, turn in enumerate(turns)]
    return _opened(view, messages, places, _tools(view), "conversations")


def from_sharegpt(view: dict[str, Any]) -> Conversation:
    """ShareGPT ``conversations`` of ``{"from", "value"}`` (human/gpt/system/function_call/observation)."""
    turns = view["conversations"]
    if not isinstance(turns, list):
        raise FormatProblem(f"conversations is {type_name(turns)}, expected a list")
    messages: list[Message] = []
    places: list[Place] = []
    for index, turn in enumerate(turns):
        where = f"conversations[{index}]"
        if not isinstance(turn, dict):
            raise FormatProblem(f"{where} is {type_name(turn)}, expected an object")
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
        places.append(sharegpt_place(index, value, answer=role == "assistant" and speaker != "function_call"))
    return _opened(view, messages, places, _tools(view), "conversations")


def _check_sharegpt_keys(turn: dict[str, Any], where: str) -> None:
    """Refuse a turn whose speaker or text is under a key ShareGPT does not read: a ``{role, content}`` turn among
    ShareGPT turns, a slip (``Value``), or the text alone under another key (``text``), which would otherwise be
    called a missing value or dropped.

    >>> _check_sharegpt_keys({"from": "gpt", "text": "A"}, "conversations[1]")
    Traceback (most recent call last):
    ...
    dsft.data.format_converters.FormatProblem: conversations[1]: no 'value' field; the text under 'text' is not read: rename ...
    """
    if "from" not in turn and "role" in turn:  # the two conventions mixed in one list
        raise FormatProblem(f"{where}: a {{role, content}} turn in a ShareGPT list of {{from, value}} turns: write "
                            "every turn as {from, value}, or every one as {role, content}")
    slips = resembling(turn, SHAREGPT_TURN_FIELDS)
    if slips:
        key, field = slips[0]
        raise FormatProblem(f"{where}: field {key!r} is not read; did you mean {field!r}?")
    if "value" not in turn:
        texts = [key for key, value in turn.items()
                 if key not in SHAREGPT_TURN_FIELDS and isinstance(value, str) and value]
        if texts:
            raise FormatProblem(f"{where}: no 'value' field; the text under {texts[0]!r} is not read: rename "
                                f"{texts[0]!r} to 'value'")


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
        raise FormatProblem(f"history is {type_name(history)}, expected a list of [question, answer] pairs")
    for index, pair in enumerate(history):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            raise FormatProblem(f"history[{index}] is not a [question, answer] pair")
        messages += [Message("user", _text(pair[0], f"history[{index}][0]")), _assistant(_text(pair[1], f"history[{index}][1]"))]
        places += [text_place(f"history[{index}][0]"), text_place(f"history[{index}][1]", answer=pair[1])]
    if is_blank(extra_input):  # "input": " " is none
        user, user_place = instruction, text_place("instruction")
    elif is_blank(instruction):  # the input alone is the question, not two newlines and it
        user, user_place = extra_input, text_place("input")
    else:
        user, user_place = f"{instruction}\n\n{extra_input}", joined_place("instruction", instruction, "input")
    messages += [Message("user", user), _assistant(_text(view["output"], "output"))]
    places += [user_place, text_place("output", answer=view["output"])]
    return _opened(view, messages, places)


def _pair(view: dict[str, Any], user_key: str, answer_key: str, reasoning_key: str | None = None,
          user_place: Place | None = None) -> Conversation:
    reasoning = None
    if reasoning_key is not None and view.get(reasoning_key) is not None:
        reasoning = _text(view[reasoning_key], reasoning_key)
    answer = _assistant(_text(view[answer_key], answer_key), reasoning)
    places = [user_place or text_place(user_key),
              text_place(answer_key, reasoning_key, None) if reasoning is not None
              else text_place(answer_key, answer=view[answer_key])]
    return _opened(view, [Message("user", _text(view[user_key], user_key)), answer], places)


def from_context_qa(view: dict[str, Any]) -> Conversation:
    """context/question/answer: the user turn is the context, a blank line, then the question."""
    context = _text(view.get("context"), "context", optional=True)
    question = _text(view["question"], "question")
    if is_blank(context):  # "context": " " is none
        return _pair(view, "question", "answer")
    if is_blank(question):  # the context alone is the prompt, not it and two newlines
        return _pair({**view, "question": context}, "question", "answer", user_place=text_place("context"))
    return _pair({**view, "question": f"{context}\n\n{question}"}, "question", "answer",
                 user_place=joined_place("context", context, "question"))


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
                                      where=(text_place("text"),)),
}
