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
  A label may also be written as a spreadsheet writes it (``TRUE``, ``no``, ``1``:
  :func:`dsft.data.preference_fields.read_label`).
* GRPO: ``{"prompt" | "messages" | "question" | "problem", "answer"?, "solution"?}``.

Each record is validated with the SFT rules (:func:`dsft.data.validate.validate_conversation`) on
prompt + completion, so the same think-tag, role-order and encoding problems are rejected with the same words.

>>> parse_preference({"prompt": "2+2?", "chosen": "4", "rejected": "5"}, "pair").chosen.content
'4'
>>> parse_preference({"prompt": "2+2?", "chosen": "4", "rejected": "4"}, "pair")
Traceback (most recent call last):
...
dsft.data.preference_fields.PreferenceProblem: chosen and rejected are identical: nothing to prefer
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from dsft.data.clean import dedup_key
from dsft.data.control_tokens import control_token_problems
from dsft.data.conversation import Conversation, Message, located
from dsft.data.preference_fields import (
    PROMPT_FIELDS, PreferenceProblem, message_places, read_label, read_messages, read_meta, read_prompt,
    read_references, read_side, read_system, read_tools, renamed, written,
)
from dsft.data.validate import validate_conversation

Kind = Literal["pair", "labeled", "prompt"]
# Which record kind each training objective consumes.
OBJECTIVE_KINDS: dict[str, Kind] = {"dpo": "pair", "orpo": "pair", "kto": "labeled", "grpo": "prompt"}
SIDES = ("chosen", "rejected", "completion")  # the completion fields of a record, in the order they are kept


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

    def side_locations(self) -> list[str]:
        """Where each completion (:data:`SIDES` order) is in the record as written: ``good`` for a ``chosen`` that
        ``data.columns`` renamed from ``good``, ``chosen[1]`` for the last turn of TRL's implicit prompt form.

        >>> PreferenceRecord("pair", [Message("user", "q")], chosen=Message("assistant", "a"),
        ...                  rejected=Message("assistant", "b"), where=("ask", "good", "bad")).side_locations()
        ['good', 'bad']
        """
        return self.locations()[len(self.prompt):]

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
    view = renamed(record, columns or {})
    spelled = dict(columns or {})  # dsft's name of a field -> the record's, which its problems are said under
    tools = read_tools(view, spelled)
    # A label or a reference is read beside the conversation: its problem is said after the conversation's (a row
    # reads prompt, completion, label), not instead of them, so one refusal names everything to fix in the row.
    later: list[str] = []
    if kind == "pair":
        prompt, chosen, rejected, where = _pair_parts(view, spelled)
        parsed = PreferenceRecord("pair", prompt, chosen=chosen, rejected=rejected, tools=tools, where=where)
        problem = same_sides_problem(chosen, rejected, labelled, names=parsed.side_locations())
        if problem:
            raise PreferenceProblem(problem)
    elif kind == "labeled":
        label, later = _or_problem(lambda: _label(view, spelled))
        parsed = _labeled(view, tools, spelled, label, later)
    else:
        references, later = _or_problem(lambda: read_references(view, spelled))
        [(prompt, where)] = _read_all([lambda: read_prompt(view, spelled)], later)
        parsed = PreferenceRecord("prompt", prompt, references=references or {}, tools=tools, where=tuple(where))
    parsed.meta = read_meta(view)
    problems = validate_record(parsed) + later
    if problems:
        raise PreferenceProblem(*problems)
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
                       as_text: bool = False, names: Sequence[str] = ("chosen", "rejected")) -> str | None:
    """Why a pair's two sides (chosen, rejected; read as KTO data, ``labelled``: its desirable and its undesirable
    completion) teach nothing, else None. The one owner of "chosen and rejected are the same", and of its words,
    wherever it is found: when read, after a text rewrite (``after``: the step's name), or by deduplication. The sides
    are said by ``names``, where they are in the record as written (:meth:`PreferenceRecord.side_locations`: the
    file's own names where ``data.columns`` renames them).

    Identical in every field, or, with ``as_text``, the same text as deduplication compares it
    (:func:`dsft.data.clean.dedup_key`: only case, Unicode form or whitespace differ).

    >>> rome, lower = Message("assistant", "Rome"), Message("assistant", "rome")
    >>> same_sides_problem(rome, rome, labelled=False)
    'chosen and rejected are identical: nothing to prefer'
    >>> same_sides_problem(rome, rome, labelled=True, after="normalize_unicode")
    'chosen and rejected are identical after normalize_unicode: the same text marked desirable and undesirable'
    >>> same_sides_problem(rome, lower, labelled=False) is None
    True
    >>> same_sides_problem(rome, lower, labelled=False, as_text=True, names=("good", "bad"))
    'good and bad differ only in case, Unicode form or whitespace: nothing to prefer'
    """
    if same_message(first, second):
        how = "are identical" + (f" after {after}" if after else "")
    elif as_text and dedup_key(Conversation([first])) == dedup_key(Conversation([second])):
        how = "differ only in case, Unicode form or whitespace"
    else:
        return None
    return f"{names[0]} and {names[1]} {how}: {_SAME_SIDES_LESSON[labelled]}"


def is_pair(record: Any, columns: dict[str, str] | None = None) -> bool:
    """Whether ``record`` has a chosen and a rejected side under the names ``data.columns`` (``columns``) gives its
    fields; a record missing a renamed column is not (its reader says which column).

    >>> is_pair({"q": "2+2?", "good": "4", "bad": "5"}), is_pair({"q": "2+2?", "good": "4", "bad": "5"},
    ...                                                          {"chosen": "good", "rejected": "bad"})
    (False, True)
    """
    if not isinstance(record, dict):
        return False
    try:
        view = renamed(record, columns or {})
    except PreferenceProblem:
        return False
    return "chosen" in view and "rejected" in view


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


# ---------------------------------------------------------------------------------------------- parsing


def _read_all(reads: list[Callable[[], Any]], later: list[str]) -> list[Any]:
    """What each of ``reads`` (each reads a field of the record) returns, or :class:`PreferenceProblem` saying every
    one's problem, then ``later``'s: a record is refused for all its problems at once, not for the first found."""
    values, problems = [], []
    for read in reads:
        try:
            values.append(read())
        except PreferenceProblem as exc:
            problems += exc.problems
    if problems:
        raise PreferenceProblem(*problems, *later)
    return values


def _or_problem(read: Callable[[], Any]) -> tuple[Any, list[str]]:
    """What ``read`` returns and no problem, or None and its problem."""
    try:
        return read(), []
    except PreferenceProblem as exc:
        return None, exc.problems


def _pair_parts(view: dict[str, Any],
                spelled: dict[str, str]) -> tuple[list[Message], Message, Message, tuple[str, ...]]:
    """Prompt, chosen, rejected, and where each of those messages is in the record."""
    missing = [f for f in ("chosen", "rejected") if f not in view]
    if missing:
        raise PreferenceProblem(f"pair: missing field(s) {', '.join(missing)}")
    chosen_name, rejected_name = written(spelled, "chosen"), written(spelled, "rejected")
    if any(f in view for f in PROMPT_FIELDS):
        (prompt, places), chosen, rejected = _read_all([lambda: read_prompt(view, spelled),
                                                        lambda: read_side(view["chosen"], chosen_name),
                                                        lambda: read_side(view["rejected"], rejected_name)], [])
        return prompt, chosen, rejected, (*places, chosen_name, rejected_name)
    # Implicit prompt (TRL's form): both sides are whole conversations sharing their leading messages.
    chosen, rejected = _read_all([lambda: read_messages(view["chosen"], chosen_name),
                                  lambda: read_messages(view["rejected"], rejected_name)], [])
    shared = 0
    while shared < min(len(chosen), len(rejected)) - 1 and same_message(chosen[shared], rejected[shared]):
        shared += 1
    if shared == 0:
        raise PreferenceProblem(f"pair: no prompt field and {chosen_name}/{rejected_name} share no leading messages")
    tail_c, tail_r = chosen[shared:], rejected[shared:]
    if len(tail_c) != 1 or len(tail_r) != 1 or tail_c[0].role != "assistant" or tail_r[0].role != "assistant":
        raise PreferenceProblem(f"pair: {chosen_name} and {rejected_name} must differ only in their final assistant "
                                "message")
    system = read_system(view, spelled)
    places = [written(spelled, "system")] * len(system) + message_places(view["chosen"], chosen_name)[:shared]
    return (system + chosen[:shared], tail_c[0], tail_r[0],
            (*places, f"{chosen_name}[{shared}]", f"{rejected_name}[{shared}]"))


def _labeled(view: dict[str, Any], tools: list[dict[str, Any]] | None, spelled: dict[str, str], label: bool | None,
             later: list[str]) -> PreferenceRecord:
    """A KTO record (``label`` None where its problem is in ``later``, said after any problem found here)."""
    if "completion" in view:
        completion_name = written(spelled, "completion")
        (prompt, places), completion = _read_all([lambda: read_prompt(view, spelled),
                                                  lambda: read_side(view["completion"], completion_name)], later)
        places.append(completion_name)
    else:
        [(messages, places)] = _read_all([lambda: read_prompt(view, spelled)], later)
        if not messages or messages[-1].role != "assistant":
            raise PreferenceProblem("labeled completion: no completion field and the messages do not end with an "
                                    "assistant turn", *later)
        prompt, completion = messages[:-1], messages[-1]
    return PreferenceRecord("labeled", prompt, completion=completion, label=label, tools=tools, where=tuple(places))


def _label(view: dict[str, Any], spelled: dict[str, str]) -> bool:
    """The KTO label, from ``label`` or LLaMA-Factory's ``kto_tag``."""
    name = "label" if "label" in view else "kto_tag" if "kto_tag" in view else None
    if name is None:
        raise PreferenceProblem("labeled completion: missing field label (true = desirable, false = undesirable)")
    return read_label(view[name], written(spelled, name))


def same_message(a: Message, b: Message) -> bool:
    """Whether two messages are the same in every field."""
    return a.to_openai() == b.to_openai()
