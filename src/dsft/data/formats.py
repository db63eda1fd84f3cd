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

from typing import Any

from dsft.data.conversation import Conversation
from dsft.data.format_converters import CONVERTERS, META_KEYS_SKIPPED, FormatProblem, resembling, type_name
from dsft.data.record_places import respelled, respelled_place, shared
from dsft.data.validate import find_bad_unicode

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
        raise FormatProblem(f"record is {type_name(record)}, expected a JSON object")
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
        raise FormatProblem(respelled(str(exc), spelled)) from None
    conversation.meta = {**_extra_meta(view, name), **conversation.meta}
    conversation.where = tuple(shared(respelled_place(place, spelled)) for place in conversation.where)
    conversation.turns_at = respelled(conversation.turns_at, spelled)
    return name, conversation


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

    A list of chat turns under a name no format reads is one conversation, not a list of records:

    >>> _unknown_format_hint({"conversation": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]})
    "it looks like format conversations with 'conversation' for 'conversations': rename it, or set data.columns: {conversations: conversation}"
    >>> _unknown_format_hint({"dialog": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]})
    "'dialog' holds a list of chat turns (from/value): name it 'conversations', or set data.columns: {conversations: dialog}"
    """
    for fmt, required in REQUIRED_FIELDS.items():
        slips = [(key, field) for key, field in resembling(view, FORMAT_FIELDS[fmt]) if field in required]
        if slips and all(field in view or field in {meant for _, meant in slips} for field in required):
            named = ", ".join(f"{key!r} for {field!r}" for key, field in slips)
            mapping = ", ".join(f"{field}: {key}" for key, field in slips)
            return (f"it looks like format {fmt} with {named}: rename {'them' if len(slips) > 1 else 'it'}, or set "
                    f"data.columns: {{{mapping}}}")
    for key, value in view.items():
        spelling = _turn_spelling(value)
        if spelling:
            return (f"{key!r} holds a list of chat turns ({spelling}): name it 'conversations', or set "
                    f"data.columns: {{conversations: {key}}}")
    lists = [key for key, value in view.items() if isinstance(value, list) and value
             and all(isinstance(item, dict) for item in value)]
    if lists and len(lists) == len(view):
        return (f"it holds lists of records (under {', '.join(map(str, lists))}), not one record: write each list to a "
                "file of its own (JSON lines, or a JSON array) and name them in data.train / data.val")
    return "set data.format and data.columns"


def _turn_spelling(value: Any) -> str:
    """``role/content`` or ``from/value`` when ``value`` is a list of chat turns spelt that way, else ''.

    >>> _turn_spelling([{"role": "user", "content": "Q"}]), _turn_spelling([{"text": "a"}])
    ('role/content', '')
    """
    if not isinstance(value, list) or not value or not all(isinstance(turn, dict) for turn in value):
        return ""
    for speaker, text in (("role", "content"), ("from", "value")):
        if all(speaker in turn and text in turn for turn in value):
            return f"{speaker}/{text}"
    return ""


def misnamed_fields(view: dict[str, Any], fmt: str) -> list[tuple[str, str]]:
    """``(key, field)`` for each field of ``fmt`` the record lacks while a key it does not read resembles it
    (the same name in another case, or a close spelling): a slip that would otherwise lose the field.

    >>> misnamed_fields({"Question": "Q", "Complex_COT": "t", "Response": "A", "domain": "x"}, "cot")
    [('Complex_COT', 'Complex_CoT')]
    """
    return resembling(view, FORMAT_FIELDS[fmt])



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
        meant = [field for key, field in resembling(view, fields) if key == canonical and field in missing]
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


