"""A leading ``<think>`` block written inline in an answer: split off as the message's reasoning.

The formats read an assistant's text this way where the record gives no reasoning of its own
(:mod:`dsft.data.format_converters`); :func:`think_shifts` says where the two parts started in the text as written,
so that a problem found in one is named at the record's own character (:mod:`dsft.data.record_places`).
"""

from __future__ import annotations

from typing import Any


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


def think_shifts(answer: Any) -> tuple[tuple[str, int], ...]:
    """Where the answer and the reasoning that :func:`split_inline_think` takes from ``answer`` start in it, in
    characters (none when it splits nothing), for counting a character of theirs as the record does.

    >>> think_shifts("<think>\\nAdd.\\n</think>\\n\\n2")
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

