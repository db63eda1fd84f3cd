"""What every template family shares: segments, the supervised mask, tokenization, ``Rendered``.

A family renderer turns a conversation into a list of :class:`Segment` (text plus who owns it and
whether it is a training target). Everything else is decided here, once for all families:

* which assistant turns are trained (masking strategy + each message's ``loss`` flag);
* which segments are supervised;
* tokenization: adjacent segments with the same supervision are joined and tokenized as one string
  with ``add_special_tokens=False`` (the template text already holds BOS: no double BOS), so the
  prompt part of a training render is exactly the tokens of the inference prompt;
* labels: ``Rendered.labels()`` is the one place labels come from the mask (never from pad ids:
  R1's pad token is its EOS, and the EOS closing each trained turn must be learned).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from dsft.data.conversation import Conversation, Message
from dsft.errors import ConfigError, DsftError
from dsft.templates.reasoning import split_reasoning

Masking = Literal["assistant", "last", "all"]
MASKING_STRATEGIES: tuple[str, ...] = ("assistant", "last", "all")
IGNORE_INDEX = -100  # the label value cross-entropy skips (transformers / torch convention)


@dataclass(frozen=True)
class Segment:
    """A piece of rendered text.

    ``owner`` is the index of the message the text belongs to (None for BOS, separators and the
    generation prompt); ``target`` marks the part of a trained assistant turn the model must learn
    (its reasoning, answer, tool calls and closing EOS), as opposed to the turn header the prompt
    already holds.
    """

    text: str
    owner: int | None = None
    target: bool = False


@dataclass
class Rendered:
    """Token ids and, for each, whether it is supervised (a loss target).

    ``text`` is the exact rendered string the ids were tokenized from.
    """

    input_ids: list[int]
    supervised: list[bool]
    text: str = ""
    spans: list[tuple[str, bool]] = field(default_factory=list)

    def __post_init__(self) -> None:
        assert len(self.input_ids) == len(self.supervised), "one supervision flag per token"

    def labels(self) -> list[int]:
        """Labels for causal-LM loss: the token id where supervised, -100 elsewhere.

        >>> Rendered([0, 5, 6, 1], [False, False, True, True]).labels()
        [-100, -100, 6, 1]
        """
        return [tok if sup else IGNORE_INDEX for tok, sup in zip(self.input_ids, self.supervised)]

    def to_example(self) -> dict[str, list[int]]:
        """The tokenized-example form training consumes: ``{"input_ids", "labels"}``."""
        return {"input_ids": list(self.input_ids), "labels": self.labels()}

    @property
    def num_supervised(self) -> int:
        return sum(self.supervised)


def check_masking(masking: str, where: str = "template.masking") -> None:
    """Refuse an unknown masking strategy, naming ``where`` it was given (the config key, or a flag: ``--masking``).

    >>> check_masking("most", "--masking")
    Traceback (most recent call last):
    dsft.errors.DsftError: --masking: must be one of assistant, last, all, got 'most'
    """
    if masking not in MASKING_STRATEGIES:
        raise DsftError(f"{where}: must be one of {', '.join(MASKING_STRATEGIES)}, got {masking!r}")


def trained_turns(conv: Conversation, masking: str) -> frozenset[int]:
    """Indices of the assistant messages rendered as training targets.

    ``assistant``: every assistant turn; ``last``: the final assistant turn only; ``all``: every
    assistant turn (everything else is supervised too). A message's ``loss`` flag overrides:
    ``loss=False`` never trains the turn, ``loss=True`` always does.

    >>> from dsft.data.conversation import Message as M
    >>> conv = Conversation([M("user", "a"), M("assistant", "b"), M("user", "c"), M("assistant", "d")])
    >>> sorted(trained_turns(conv, "last")), sorted(trained_turns(conv, "assistant"))
    ([3], [1, 3])
    """
    check_masking(masking)
    assistant = [i for i, m in enumerate(conv.messages) if m.role == "assistant"]
    by_strategy = set(assistant[-1:]) if masking == "last" else set(assistant)
    trained = set()
    for i in assistant:
        flag = conv.messages[i].loss
        if flag is True or (flag is None and i in by_strategy):
            trained.add(i)
    return frozenset(trained)


def supervision(segments: Sequence[Segment], conv: Conversation, masking: str) -> list[bool]:
    """Whether each segment is supervised.

    Targets of trained turns always are. Under ``all`` every other segment is too, except those of
    messages with ``loss=False``. Under the other strategies a non-assistant message with
    ``loss=True`` has all its text supervised (e.g. to learn user-side text on purpose).
    """
    flags = []
    for seg in segments:
        message = conv.messages[seg.owner] if seg.owner is not None else None
        loss = message.loss if message is not None else None
        if seg.target:
            flags.append(loss is not False)
        elif masking == "all":
            flags.append(loss is not False)
        else:
            flags.append(bool(loss) and message is not None and message.role != "assistant")
    return flags


def supervision_runs(segments: Sequence[Segment], supervised: Sequence[bool]) -> list[tuple[str, bool]]:
    """Join consecutive segments of equal supervision into ``(text, supervised)`` runs (empty ones dropped)."""
    runs: list[tuple[str, bool]] = []
    for seg, sup in zip(segments, supervised):
        if not seg.text:
            continue
        if runs and runs[-1][1] == sup:
            runs[-1] = (runs[-1][0] + seg.text, sup)
        else:
            runs.append((seg.text, sup))
    return runs


def rendered_from_runs(runs: Sequence[tuple[str, bool]], run_ids: Sequence[Sequence[int]]) -> Rendered:
    """Assemble a :class:`Rendered` from runs and the token ids of each run."""
    ids: list[int] = []
    mask: list[bool] = []
    for (_, sup), tokens in zip(runs, run_ids):
        ids.extend(tokens)
        mask.extend([sup] * len(tokens))
    return Rendered(ids, mask, text="".join(t for t, _ in runs), spans=list(runs))


def tokenize_segments(
    segments: Sequence[Segment], supervised: Sequence[bool], tokenizer: Any
) -> Rendered:
    """Join runs of equally supervised segments and tokenize each run with ``add_special_tokens=False``.

    Joining runs (rather than tokenizing segment by segment) makes the unsupervised prompt before a
    target tokenize exactly as the inference prompt does; splitting at supervision boundaries makes
    the target tokenize exactly as generated tokens that follow the prompt.
    """
    runs = supervision_runs(segments, supervised)
    return rendered_from_runs(runs, [tokenizer.encode(text, add_special_tokens=False) for text, _ in runs])


def tokenize_runs_batch(all_runs: Sequence[Sequence[tuple[str, bool]]], tokenizer: Any) -> list[Rendered]:
    """:func:`tokenize_segments` for many conversations at once: one batched tokenizer call for every run
    of every conversation (a fast tokenizer encodes a batch on all cores); the same ids as one by one."""
    texts = [text for runs in all_runs for text, _ in runs]
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    out: list[Rendered] = []
    start = 0
    for runs in all_runs:
        out.append(rendered_from_runs(runs, encoded[start : start + len(runs)]))
        start += len(runs)
    return out


def require_tokens(tokenizer: Any, tokens: Iterable[str], template: str) -> None:
    """Fail clearly when the tokenizer lacks a special token the template writes (wrong family)."""
    # convert_tokens_to_ids, not get_vocab(): building the 129k-entry vocab dict costs ~0.5 s per call.
    tokens = list(tokens)
    ids = tokenizer.convert_tokens_to_ids(tokens)
    unk = getattr(tokenizer, "unk_token_id", None)
    missing = [t for t, i in zip(tokens, ids) if i is None or (unk is not None and i == unk)]
    if missing:
        raise ConfigError(  # the config's template and model disagree: no record could render, say it once
            f"template.name={template!r} writes special tokens this tokenizer does not have: "
            f"{', '.join(missing)}; pick the template of the model's family (or template.name: hf)"
        )


def split_think_content(message: Message) -> tuple[str | None, str]:
    """(reasoning, answer) of a message: ``message.reasoning`` if set, else a ``<think>`` block parsed
    out of the content (see :func:`dsft.templates.reasoning.split_reasoning`)."""
    if message.reasoning is not None or "</think>" not in message.content:
        return message.reasoning, message.content
    reasoning, answer = split_reasoning(message.content)
    # The family format re-inserts its own separator after </think>; drop the parsed one.
    return reasoning, (answer or "").lstrip("\n")


def tool_arguments_text(arguments: Any) -> str:
    """OpenAI tool-call arguments as text: a string as is, anything else as JSON.

    Matches the Jinja templates, which use the string or ``arguments | tojson`` (json.dumps with
    ensure_ascii=False).
    """
    return arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)


def is_plain_text(conv: Conversation) -> bool:
    """A continued pre-training record: one message of raw text (``meta["kind"] == "text"``)."""
    return conv.meta.get("kind") == "text" and len(conv.messages) == 1


def plain_text_segments(conv: Conversation, trained: frozenset[int], bos: str, eos: str) -> list[Segment]:
    """Raw text needs no chat markers: BOS + text + EOS, the text and EOS a target when the message is trained."""
    return [Segment(bos), Segment(conv.messages[0].content + eos, owner=0, target=0 in trained)]


def check_messages(conv: Conversation, template: str, roles: Sequence[str]) -> None:
    """Reject what a family cannot render (empty conversation, roles it has no place for)."""
    if not conv.messages:
        raise DsftError(f"template {template!r}: the conversation has no messages")
    for i, message in enumerate(conv.messages):
        if message.role not in roles:
            raise DsftError(
                f"template {template!r}: message {i} has role {message.role!r}, which this family "
                f"cannot render (roles: {', '.join(roles)})"
            )
        if not isinstance(message.content, str):
            raise DsftError(f"template {template!r}: message {i} content must be a string")


# Why a family that writes no header between two assistant turns (V3.1, V3.2) refuses them in a prompt.
RUN_TOGETHER = ("this family's template writes the next assistant turn with no assistant header, straight after the "
                "previous turn's end-of-sentence token, a layout the model never saw; merge the two turns into one, "
                "or put a user turn between them")


def prompt_order_problems(conv: Conversation, hoists_system: bool,
                          heads_every_assistant_turn: bool = True) -> list[tuple[int | None, str]]:
    """Role orders an inference prompt cannot faithfully carry: ``(message index or None, reason)``.

    Every family: at least one non-system turn, the first of them a user turn, and a tool message
    only after an assistant message with ``tool_calls`` (or another tool message), the orders
    training accepts. Families whose template gathers every system message at the start
    (``hoists_system``) also refuse a system message after the first turn, which they would move.
    Families that write an assistant turn right after another with no header (not
    ``heads_every_assistant_turn``: V3.1, V3.2) refuse such a turn, and a prompt that ends with an assistant
    turn, which the reply would follow so. Consecutive user turns render as two turns in every family and are
    accepted.

    >>> from dsft.data.conversation import Message as M
    >>> prompt_order_problems(Conversation([M("assistant", "a"), M("user", "b")]), hoists_system=True)
    [(0, 'the first turn after system messages must be a user turn, got assistant')]
    >>> prompt_order_problems(Conversation([M("user", "a"), M("system", "b"), M("user", "c")]), hoists_system=False)
    []
    >>> [i for i, _ in prompt_order_problems(Conversation([M("user", "a"), M("assistant", "b"), M("assistant", "c"),
    ...                                                    M("user", "d")]), True, heads_every_assistant_turn=False)]
    [2]
    """
    messages = conv.messages
    first = next((i for i, m in enumerate(messages) if m.role != "system"), None)
    if first is None:
        return [(None, "only system messages; a prompt needs a user turn")]
    problems: list[tuple[int | None, str]] = []
    if messages[first].role != "user":
        problems.append((first, f"the first turn after system messages must be a user turn, got {messages[first].role}"))
    for index, message in enumerate(messages):
        previous = messages[index - 1] if index else None
        if message.role == "tool" and not (
            previous is not None and (previous.role == "tool" or (previous.role == "assistant" and previous.tool_calls))
        ):
            problems.append((index, "a tool message must follow an assistant message with tool_calls "
                                    "(or another tool message)"))
        if message.role == "system" and hoists_system and index > first:
            problems.append((index, "a system message after the first turn: this family's template moves every "
                                    "system message to the start; put it there"))
        if message.role == "assistant" and previous is not None and previous.role == "assistant" \
                and not heads_every_assistant_turn:
            problems.append((index, f"an assistant turn right after another: {RUN_TOGETHER}"))
    if messages[-1].role == "assistant" and not heads_every_assistant_turn:
        problems.append((len(messages) - 1, f"the prompt ends with an assistant turn, which the reply would follow: "
                                            f"{RUN_TOGETHER}"))
    return problems
