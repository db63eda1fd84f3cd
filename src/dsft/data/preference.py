"""Preference and RL records: DPO/ORPO pairs, KTO labelled completions, GRPO prompts.

Every accepted form normalises to one :class:`PreferenceRecord`: a ``prompt`` (the context messages, ending
with a user or tool turn) plus, by kind,

* ``pair`` (DPO, ORPO): a ``chosen`` and a ``rejected`` assistant message;
* ``labeled`` (KTO): one ``completion`` and a ``label`` (true = desirable);
* ``prompt`` (GRPO): no completion; optional ``references`` (``answer``, ``solution``) for verifiable rewards.

Input forms (detected per record; ``data.columns`` renames fields first):

* ``{"prompt" | "messages": [...], "chosen": ..., "rejected": ...}``: OpenAI messages (a prompt may also be
  a string: one user turn). A side is a string, an assistant message ``{"role", "content",
  "reasoning_content"?}`` or a list holding exactly one; a ``<think>…</think>`` block in content is split
  into reasoning as for SFT data.
* ``{"chosen": [whole conversation], "rejected": [whole conversation]}`` (implicit prompt): the shared
  leading messages are the prompt.
* ShareGPT pairs: ``{"conversations": [{"from", "value"}...], "chosen": {"from": "gpt", "value"}, "rejected": ...}``.
* KTO: ``{"prompt" | "messages", "completion", "label": bool}``, or ``{"messages": [... assistant], "kto_tag": bool}``.
  A label may also be written as a spreadsheet writes it (``TRUE``, ``no``, ``1``: :func:`read_label`).
* GRPO: ``{"prompt" | "messages" | "question" | "problem", "answer"?, "solution"?}``.

Each record is validated with the SFT rules (:func:`dsft.data.validate.validate_conversation`) on
prompt + completion, so the same think-tag, role-order and encoding problems are rejected with the same words.

>>> parse_preference({"prompt": "2+2?", "chosen": "4", "rejected": "5"}, "pair").chosen.content
'4'
>>> parse_preference({"prompt": "2+2?", "chosen": "4", "rejected": "4"}, "pair")
Traceback (most recent call last):
...
dsft.data.preference.PreferenceProblem: chosen and rejected are identical: nothing to prefer
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from dsft.data.clean import dedup_key
from dsft.data.control_tokens import control_token_problems
from dsft.data.conversation import Conversation, Message
from dsft.data.formats import SHAREGPT_ROLES, FormatProblem, apply_columns, from_messages, split_inline_think
from dsft.data.validate import find_bad_unicode, validate_conversation

Kind = Literal["pair", "labeled", "prompt"]
# Which record kind each training objective consumes.
OBJECTIVE_KINDS: dict[str, Kind] = {"dpo": "pair", "orpo": "pair", "kto": "labeled", "grpo": "prompt"}
REFERENCE_FIELDS = ("answer", "solution")
PROMPT_FIELDS = ("prompt", "messages", "conversations", "question", "problem")
SIDES = ("chosen", "rejected", "completion")  # the completion fields of a record, in the order they are kept
_USED = {*PROMPT_FIELDS, "chosen", "rejected", "completion", "label", "kto_tag", "system", "tools", "meta",
         *REFERENCE_FIELDS}


class PreferenceProblem(ValueError):
    """A record that cannot become a preference record; the message names the field."""


@dataclass
class PreferenceRecord:
    """A prompt and, by kind, two ranked completions, one labelled completion, or references only."""

    kind: Kind
    prompt: list[Message]
    chosen: Message | None = None
    rejected: Message | None = None
    completion: Message | None = None
    label: bool | None = None
    references: dict[str, str] = field(default_factory=dict)
    tools: list[dict[str, Any]] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    # Where each message of texts() is in the record as written (``system``, ``messages[1]``, ``chosen``), for
    # naming a problem there; empty: the canonical form's (``prompt[i]``, then each side by its name).
    where: tuple[str, ...] = field(default=(), compare=False, repr=False)

    def conversation(self, completion: Message | None = None) -> Conversation:
        """The prompt followed by ``completion`` (loss flags cleared: the objective decides what is trained)."""
        messages = [replace(m, loss=None) for m in self.prompt]
        if completion is not None:
            messages.append(replace(completion, loss=None))
        return Conversation(messages, self.tools, dict(self.meta))

    def completions(self) -> list[Message]:
        return [m for m in (self.chosen, self.rejected, self.completion) if m is not None]

    def texts(self) -> Conversation:
        """The prompt then every completion as one conversation: what text rewrites read (see :meth:`with_texts`)."""
        return Conversation([*self.prompt, *self.completions()], self.tools, dict(self.meta))

    def locations(self) -> list[str]:
        """Where each message of :meth:`texts` is in the record as it was written.

        >>> PreferenceRecord("pair", [Message("user", "q")], chosen=Message("assistant", "a"),
        ...                  rejected=Message("assistant", "b")).locations()
        ['prompt[0]', 'chosen', 'rejected']
        """
        sides = [name for name in SIDES if getattr(self, name) is not None]
        if len(self.where) == len(self.prompt) + len(sides):
            return list(self.where)
        return [f"prompt[{i}]" for i in range(len(self.prompt))] + sides

    def named(self, problem: str) -> str:
        """``problem`` (about :meth:`texts`) with its ``messages[i]`` written where that message is in the record.

        >>> PreferenceRecord("pair", [Message("user", "q")], chosen=Message("assistant", "a"),
        ...                  rejected=Message("assistant", "b")).named("messages[2] empty after Unicode normalisation")
        'rejected empty after Unicode normalisation'
        """
        return located(problem, self.locations())

    def with_texts(self, rewritten: Conversation) -> "PreferenceRecord":
        """A copy whose prompt and completions are the messages of ``rewritten``, a rewrite of :meth:`texts`."""
        messages = iter(rewritten.messages[len(self.prompt):])
        sides = {name: next(messages) for name in SIDES if getattr(self, name) is not None}
        return replace(self, prompt=list(rewritten.messages[:len(self.prompt)]), meta=dict(self.meta), **sides)

    def to_dict(self) -> dict[str, Any]:
        """The canonical JSON form; :func:`parse_preference` reads it back unchanged."""
        out: dict[str, Any] = {"prompt": [m.to_openai() for m in self.prompt]}
        for name in ("chosen", "rejected", "completion"):
            message = getattr(self, name)
            if message is not None:
                out[name] = [message.to_openai()]
        if self.label is not None:
            out["label"] = self.label
        out.update(self.references)
        if self.tools:
            out["tools"] = self.tools
        if self.meta:
            out["meta"] = self.meta
        return out


def parse_preference(record: Any, kind: Kind, columns: dict[str, str] | None = None) -> PreferenceRecord:
    """One raw record -> a validated :class:`PreferenceRecord` of ``kind``; :class:`PreferenceProblem` otherwise.

    KTO (``labeled``) also accepts a pair: parse it with :func:`split_pair_for_kto` instead.
    """
    return _parse(record, kind, columns, labelled=False)


def _parse(record: Any, kind: Kind, columns: dict[str, str] | None, labelled: bool) -> PreferenceRecord:
    """:func:`parse_preference`; ``labelled``: a pair read as KTO data, which its refusals say."""
    if not isinstance(record, dict):
        raise PreferenceProblem(f"record is {type(record).__name__}, expected a JSON object")
    view = _rename(record, columns or {})
    spelled = {canonical: column for canonical, column in (columns or {}).items()}
    tools = _tools(view)
    if kind == "pair":
        prompt, chosen, rejected, where = _pair_parts(view, spelled)
        problem = same_sides_problem(chosen, rejected, labelled)
        if problem:
            raise PreferenceProblem(problem)
        parsed = PreferenceRecord("pair", prompt, chosen=chosen, rejected=rejected, tools=tools, where=where)
    elif kind == "labeled":
        parsed = _labeled(view, tools, spelled)
    else:
        prompt, where = _prompt(view, spelled)
        parsed = PreferenceRecord("prompt", prompt, references=_references(view), tools=tools, where=tuple(where))
    parsed.meta = _meta(view)
    problems = validate_record(parsed)
    if problems:
        raise PreferenceProblem("; ".join(problems))
    return parsed


def split_pair_for_kto(record: Any, columns: dict[str, str] | None = None) -> list[PreferenceRecord]:
    """A pair as KTO data: its chosen side labelled desirable, its rejected side undesirable."""
    pair = _parse(record, "pair", columns, labelled=True)
    *prompt_where, chosen_where, rejected_where = pair.locations()
    return [
        PreferenceRecord("labeled", pair.prompt, completion=side, label=label, tools=pair.tools, meta=dict(pair.meta),
                         where=(*prompt_where, side_where))
        for side, label, side_where in ((pair.chosen, True, chosen_where), (pair.rejected, False, rejected_where))
    ]


# What a pair whose sides are the same would teach: as DPO/ORPO data, read as KTO data (``labelled``).
_SAME_SIDES_LESSON = {False: "nothing to prefer", True: "the same text marked desirable and undesirable"}


def same_sides_problem(first: Message, second: Message, labelled: bool, after: str | None = None,
                       as_text: bool = False) -> str | None:
    """Why a pair's two sides (chosen, rejected; read as KTO data, ``labelled``: its desirable and its undesirable
    completion) teach nothing, else None. The one owner of "chosen and rejected are the same", and of its words,
    wherever it is found: when read, after a text rewrite (``after``: the step's name), or by deduplication.

    Identical in every field, or, with ``as_text``, the same text as deduplication compares it
    (:func:`dsft.data.clean.dedup_key`: only case, Unicode form or whitespace differ).

    >>> rome, lower = Message("assistant", "Rome"), Message("assistant", "rome")
    >>> same_sides_problem(rome, rome, labelled=False)
    'chosen and rejected are identical: nothing to prefer'
    >>> same_sides_problem(rome, rome, labelled=True, after="normalize_unicode")
    'chosen and rejected are identical after normalize_unicode: the same text marked desirable and undesirable'
    >>> same_sides_problem(rome, lower, labelled=False) is None
    True
    >>> same_sides_problem(rome, lower, labelled=False, as_text=True)
    'chosen and rejected differ only in case, Unicode form or whitespace: nothing to prefer'
    """
    if same_message(first, second):
        how = "are identical" + (f" after {after}" if after else "")
    elif as_text and dedup_key(Conversation([first])) == dedup_key(Conversation([second])):
        how = "differ only in case, Unicode form or whitespace"
    else:
        return None
    return f"chosen and rejected {how}: {_SAME_SIDES_LESSON[labelled]}"


def is_pair(record: Any) -> bool:
    return isinstance(record, dict) and "chosen" in record and "rejected" in record


def validate_record(record: PreferenceRecord) -> list[str]:
    """Every problem of a normalised record; prompt + each completion must pass the SFT validation. Each is named
    where it is in the record as written (:meth:`PreferenceRecord.locations`): a completion's by its side, the
    prompt's by its message (``messages[1]``, ``system``), once, and ``meta``'s once.

    >>> validate_record(PreferenceRecord("pair", [Message("user", "q")], chosen=Message("assistant", "a"),
    ...                                  rejected=Message("assistant", "<think>b"), meta={"source": "x\\udcc8"}))
    ['meta.source: not valid UTF-8 (byte 0xC8 at character 1)', 'rejected.content: unclosed <think> block']
    """
    if not record.prompt:
        return ["prompt: no messages"]
    last = record.prompt[-1].role
    if last not in ("user", "tool"):
        return [f"prompt: must end with a user (or tool) turn, got {last}"]
    if record.kind == "prompt":
        probe = Conversation([*record.prompt, Message("assistant", "x")], record.tools, dict(record.meta))
        return [located(p, record.locations()) for p in validate_conversation(probe)
                if not p.startswith(f"messages[{len(record.prompt)}]")]
    return _side_problems(record, validate_conversation)


def control_token_problems_of(record: PreferenceRecord, pattern: re.Pattern[str] | None) -> list[str]:
    """The SFT control-token check (:func:`dsft.data.control_tokens.control_token_problems`) on the prompt and each
    completion, a completion's problems named by its side (``chosen.content: holds ...``)."""
    return _side_problems(record, lambda conversation: control_token_problems(conversation, pattern))


def _side_problems(record: PreferenceRecord, check: Callable[[Conversation], list[str]]) -> list[str]:
    """``check`` on prompt + each completion (the prompt alone for a GRPO prompt), each ``messages[i]`` renamed to
    where that message is in the record (a completion: its side); a problem of the prompt or of ``meta`` is named
    where it is, once, not under each side."""
    locations = record.locations()
    prompt_locations = locations[:len(record.prompt)]
    if record.kind == "prompt":
        return [located(problem, prompt_locations) for problem in check(record.conversation())]
    sides = iter(locations[len(record.prompt):])
    problems: list[str] = []
    for name in SIDES:
        message = getattr(record, name)
        if message is None:
            continue
        names = [*prompt_locations, next(sides)]
        problems += [located(problem, names) for problem in check(record.conversation(message))]
    return list(dict.fromkeys(problems))


_MESSAGE_AT = re.compile(r"messages\[(\d+)\]")


def located(problem: str, locations: list[str]) -> str:
    """``problem`` (about a conversation, opening ``messages[i]``) with ``messages[i]`` written as ``locations[i]``.

    >>> located("messages[1].content: unclosed <think> block", ["system", "messages[0]"])
    'messages[0].content: unclosed <think> block'
    >>> located("meta.source: not valid UTF-8", ["prompt"])
    'meta.source: not valid UTF-8'
    """
    match = _MESSAGE_AT.match(problem)
    if match is None or int(match.group(1)) >= len(locations):
        return problem
    return locations[int(match.group(1))] + problem[match.end():]


# ---------------------------------------------------------------------------------------------- parsing


def _rename(record: dict[str, Any], columns: dict[str, str]) -> dict[str, Any]:
    try:
        return apply_columns(record, columns)
    except FormatProblem as exc:
        raise PreferenceProblem(str(exc)) from None


def _messages(value: Any, where: str) -> list[Message]:
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


def _places(value: Any, name: str) -> list[str]:
    """Where each message :func:`_messages` read from ``value`` (the field ``name``) is: a string or a single
    message is the field itself, a list's item ``name[i]``."""
    return [f"{name}[{i}]" for i in range(len(value))] if isinstance(value, list) else [name]


def _from_sharegpt(turn: Any, where: str) -> dict[str, Any]:
    if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
        raise PreferenceProblem(f"{where}: expected {{'from', 'value'}} with a string value")
    role = SHAREGPT_ROLES.get(turn.get("from"))  # type: ignore[arg-type]
    if role is None:
        raise PreferenceProblem(f"{where}.from: unknown role {turn.get('from')!r}")
    return {"role": role, "content": turn["value"]}


def _side(value: Any, where: str) -> Message:
    """One completion: a string, an assistant message, or a list holding exactly one."""
    if isinstance(value, str):
        reasoning, content = split_inline_think(value)
        return Message("assistant", content, reasoning=reasoning)
    messages = _messages(value, where)
    if len(messages) != 1 or messages[0].role != "assistant":
        roles = ", ".join(m.role for m in messages) or "none"
        raise PreferenceProblem(f"{where}: expected exactly one assistant message, got {roles}")
    return messages[0]


def _system(view: dict[str, Any]) -> list[Message]:
    system = view.get("system")
    if system is None or system == "":
        return []
    if not isinstance(system, str):
        raise PreferenceProblem("system: expected a string")
    return [Message("system", system)]


def _prompt(view: dict[str, Any], spelled: dict[str, str]) -> tuple[list[Message], list[str]]:
    """The prompt's messages and where each is in the record (``spelled``: a field's name as the record writes it)."""
    name = next((f for f in PROMPT_FIELDS if f in view), None)
    if name is None:
        raise PreferenceProblem(f"no prompt: expected one of the fields {', '.join(PROMPT_FIELDS)}")
    messages = _messages(view[name], name)
    places = _places(view[name], spelled.get(name, name))
    if messages and messages[0].role == "system":
        return messages, places
    system = _system(view)
    return system + messages, [spelled.get("system", "system")] * len(system) + places


def _pair_parts(view: dict[str, Any],
                spelled: dict[str, str]) -> tuple[list[Message], Message, Message, tuple[str, ...]]:
    """Prompt, chosen, rejected, and where each of those messages is in the record."""
    missing = [f for f in ("chosen", "rejected") if f not in view]
    if missing:
        raise PreferenceProblem(f"pair: missing field(s) {', '.join(missing)}")
    chosen_name, rejected_name = spelled.get("chosen", "chosen"), spelled.get("rejected", "rejected")
    if any(f in view for f in PROMPT_FIELDS):
        prompt, places = _prompt(view, spelled)
        return (prompt, _side(view["chosen"], "chosen"), _side(view["rejected"], "rejected"),
                (*places, chosen_name, rejected_name))
    # Implicit prompt (TRL's form): both sides are whole conversations sharing their leading messages.
    chosen, rejected = _messages(view["chosen"], "chosen"), _messages(view["rejected"], "rejected")
    shared = 0
    while shared < min(len(chosen), len(rejected)) - 1 and same_message(chosen[shared], rejected[shared]):
        shared += 1
    if shared == 0:
        raise PreferenceProblem("pair: no prompt field and chosen/rejected share no leading messages")
    tail_c, tail_r = chosen[shared:], rejected[shared:]
    if len(tail_c) != 1 or len(tail_r) != 1 or tail_c[0].role != "assistant" or tail_r[0].role != "assistant":
        raise PreferenceProblem("pair: chosen and rejected must differ only in their final assistant message")
    system = _system(view)
    places = [spelled.get("system", "system")] * len(system) + _places(view["chosen"], chosen_name)[:shared]
    return (system + chosen[:shared], tail_c[0], tail_r[0],
            (*places, f"{chosen_name}[{shared}]", f"{rejected_name}[{shared}]"))


def _labeled(view: dict[str, Any], tools: list[dict[str, Any]] | None, spelled: dict[str, str]) -> PreferenceRecord:
    label_field = "label" if "label" in view else "kto_tag" if "kto_tag" in view else None
    if label_field is None:
        raise PreferenceProblem("labeled completion: missing field label (true = desirable, false = undesirable)")
    label = read_label(view[label_field], label_field)
    messages, places = _prompt(view, spelled)
    if "completion" in view:
        prompt, completion = messages, _side(view["completion"], "completion")
        places.append(spelled.get("completion", "completion"))
    else:
        if not messages or messages[-1].role != "assistant":
            raise PreferenceProblem("labeled completion: no completion field and the messages do not end with an "
                                    "assistant turn")
        prompt, completion = messages[:-1], messages[-1]
    return PreferenceRecord("labeled", prompt, completion=completion, label=label, tools=tools, where=tuple(places))


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
    dsft.data.preference.PreferenceProblem: label: expected true or false (any case), yes or no, 1 or 0; got "maybe"

    Undecodable bytes (a cell of a GBK file) are said as in any other field, not quoted as what they became:

    >>> read_label("\\udcca\\udcc7")
    Traceback (most recent call last):
    ...
    dsft.data.preference.PreferenceProblem: label: not valid UTF-8 (byte 0xCA at character 0); it reads as GBK/GB18030 \
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


def _references(view: dict[str, Any]) -> dict[str, str]:
    out = {}
    for name in REFERENCE_FIELDS:
        value = view.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise PreferenceProblem(f"{name}: expected a string or a number")
        out[name] = value if isinstance(value, str) else str(value)
    return out


def _tools(view: dict[str, Any]) -> list[dict[str, Any]] | None:
    tools = view.get("tools")
    if isinstance(tools, str):
        try:
            tools = json.loads(tools) if tools.strip() else None
        except json.JSONDecodeError:
            raise PreferenceProblem("tools is a string but not valid JSON") from None
    if tools is not None and not (isinstance(tools, list) and all(isinstance(t, dict) for t in tools)):
        raise PreferenceProblem("tools must be a list of objects")
    return tools or None


def _meta(view: dict[str, Any]) -> dict[str, Any]:
    scalar = (str, int, float, bool, type(None))
    meta = {str(k): v for k, v in (view.get("meta") or {}).items() if isinstance(v, scalar)} \
        if isinstance(view.get("meta"), dict) else {}
    meta.update({str(k): v for k, v in view.items() if k not in _USED and isinstance(v, scalar)})
    return meta


def same_message(a: Message, b: Message) -> bool:
    """Whether two messages are the same in every field."""
    return a.to_openai() == b.to_openai()
