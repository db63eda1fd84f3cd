"""Split generated text into chain of thought and answer, as vLLM's ``deepseek_r1`` reasoning parser does.

R1-style prompts end inside an open think block (``<｜Assistant｜><think>\\n``), so the model writes
``reasoning</think>answer``; models that open the block themselves write ``<think>reasoning</think>answer``.
The rules (one-shot and streaming give the same result):

* a ``<think>`` at the start (after optional whitespace) is dropped, with that whitespace;
* no ``</think>`` at all: everything is reasoning and the content is None (the model never closed
  its thoughts, e.g. it ran out of tokens);
* otherwise split at the first ``</think>``: reasoning before, content after, content None if empty.

Whitespace is kept exactly as generated, as vLLM keeps it: R1's ``reasoning\\n</think>\\n\\nanswer``
gives reasoning ``"reasoning\\n"`` and content ``"\\n\\nanswer"``. Callers that show or score the
answer strip it themselves.

>>> split_reasoning("<think>\\nhmm\\n</think>\\n\\nHi!")
('\\nhmm\\n', '\\n\\nHi!')
>>> split_reasoning("still thinking")
('still thinking', None)
>>> split_reasoning("done</think>")
('done', None)
"""

from __future__ import annotations

from dsft.markers import END_THINK, THINK


def _drop_leading_think(text: str) -> str | None:
    """Text without a leading ``<think>``; None while ``text`` could still grow into one (streaming)."""
    stripped = text.lstrip()
    if stripped.startswith(THINK):
        return stripped[len(THINK):]
    if THINK.startswith(stripped):  # "", "<", "<th", ...: undecided
        return None
    return text


def split_reasoning(text: str) -> tuple[str | None, str | None]:
    """``(reasoning, content)`` of a complete generation (vLLM ``deepseek_r1`` semantics, see module doc)."""
    stripped = text.lstrip()
    body = stripped[len(THINK):] if stripped.startswith(THINK) else text
    if END_THINK not in body:
        return body, None
    reasoning, _, content = body.partition(END_THINK)
    return reasoning, content or None


def prompt_opens_think(prompt: str) -> bool:
    """Whether a rendered prompt ends inside an opened think block (R1's ``<think>\\n``, a hybrid family's
    thinking mode), so the reply starts as reasoning. Families add their own facts on top (see
    :meth:`dsft.templates.spec.ChatTemplate.prompt_opens_think`).

    >>> prompt_opens_think("<｜User｜>hi<｜Assistant｜><think>\\n"), prompt_opens_think("<｜Assistant｜></think>")
    (True, False)
    """
    return prompt.rstrip().endswith(THINK)


def _partial_tag_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``tag`` (held back while streaming)."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0


class StreamingReasoningSplitter:
    """Incremental :func:`split_reasoning` for streamed generation.

    ``feed(delta)`` returns ``(reasoning_delta, content_delta)`` (either may be ""); ``finish()``
    flushes what was held back. Text that might be the start of a tag split across chunks (``"</th"``)
    is held until the next chunk decides it. Joining all reasoning deltas gives the one-shot reasoning
    (``""`` for None) and likewise for content.

    >>> s = StreamingReasoningSplitter()
    >>> [s.feed(d) for d in ["<thi", "nk>a</th", "ink>\\n\\nb"]] + [s.finish()]
    [('', ''), ('a', ''), ('', '\\n\\nb'), ('', '')]
    """

    def __init__(self) -> None:
        self._text = ""
        self._sent_reasoning = 0  # characters of reasoning already emitted
        self._sent_content = 0

    def feed(self, delta: str) -> tuple[str, str]:
        """Add generated text; return the newly decided reasoning and content."""
        self._text += delta
        body = _drop_leading_think(self._text)
        if body is None:
            return "", ""
        if END_THINK in body:
            reasoning, _, content = body.partition(END_THINK)
        else:
            reasoning = body[: len(body) - _partial_tag_suffix(body, END_THINK)]
            content = ""
        return self._emit(reasoning, content)

    def finish(self) -> tuple[str, str]:
        """End of generation: emit whatever was held back."""
        reasoning, content = split_reasoning(self._text)
        return self._emit(reasoning or "", content or "")

    def _emit(self, reasoning: str, content: str) -> tuple[str, str]:
        out = reasoning[self._sent_reasoning:], content[self._sent_content:]
        self._sent_reasoning, self._sent_content = len(reasoning), len(content)
        return out
