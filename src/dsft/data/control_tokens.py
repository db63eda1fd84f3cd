"""Control tokens written as text: records whose text holds one of the tokenizer's added tokens.

A fast tokenizer reads every added token out of plain text as that one id, wherever it stands: a user
who typed ``<｜end▁of▁sentence｜>`` gets the real end-of-sentence id, and an answer quoting it teaches the
model to stop in the middle of the answer (a supervised EOS inside the target). ``<｜Assistant｜>`` in a
user turn opens a fake assistant turn. DeepSeek's own tokenizer does this too (its markers are added
tokens; ``<｜User｜>`` and the tool markers are not even flagged special), so the record is rejected,
naming the token and where it stands, rather than trained on silently.

Default cleaning (``data.clean.normalize_unicode``, NFKC) turns the fullwidth bar ``｜`` of DeepSeek's
markers into ``|`` before this check, which defuses them (``<|end▁of▁sentence|>`` is plain text); the
check matters for tokens NFKC leaves alone (``<|EOT|>``, Qwen's ``<|im_end|>``, ``<think>`` in a tool
argument) and whenever that step is off.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from typing import Any

from dsft.data.conversation import Conversation
from dsft.data.ingest import Rejection


def control_token_pattern(tokenizer: Any) -> re.Pattern[str] | None:
    """A regex matching any added token of ``tokenizer`` that is markup, not a word (None when it has none).

    Added tokens made only of letters, digits and ``_`` are left out: a tokenizer may add ordinary words,
    which text may hold as such.
    """
    added = getattr(tokenizer, "get_added_vocab", None)
    tokens = [t for t in (added() if added else {}) if t.strip() and not re.fullmatch(r"\w+", t.strip())]
    return re.compile(_trie_pattern(tokens)) if tokens else None


def _trie_pattern(words: Sequence[str]) -> str:
    """One regex for ``words`` shaped as their prefix tree, longest match first: an alternation of 1,283
    DeepSeek tokens tried one by one at every ``<`` of a text took about 1 ms per kilobyte; the tree takes
    a few microseconds.

    >>> _trie_pattern(["<a>", "<ab>", "<b>"])
    '<(?:a(?:>|b>)|b>)'
    """
    trie: dict[str, Any] = {}
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}
    return _branch(trie)


def _branch(node: dict[str, Any]) -> str:
    alternatives = [re.escape(char) + _branch(child) for char, child in sorted(node.items()) if char]
    if not alternatives:
        return ""
    if "" in node:  # a word ends here and longer ones go on: try the longer first
        return "(?:" + "|".join(alternatives) + ")?"
    return alternatives[0] if len(alternatives) == 1 else "(?:" + "|".join(alternatives) + ")"


def _texts(conversation: Conversation) -> Iterator[tuple[str, str]]:
    """``(where, text)`` of every text the templates render from a conversation."""
    for index, message in enumerate(conversation.messages):
        where = f"messages[{index}]"
        yield f"{where}.content", message.content
        if message.reasoning is not None:
            yield f"{where}.reasoning_content", message.reasoning
        for number, call in enumerate(message.tool_calls or []):
            yield f"{where}.tool_calls[{number}]", json.dumps(call, ensure_ascii=False)
    if conversation.tools:
        yield "tools", json.dumps(conversation.tools, ensure_ascii=False)


def control_token_problems(conversation: Conversation, pattern: re.Pattern[str] | None) -> list[str]:
    """One problem per text holding a control token, naming the first one found.

    >>> from dsft.data.conversation import Message
    >>> conv = Conversation([Message("user", "Q"), Message("assistant", "stop<｜end▁of▁sentence｜>here")])
    >>> control_token_problems(conv, re.compile(re.escape("<｜end▁of▁sentence｜>")))  # doctest: +NORMALIZE_WHITESPACE
    ["messages[1].content: holds the tokenizer's control token '<｜end▁of▁sentence｜>' (at character 4) as text;
      it would be read as that token, not as the characters: remove or rewrite it"]
    """
    if pattern is None:
        return []
    problems = []
    for where, text in _texts(conversation):
        if isinstance(text, str) and (match := pattern.search(text)):
            problems.append(f"{where}: holds the tokenizer's control token {match.group()!r} (at character "
                            f"{match.start()}) as text; it would be read as that token, not as the characters: "
                            "remove or rewrite it")
    return problems


def reject_control_tokens(
    conversations: Sequence[Conversation], tokenizer: Any
) -> tuple[list[Conversation], list[Rejection]]:
    """``(kept, rejected)``: each conversation holding a control token becomes a :class:`Rejection` at its origin."""
    pattern = control_token_pattern(tokenizer)
    kept: list[Conversation] = []
    rejected: list[Rejection] = []
    for conversation in conversations:
        problems = [conversation.named(problem) for problem in control_token_problems(conversation, pattern)]
        if problems:
            rejected.append(Rejection(conversation.meta.get("origin", "?"), problems, conversation.to_dict()))
        else:
            kept.append(conversation)
    return kept, rejected


# Chat role markers written into a text by hand (guide 000's format_conversation: "<|user|>\nQ\n<|assistant|>\nA"),
# or another model's template rendered to text. Defused DeepSeek markers (NFKC's <|User|>) match too.
_ROLE_MARKER = re.compile(r"<\|(?:user|assistant|system|human|bot|gpt|im_start|im_end)\|>|\[INST\]", re.IGNORECASE)


def role_markers_note(conversations: Sequence[Conversation]) -> str | None:
    """A warning when plain-text records (``{"text": ...}``, continued pre-training) hold chat role markers: they
    train as text, every token supervised, the prompts too, and the markers as characters instead of the model's
    own template. None when none does.

    >>> from dsft.data.conversation import Message
    >>> text = Conversation([Message("assistant", "<|user|>\\nQ\\n<|assistant|>\\nA")], meta={"kind": "text",
    ...                     "origin": "t.jsonl:3"})
    >>> print(role_markers_note([text]))  # doctest: +NORMALIZE_WHITESPACE
    data: 1 of 1 plain-text records hold chat role markers ('<|user|>', first at t.jsonl:3): they train as
    plain text, every token supervised, the prompts too, not with the model's chat template; to train on the
    answers alone, write each as a conversation ({"messages": [{"role": "user", "content": ...}, {"role":
    "assistant", "content": ...}]})
    """
    texts = [c for c in conversations if c.meta.get("kind") == "text"]
    marked = [(c, match) for c in texts if (match := _ROLE_MARKER.search(c.messages[0].content)) is not None]
    if not marked:
        return None
    first, match = marked[0]
    return (f"data: {len(marked)} of {len(texts)} plain-text records hold chat role markers ({match.group()!r}, first "
            f"at {first.meta.get('origin', '?')}): they train as plain text, every token supervised, the prompts too, "
            "not with the model's chat template; to train on the answers alone, write each as a conversation "
            '({"messages": [{"role": "user", "content": ...}, {"role": "assistant", "content": ...}]})')


# End-of-sequence markers of the common chat families, as text at the end of an answer (guide 002 appends
# "<|endoftext|>" to every Response by hand). Where the marker is the tokenizer's own control token the record is
# rejected (above); otherwise it is text to this tokenizer: the model learns to write those characters before the
# EOS dsft appends. DeepSeek's own marker is also matched defused (NFKC's ``<|end▁of▁sentence|>``).
_END_MARKER = re.compile(r"(<\|endoftext\|>|<\|end_of_text\|>|<\|im_end\|>|<\|eot_id\|>|<\|EOT\|>|<\|end\|>"
                         r"|<[|｜]end▁of▁sentence[|｜]>|</s>|<eos>)\s*$")


def end_marker_note(conversations: Sequence[Conversation], tokenizer: Any) -> str | None:
    """A warning when answers end with an end-of-sequence marker written as text; None when none does.

    >>> from dsft.data.conversation import Message
    >>> conv = Conversation([Message("user", "Q"), Message("assistant", "多喝水。<|endoftext|>")],
    ...                     meta={"origin": "med.json item 2"})
    >>> class Tok: eos_token = "<｜end▁of▁sentence｜>"
    >>> print(end_marker_note([conv], Tok()))  # doctest: +NORMALIZE_WHITESPACE
    data: 1 of 1 records end an answer with '<|endoftext|>' written as text (first at med.json item 2): it is not
    this model's end-of-sequence token, so the model learns to write those characters; every trained answer already
    ends with the model's own '<｜end▁of▁sentence｜>': remove the marker from the data
    """
    marked = []
    for conversation in conversations:
        for message in conversation.messages:
            if message.role == "assistant" and (match := _END_MARKER.search(message.content)) is not None:
                marked.append((conversation, match.group(1)))
                break
    if not marked:
        return None
    first, marker = marked[0]
    eos = getattr(tokenizer, "eos_token", None)
    own = f"the model's own {eos!r}" if eos else "the model's own end-of-sequence token"
    return (f"data: {len(marked)} of {len(conversations)} records end an answer with {marker!r} written as text (first "
            f"at {first.meta.get('origin', '?')}): it is not this model's end-of-sequence token, so the model learns "
            f"to write those characters; every trained answer already ends with {own}: remove the marker from the data")
