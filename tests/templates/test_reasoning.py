"""The reasoning parser: vLLM deepseek_r1 semantics, and streaming == one-shot on any chunking."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsft.templates.reasoning import StreamingReasoningSplitter, split_reasoning


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("reasoning\n</think>\n\nanswer", ("reasoning\n", "\n\nanswer")),  # R1: the prompt opened <think>
        ("<think>\nr\n</think>\n\nA", ("\nr\n", "\n\nA")),  # the model opened it itself
        ("  \n<think>r</think>A", ("r", "A")),  # leading whitespace before <think> goes with it
        ("still thinking", ("still thinking", None)),  # never closed: all reasoning, no content
        ("<think>r", ("r", None)),
        ("r</think>", ("r", None)),  # closed with nothing after: content None
        ("a</think>b</think>c", ("a", "b</think>c")),  # split at the FIRST </think>
        ("x<think>y</think>z", ("x<think>y", "z")),  # a <think> not at the start is text
        ("", ("", None)),
    ],
)
def test_split_reasoning(text: str, expected: tuple[str | None, str | None]) -> None:
    assert split_reasoning(text) == expected


PIECES = ["<think>", "</think>", "<", "</", "<th", "</thi", "think>", ">", "a", "b c", "\n", " ", "中"]


@settings(max_examples=300, deadline=None)
@given(pieces=st.lists(st.sampled_from(PIECES), max_size=10), cuts=st.lists(st.integers(0, 60), max_size=6))
def test_streaming_equals_one_shot_on_any_chunking(pieces: list[str], cuts: list[int]) -> None:
    text = "".join(pieces)
    bounds = sorted({min(c, len(text)) for c in cuts} | {0, len(text)})
    chunks = [text[a:b] for a, b in zip(bounds, bounds[1:])]
    splitter = StreamingReasoningSplitter()
    deltas = [splitter.feed(chunk) for chunk in chunks] + [splitter.finish()]
    reasoning, content = split_reasoning(text)
    assert "".join(r for r, _ in deltas) == (reasoning or "")
    assert "".join(c for _, c in deltas) == (content or "")


def test_streaming_holds_back_a_tag_split_across_chunks() -> None:
    splitter = StreamingReasoningSplitter()
    assert splitter.feed("abc</th") == ("abc", "")  # "</th" might become </think>: not emitted yet
    assert splitter.feed("ink>\n\nHi") == ("", "\n\nHi")
    assert splitter.feed("!") == ("", "!")
    assert splitter.finish() == ("", "")


def test_streaming_emits_reasoning_as_it_comes() -> None:
    splitter = StreamingReasoningSplitter()
    assert splitter.feed("<think>") == ("", "")
    assert splitter.feed("step 1, ") == ("step 1, ", "")
    assert splitter.feed("step 2") == ("step 2", "")
    assert splitter.finish() == ("", "")
