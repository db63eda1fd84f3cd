"""Reading the fields of one raw preference record: its prompt, a completion side, a KTO label, GRPO references,
tools and meta. Each reader takes a field as the record holds it (after ``data.columns`` renamed it) and returns it
in dsft's form, or raises :class:`PreferenceProblem` naming the field as the record writes it (:func:`written`);
:mod:`dsft.data.preference` builds records from them.

A prompt read from a file whose column ``ask`` ``data.columns`` renamed to ``prompt``, named where it is there:

>>> messages, places = read_prompt({"system": "Be brief.", "prompt": "2+2?"}, {"prompt": "ask"})
>>> [(m.role, m.content) for m in messages], places
([('system', 'Be brief.'), ('user', '2+2?')], ['system', 'ask'])
>>> read_side({"role": "assistant", "content": "<think>add</think>4"}, "chosen").reasoning
'add'
>>> read_side([{"role": "user", "content": "q"}], "rejected")
Traceback (most recent call last):
...
dsft.data.preference_fields.PreferenceProblem: rejected: expected exactly one assistant message, got user
"""

from __future__ import annotations

import json
from typing import Any

from dsft.data.conversation import Message
from dsft.data.format_converters import SHAREGPT_ROLES, FormatProblem, from_messages
from dsft.data.formats import apply_columns
from dsft.data.inline_think import split_inline_think
from dsft.data.validate import find_bad_unicode

REFERENCE_FIELDS = ("answer", "solution")
PROMPT_FIELDS = ("prompt", "messages", "conversations", "question", "problem")
# Every field a preference record's readers take; any other scalar field is kept as meta (see read_meta).
FIELDS_READ = {*PROMPT_FIELDS, "chosen", "rejected", "completion", "label", "kto_tag", "system", "tools", "meta",
         *REFERENCE_FIELDS}


class PreferenceProblem(ValueError):
    """A record that cannot become a preference record: its ``problems``, each naming its field (a rejection lists
    them as SFT data's does, so the summary counts each); the message says them all, joined by ``; ``.

    >>> problem = PreferenceProblem("prompt: no messages", 'label: expected 1 or 0; got "maybe"')
    >>> problem.problems
    ['prompt: no messages', 'label: expected 1 or 0; got "maybe"']
    >>> str(problem)
    'prompt: no messages; label: expected 1 or 0; got "maybe"'
    """

    def __init__(self, *problems: str) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


def written(spelled: dict[str, str], name: str) -> str:
    """dsft's field ``name`` as the record writes it (``spelled``: ``data.columns``, dsft's name -> the record's), the
    name a problem of that field is said under.

    >>> written({"chosen": "good"}, "chosen"), written({"chosen": "good"}, "rejected")
    ('good', 'rejected')
    """
    return spelled.get(name, name)


def renamed(record: dict[str, Any], columns: dict[str, str]) -> dict[str, Any]:
    """``record`` with its columns renamed by ``data.columns`` (``columns``: dsft's name -> the record's)."""
    try:
        return apply_columns(record, columns)
    except FormatProblem as exc:
        raise PreferenceProblem(str(exc)) from None


def read_messages(value: Any, where: str) -> list[Message]:
    """OpenAI messages (a string is one user turn; ShareGPT ``from``/``value`` turns are accepted too)."""
    if isinstance(value, str):
        return [Message("user", value)]
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise PreferenceProblem(f"{where}: expected a string or a list of messages")
    if value and isinstance(value[0], dict) and "from" in value[0]:
        value = [_from_sharegpt(turn, f"{where}[{i}]") for i, turn in enumerate(value)]
    try:
        return from_messages({"messages": value}).messages
    except FormatProblem as exc:
        raise PreferenceProblem(str(exc).replace("messages", where, 1)) from None


def message_places(value: Any, name: str) -> list[str]:
    """Where each message :func:`read_messages` read from ``value`` (the field ``name``) is: a string or a single
    message is the field itself, a list's item ``name[i]``."""
    return [f"{name}[{i}]" for i in range(len(value))] if isinstance(value, list) else [name]


def _from_sharegpt(turn: Any, where: str) -> dict[str, Any]:
    if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
        raise PreferenceProblem(f"{where}: expected {{'from', 'value'}} with a string value")
    role = SHAREGPT_ROLES.get(turn.get("from"))  # type: ignore[arg-type]
    if role is None:
        raise PreferenceProblem(f"{where}.from: unknown role {turn.get('from')!r}")
    return {"role": role, "content": turn["value"]}


def read_side(value: Any, where: str) -> Message:
    """One completion: a string, an assistant message, or a list holding exactly one."""
    if isinstance(value, str):
        reasoning, content = split_inline_think(value)
        return Message("assistant", content, reasoning=reasoning)
    messages = read_messages(value, where)
    if len(messages) != 1 or messages[0].role != "assistant":
        roles = ", ".join(m.role for m in messages) or "none"
        raise PreferenceProblem(f"{where}: expected exactly one assistant message, got {roles}")
    return messages[0]


def read_system(view: dict[str, Any], spelled: dict[str, str]) -> list[Message]:
    """A separate ``system`` field as the prompt's first message; none if absent or empty."""
    system = view.get("system")
    if system is None or system == "":
        return []
    if not isinstance(system, str):
        raise PreferenceProblem(f"{written(spelled, 'system')}: expected a string")
    return [Message("system", system)]


def read_prompt(view: dict[str, Any], spelled: dict[str, str]) -> tuple[list[Message], list[str]]:
    """The prompt's messages and where each is in the record (``spelled``: a field's name as the record writes it)."""
    name = next((f for f in PROMPT_FIELDS if f in view), None)
    if name is None:
        raise PreferenceProblem(f"no prompt: expected one of the fields {', '.join(PROMPT_FIELDS)}")
    messages = read_messages(view[name], written(spelled, name))
    places = message_places(view[name], written(spelled, name))
    if messages and messages[0].role == "system":
        return messages, places
    system = read_system(view, spelled)
    return system + messages, [written(spelled, "system")] * len(system) + places


# A KTO label as written in a spreadsheet cell (CSV text arrives as strings) or by a tool that wrote one: any case,
# spaces around ignored. "1"/"0" and yes/no have one meaning as a label; anything else (t/f, "desirable", 2) is
# refused rather than guessed.
_LABEL_WORDS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
LABEL_SPELLINGS = "true or false (any case), yes or no, 1 or 0"


def read_label(value: Any, where: str = "label") -> bool:
    """A KTO label (true = desirable) from a boolean, the integer 1 or 0, or a string spelling one of them
    (:data:`LABEL_SPELLINGS`): the same whatever format carries it, so a CSV cell ``TRUE``, a JSON ``"true"`` and a
    JSON ``true`` are one label; :class:`PreferenceProblem` naming the accepted spellings otherwise.

    >>> read_label(True), read_label("FALSE"), read_label(" yes "), read_label("0"), read_label(1)
    (True, False, True, False, True)
    >>> read_label("maybe")
    Traceback (most recent call last):
    ...
    dsft.data.preference_fields.PreferenceProblem: label: expected true or false (any case), yes or no, 1 or 0; \
got "maybe"

    Undecodable bytes (a cell of a GBK file) are said as in any other field, not quoted as what they became:

    >>> read_label("\\udcca\\udcc7")
    Traceback (most recent call last):
    ...
    dsft.data.preference_fields.PreferenceProblem: label: not valid UTF-8 (byte 0xCA at character 0); it reads as GBK/GB18030 \
Chinese: save the file as UTF-8 (e.g. iconv -f GB18030 -t UTF-8 IN > OUT)
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _LABEL_WORDS:
        return _LABEL_WORDS[value.strip().lower()]
    undecodable = find_bad_unicode(value) if isinstance(value, str) else None
    if undecodable:
        raise PreferenceProblem(f"{where}: {undecodable}")
    written = json.dumps(value, ensure_ascii=False, default=str)
    raise PreferenceProblem(f"{where}: expected {LABEL_SPELLINGS}; got {written}")


def read_references(view: dict[str, Any], spelled: dict[str, str]) -> dict[str, str]:
    """A GRPO prompt's references for verifiable rewards (:data:`REFERENCE_FIELDS`), each as a string."""
    out = {}
    for name in REFERENCE_FIELDS:
        value = view.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise PreferenceProblem(f"{written(spelled, name)}: expected a string or a number")
        out[name] = value if isinstance(value, str) else str(value)
    return out


def read_tools(view: dict[str, Any], spelled: dict[str, str]) -> list[dict[str, Any]] | None:
    """The tool schemas offered with the prompt: a list of objects, or that list as a JSON string (a CSV cell)."""
    tools = view.get("tools")
    if isinstance(tools, str):
        try:
            tools = json.loads(tools) if tools.strip() else None
        except json.JSONDecodeError:
            raise PreferenceProblem(f"{written(spelled, 'tools')} is a string but not valid JSON") from None
    if tools is not None and not (isinstance(tools, list) and all(isinstance(t, dict) for t in tools)):
        raise PreferenceProblem(f"{written(spelled, 'tools')} must be a list of objects")
    return tools or None


def read_meta(view: dict[str, Any]) -> dict[str, Any]:
    """The scalar fields of ``meta`` and every scalar field no reader takes (a CSV's extra column)."""
    scalar = (str, int, float, bool, type(None))
    meta = {str(k): v for k, v in (view.get("meta") or {}).items() if isinstance(v, scalar)} \
        if isinstance(view.get("meta"), dict) else {}
    meta.update({str(k): v for k, v in view.items() if k not in FIELDS_READ and isinstance(v, scalar)})
    return meta

