"""Cleaning steps: pure functions from conversations to (kept, removed-with-reason).

Each step returns a :class:`StepResult`; the pipeline counts ``removed`` per step so that
``read + added == kept + rejected + sum(removed)`` holds. Steps that rewrite text return new conversations and
never mutate their input. Near-duplicates, relevance and contamination live in
:mod:`dsft.data.near_dedup` and :mod:`dsft.data.relevance`.
"""

from __future__ import annotations

import html
import json
import random
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from dsft.data.conversation import Conversation
from dsft.data.tokens import ConversationTokens
from dsft.data.validate import is_blank


@dataclass
class Removed:
    """A conversation a step dropped, why (e.g. ``"duplicate of data.jsonl:3"``), and its score if a scoring step dropped it.

    ``record``: the dropped record in its own JSON form where a conversation only stands for it (a preference record,
    whose ``removed.jsonl`` row shows it).
    """

    conversation: Conversation
    reason: str
    score: float | None = None
    record: dict[str, Any] | None = None


@dataclass
class StepResult:
    kept: list[Conversation]
    removed: list[Removed] = field(default_factory=list)


def source_of(conversation: Conversation) -> str:
    """Where a conversation was read (``file:line``), as recorded in ``meta.origin`` by the pipeline."""
    return str(conversation.meta.get("origin", "?"))


def map_texts(conversation: Conversation, transform: Callable[[str], str]) -> Conversation:
    """A copy with ``transform`` applied to every message's content and reasoning."""
    messages = [
        replace(m, content=transform(m.content), reasoning=None if m.reasoning is None else transform(m.reasoning))
        for m in conversation.messages
    ]
    return replace(conversation, messages=messages, meta=dict(conversation.meta))  # where it was read kept


def _rewrite_step(conversations: Sequence[Conversation], transform: Callable[[str], str], what: str) -> StepResult:
    """Apply a text rewrite; a conversation left with an empty turn is removed (not silently kept broken)."""
    result = StepResult(kept=[])
    for conversation in conversations:
        cleaned = map_texts(conversation, transform)
        emptied = [
            (i, field) for i, (before, after) in enumerate(zip(conversation.messages, cleaned.messages))
            for field, old, new in (("", before.content, after.content), (".reasoning_content", before.reasoning, after.reasoning))
            if old is not None and not is_blank(old) and is_blank(new or "")
        ]
        if emptied:  # reasoning too: an emptied one would train an empty think block, which validation refuses
            index, field = emptied[0]
            reason = conversation.named(f"messages[{index}]{field} empty after {what}")  # as the record names it
            result.removed.append(Removed(conversation, reason))
        else:
            result.kept.append(cleaned)
    return result


_TAG = re.compile(r"<(?:/?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?|!--.*?--)>", re.DOTALL)
_BLOCK_BREAK = re.compile(r"<\s*(?:br|/p|/div|/li|/tr|/h[1-6])\s*/?>", re.IGNORECASE)
# Tags dsft itself understands must survive HTML stripping.
_KEEP_TAGS = {"<think>", "</think>", "<tool_result>", "</tool_result>"}


_NOT_TEXT = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>|<!--.*?-->", re.IGNORECASE | re.DOTALL)
_BLANK_RUN = re.compile(r"[ \t]*\n(?:[ \t]*\n)+")


def strip_html_text(text: str) -> str:
    """Drop HTML tags (line breaks between blocks), script/style code and comments; unescape entities.

    A break only separates blocks: none is left at either end of the text (a closing ``</p>`` must not
    become a trailing newline in a supervised answer), and runs of blank lines shrink to one.

    >>> strip_html_text("<p>5 &lt; 6&nbsp;ok</p>next<script>alert(1)</script>")
    '5 < 6\\xa0ok\\nnext'
    >>> strip_html_text("<p>answer</p>")
    'answer'
    """
    text = _NOT_TEXT.sub("", text)
    text = _BLOCK_BREAK.sub("\n", text)
    text = _TAG.sub(lambda m: m.group() if m.group() in _KEEP_TAGS else "", text)
    text = _BLANK_RUN.sub("\n\n", html.unescape(text))
    return text.strip()


def text_cleaner(strip_html_enabled: bool, normalize_unicode_enabled: bool) -> Callable[[str], str] | None:
    """The per-text rewrites of data preparation, in its order (for eval references and prompts alike)."""
    steps = [step for step, on in ((strip_html_text, strip_html_enabled),
                                   (normalize_unicode_text, normalize_unicode_enabled)) if on]
    if not steps:
        return None

    def clean(text: str) -> str:
        for step in steps:
            text = step(text)
        return text

    return clean


def rewrite_steps(strip_html_enabled: bool, normalize_unicode_enabled: bool) -> list[tuple[str, Callable[[Sequence[Conversation]], StepResult]]]:
    """The text-rewriting steps of data preparation that are on, ``(step name, step)`` in their order: SFT and
    preference preparation both rewrite with these (``data.clean.strip_html``, ``data.clean.normalize_unicode``).

    >>> [name for name, _ in rewrite_steps(False, True)]
    ['normalize_unicode']
    """
    steps = (("strip_html", strip_html, strip_html_enabled), ("normalize_unicode", normalize_unicode,
                                                               normalize_unicode_enabled))
    return [(name, step) for name, step, on in steps if on]


def strip_html(conversations: Sequence[Conversation]) -> StepResult:
    """HTML tag stripping + entity unescaping in every message."""
    return _rewrite_step(conversations, strip_html_text, "HTML stripping")


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b\ufeff]")
# Punctuation that Chinese text uses on purpose; NFKC would turn it into ASCII (，-> ,; the ellipsis …… -> ......).
CJK_PUNCTUATION = "，！？：；（）～…"
_NOT_CJK_PUNCTUATION = re.compile(f"[^{CJK_PUNCTUATION}]+")


def normalize_unicode_text(text: str) -> str:
    """NFKC (sparing Chinese fullwidth punctuation), CRLF -> LF, control characters removed.

    Tabs and newlines are kept. Fullwidth letters and digits become ASCII; ``，？`` and ``……`` stay as they are.

    >>> normalize_unicode_text("ｆｕｌｌ\\u200bwidth\\r\\nline\\x07，ok？")
    'fullwidth\\nline，ok？'
    >>> normalize_unicode_text("缺血……")
    '缺血……'
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not unicodedata.is_normalized("NFKC", text):  # a C-speed check: most text needs no rewrite
        text = _NOT_CJK_PUNCTUATION.sub(lambda m: unicodedata.normalize("NFKC", m.group()), text)
    return _CONTROL.sub("", text)


def normalize_unicode(conversations: Sequence[Conversation]) -> StepResult:
    """Unicode NFKC + control-character removal in every message."""
    return _rewrite_step(conversations, normalize_unicode_text, "Unicode normalisation")


# Each rewrite step's per-text function and how a removal names it, by step name: what the steps above apply to
# messages, for text kept beside them (GRPO references: ``answer``, ``solution``).
TEXT_REWRITES: dict[str, tuple[Callable[[str], str], str]] = {
    "strip_html": (strip_html_text, "HTML stripping"),
    "normalize_unicode": (normalize_unicode_text, "Unicode normalisation"),
}


_SPACES = re.compile(r"\s+")


def dedup_key(conversation: Conversation) -> str:
    """The normalised text two conversations share when they are exact duplicates.

    Case, Unicode form and whitespace runs are ignored; roles, reasoning and tools are not.
    """
    parts = []
    for message in conversation.messages:
        body = f"{message.content}\x1e{message.reasoning or ''}\x1e{json.dumps(message.tool_calls, sort_keys=True)}"
        parts.append(f"{message.role}\x1f{_SPACES.sub(' ', unicodedata.normalize('NFKC', body)).strip().casefold()}")
    if conversation.tools:
        parts.append(json.dumps(conversation.tools, sort_keys=True))
    return "\x1d".join(parts)


def loss_flags(conversation: Conversation) -> tuple[bool | None, ...]:
    """Each message's ``loss`` flag: copies of one conversation that train different turns differ here.

    Deduplication keeps such copies (one conversation repeated with ``loss`` on a different turn each time
    trains every turn on exactly its inference prompt); they are not duplicates of one another.
    """
    return tuple(message.loss for message in conversation.messages)


def exact_dedup(conversations: Sequence[Conversation]) -> StepResult:
    """Keep the first of each group of exact duplicates (on :func:`dedup_key` and :func:`loss_flags`).

    >>> from dsft.data.conversation import Message
    >>> a = Conversation([Message("user", "Hi"), Message("assistant", "Yo")], meta={"origin": "a:1"})
    >>> b = Conversation([Message("user", " hi "), Message("assistant", "yo")], meta={"origin": "a:2"})
    >>> [r.reason for r in exact_dedup([a, b]).removed]
    ['exact duplicate of a:1']
    >>> c = Conversation([Message("user", "Hi"), Message("assistant", "Yo", loss=False)], meta={"origin": "a:3"})
    >>> len(exact_dedup([a, c]).kept)
    2
    """
    first_seen: dict[tuple[str, tuple[bool | None, ...]], Conversation] = {}
    result = StepResult(kept=[])
    for conversation in conversations:
        key = (dedup_key(conversation), loss_flags(conversation))
        original = first_seen.get(key)
        if original is None:
            first_seen[key] = conversation
            result.kept.append(conversation)
        else:
            result.removed.append(Removed(conversation, f"exact duplicate of {source_of(original)}"))
    return result


def filter_by_length(
    conversations: Sequence[Conversation],
    tokens: Sequence[ConversationTokens],
    min_tokens: int | None = None,
    max_tokens: int | None = None,
    max_tokens_per_role: dict[str, int] | None = None,
) -> StepResult:
    """Drop conversations outside ``[min_tokens, max_tokens]`` total tokens or over a per-role ceiling.

    ``tokens`` is aligned with ``conversations`` (see :func:`dsft.data.tokens.count_tokens`).

    >>> from dsft.data.conversation import Message
    >>> rows = [Conversation([Message("user", "q"), Message("assistant", "a")])] * 2
    >>> counts = [ConversationTokens((("user", 3, 0), ("assistant", 5, 0))), ConversationTokens((("user", 3, 0), ("assistant", 50, 9)))]
    >>> [r.reason for r in filter_by_length(rows, counts, max_tokens_per_role={"assistant": 20}).removed]
    ['assistant turns have 59 tokens > max_tokens_per_role.assistant 20']
    """
    assert len(tokens) == len(conversations)
    result = StepResult(kept=[])
    for conversation, counted in zip(conversations, tokens):
        reason = _length_problem(counted, min_tokens, max_tokens, max_tokens_per_role or {})
        if reason:
            result.removed.append(Removed(conversation, reason))
        else:
            result.kept.append(conversation)
    return result


def _length_problem(
    counted: ConversationTokens, min_tokens: int | None, max_tokens: int | None, per_role: dict[str, int]
) -> str | None:
    total = counted.total
    if min_tokens is not None and total < min_tokens:
        return f"{total} tokens < min_tokens {min_tokens}"
    if max_tokens is not None and total > max_tokens:
        return f"{total} tokens > max_tokens {max_tokens}"
    for role, used in counted.by_role().items():
        ceiling = per_role.get(role)
        if ceiling is not None and used > ceiling:
            return f"{role} turns have {used} tokens > max_tokens_per_role.{role} {ceiling}"
    return None


MISSING_CLASS = "(missing)"


def class_of(conversation: Conversation, field_name: str) -> str:
    """The value of a meta field as a class label (``(missing)`` when absent)."""
    value = conversation.meta.get(field_name)
    return MISSING_CLASS if value is None else str(value)


def balance_classes(
    conversations: Sequence[Conversation], field_name: str, mode: str = "under", seed: int = 0
) -> tuple[StepResult, list[Conversation]]:
    """Equalise class sizes by ``meta[field_name]``; returns (result, added copies).

    ``under`` keeps a seeded sample of the smallest class size from every class (the rest removed);
    ``over`` keeps everything and adds seeded copies until every class has the largest class size
    (the copies are returned separately so accounting can count them as added, not read).
    Order is preserved; classes are processed in sorted order so the result depends only on ``seed``.

    >>> from dsft.data.conversation import Message
    >>> rows = [Conversation([Message("user", str(i)), Message("assistant", "a")], meta={"domain": d})
    ...         for i, d in enumerate("xxxy")]
    >>> result, added = balance_classes(rows, "domain", "under", seed=0)
    >>> [c.meta["domain"] for c in result.kept], len(result.removed)
    (['x', 'y'], 2)
    >>> result, added = balance_classes(rows, "domain", "over", seed=0)
    >>> len(result.kept), [c.meta["domain"] for c in added]
    (4, ['y', 'y'])
    """
    groups: dict[str, list[int]] = {}
    for index, conversation in enumerate(conversations):
        groups.setdefault(class_of(conversation, field_name), []).append(index)
    rng = random.Random(seed)
    result = StepResult(kept=[])
    if not groups:
        return result, []
    if mode == "over":
        largest = max(len(v) for v in groups.values())
        added = [conversations[i] for name in sorted(groups) for i in _draw(rng, groups[name], largest - len(groups[name]))]
        result.kept = list(conversations)
        return result, added
    smallest = min(len(v) for v in groups.values())
    chosen = {i for name in sorted(groups) for i in rng.sample(groups[name], smallest)}
    for index, conversation in enumerate(conversations):
        if index in chosen:
            result.kept.append(conversation)
        else:
            label = class_of(conversation, field_name)
            result.removed.append(Removed(conversation, f"undersampled class {field_name}={label} to {smallest}"))
    return result, []


def missing_class_note(
    conversations: Sequence[Conversation], result: StepResult, added: Sequence[Conversation], field_name: str,
    mode: str = "under",
) -> str | None:
    """What :func:`balance_classes` did to the records that lack ``field_name`` (balanced as one class,
    ``(missing)``): how many lack it and how many of them undersampling dropped (or oversampling copied); None
    when every record has the field.

    >>> from dsft.data.conversation import Message
    >>> rows = [Conversation([Message("user", str(i)), Message("assistant", "a")], meta=meta)
    ...         for i, meta in enumerate([{"domain": "x"}, {}, {}, {}])]
    >>> result, added = balance_classes(rows, "domain", "under", seed=0)
    >>> missing_class_note(rows, result, added, "domain")
    "data.clean.balance_by=domain: 3 of 4 train records have no 'domain' and were balanced as one class '(missing)'; undersampling dropped 2 of them (each in removed.jsonl)"
    """
    lacking = sum(1 for conversation in conversations if conversation.meta.get(field_name) is None)
    if not lacking:
        return None
    head = (f"data.clean.balance_by={field_name}: {lacking} of {len(conversations)} train records have no "
            f"'{field_name}' and were balanced as one class '{MISSING_CLASS}'; ")
    if mode == "over":
        copies = sum(1 for conversation in added if conversation.meta.get(field_name) is None)
        return head + f"oversampling added {copies} copies of them"
    dropped = sum(1 for removed in result.removed if removed.conversation.meta.get(field_name) is None)
    return head + f"undersampling dropped {dropped} of them (each in removed.jsonl)"


def look_alike_class_note(
    conversations: Sequence[Conversation], result: StepResult, added: Sequence[Conversation], field_name: str,
    mode: str = "under",
) -> str | None:
    """Class labels of ``field_name`` that differ only in case or surrounding spaces (``Intermediate`` beside
    ``intermediate``, a hand-labelled slip), which :func:`balance_classes` balances as separate classes: one stray
    label makes a class of one record, and undersampling cuts every class down to it. None when there are none.

    >>> from dsft.data.conversation import Message
    >>> rows = [Conversation([Message("user", str(i)), Message("assistant", "a")], meta={"level": level})
    ...         for i, level in enumerate(["basic"] * 3 + ["hard"] * 3 + ["Hard "])]
    >>> result, added = balance_classes(rows, "level", "under", seed=0)
    >>> look_alike_class_note(rows, result, added, "level")
    "data.clean.balance_by=level: the classes 'Hard ' (1 record) and 'hard' (3) differ only in case or spaces and \
were balanced as separate classes; undersampling cut every class to 1 record, removing 4 of 7 train records (each \
in removed.jsonl): write each class one way"
    """
    sizes: dict[str, int] = {}
    first_at: dict[str, str] = {}
    for conversation in conversations:
        label = class_of(conversation, field_name)
        sizes[label] = sizes.get(label, 0) + 1
        first_at.setdefault(label, str(conversation.meta.get("origin", "")))
    alike: dict[str, list[str]] = {}
    for label in sorted(sizes):
        alike.setdefault(" ".join(label.split()).casefold(), []).append(label)
    groups = [labels for labels in alike.values() if len(labels) > 1]
    if not groups:
        return None
    described = []
    for labels in groups:
        rarest = min(labels, key=lambda label: sizes[label])  # the slip, most likely: say where it is
        counts = [f"{label!r} ({sizes[label]}{' record' + ('s' if sizes[label] != 1 else '') if i == 0 else ''}"
                  f"{', first at ' + first_at[label] if label == rarest and first_at[label] else ''})"
                  for i, label in enumerate(labels)]
        described.append(", ".join(counts[:-1]) + " and " + counts[-1])
    head = (f"data.clean.balance_by={field_name}: the classes {'; '.join(described)} differ only in case or spaces "
            "and were balanced as separate classes; ")
    if mode == "over":
        done = f"oversampling added {len(added)} copies to bring every class to {max(sizes.values())} records"
    else:
        smallest = min(sizes.values())
        done = (f"undersampling cut every class to {smallest} record{'s' if smallest != 1 else ''}, removing "
                f"{len(result.removed)} of {len(conversations)} train records (each in removed.jsonl)")
    return head + done + ": write each class one way"


def _draw(rng: random.Random, members: list[int], count: int) -> list[int]:
    """``count`` members drawn with replacement, cycling through a shuffle so copies spread evenly."""
    order = list(members)
    rng.shuffle(order)
    return [order[i % len(order)] for i in range(count)]

