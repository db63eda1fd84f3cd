"""Reasoning split, exactly: a scripted model emits known text through the live server and the openai client."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from live_server import LiveServer, run_live
from scripted import scripted_serving

ANSWER = "Let me add 2 and 2.\n</think>\n\nThe answer is 4."


@pytest.fixture(scope="module")
def tokenizer(serve_model_dir: Path) -> Any:
    from dsft.models.loading import load_tokenizer

    return load_tokenizer(serve_model_dir)


@contextmanager
def scripted_server(tokenizer: Any, text: str, template: str) -> Iterator[LiveServer]:
    from dsft.serve.engine import TransformersEngine
    from dsft.serve.settings import ServeSettings

    serving = scripted_serving(tokenizer, text, template)
    settings = ServeSettings(served_model_name="scripted")
    with run_live(TransformersEngine(lambda: serving), settings) as server:
        yield server


def fields(message: Any) -> tuple[str | None, str | None, str | None]:
    extra = message.model_extra or {}
    return extra.get("reasoning_content"), extra.get("reasoning"), message.content


def stream_parts(server: LiveServer, **ask: Any) -> tuple[list[str], list[str], list[str]]:
    """(reasoning deltas, content deltas, kinds in arrival order) of a streamed answer."""
    reasoning, content, order = [], [], []
    for chunk in server.client().chat.completions.create(model="scripted", stream=True, **ask):
        delta = chunk.choices[0].delta
        extra = delta.model_extra or {}
        if extra.get("reasoning_content"):
            assert extra["reasoning"] == extra["reasoning_content"]
            reasoning.append(extra["reasoning_content"])
            order.append("reasoning")
        if delta.content:
            content.append(delta.content)
            order.append("content")
    return reasoning, content, order


def test_r1_answer_is_split_like_vllm(tokenizer: Any) -> None:
    messages = [{"role": "user", "content": "What is 2+2?"}]
    with scripted_server(tokenizer, ANSWER, "deepseek-r1") as server:
        answer = server.client().chat.completions.create(model="scripted", messages=messages, max_tokens=40)
        reasoning, content, order = stream_parts(server, messages=messages, max_tokens=40)
    assert fields(answer.choices[0].message) == ("Let me add 2 and 2.\n", "Let me add 2 and 2.\n",
                                                 "\n\nThe answer is 4.")
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage.completion_tokens == len(tokenizer(ANSWER, add_special_tokens=False).input_ids) + 1
    assert "".join(reasoning) == "Let me add 2 and 2.\n" and "".join(content) == "\n\nThe answer is 4."
    assert order == sorted(order, key=["reasoning", "content"].index), "reasoning must come before content"
    assert len(reasoning) > 1 and len(content) > 1, "both parts should stream in several deltas"


def test_unclosed_thinking_is_all_reasoning(tokenizer: Any) -> None:
    with scripted_server(tokenizer, ANSWER, "deepseek-r1") as server:
        answer = server.client().chat.completions.create(
            model="scripted", messages=[{"role": "user", "content": "Hi"}], max_tokens=4)
    reasoning, _, content = fields(answer.choices[0].message)
    assert content is None and answer.choices[0].finish_reason == "length"
    assert reasoning == tokenizer.decode(tokenizer(ANSWER, add_special_tokens=False).input_ids[:4])


def test_plain_chat_family_is_not_split(tokenizer: Any) -> None:
    with scripted_server(tokenizer, ANSWER, "deepseek-v3") as server:
        answer = server.client().chat.completions.create(
            model="scripted", messages=[{"role": "user", "content": "Hi"}], max_tokens=40)
    assert fields(answer.choices[0].message) == (None, None, ANSWER)


def test_hybrid_family_splits_only_when_thinking(tokenizer: Any) -> None:
    messages = [{"role": "user", "content": "Hi"}]
    with scripted_server(tokenizer, ANSWER, "deepseek-v3.1") as server:
        client = server.client()
        plain = client.chat.completions.create(model="scripted", messages=messages, max_tokens=40)
        thinking = client.chat.completions.create(model="scripted", messages=messages, max_tokens=40,
                                                  extra_body={"chat_template_kwargs": {"thinking": True}})
        reasoning, content, _ = stream_parts(server, messages=messages, max_tokens=40,
                                             extra_body={"chat_template_kwargs": {"thinking": True}})
    assert fields(plain.choices[0].message) == (None, None, ANSWER)
    assert fields(thinking.choices[0].message)[0] == "Let me add 2 and 2.\n"
    assert ("".join(reasoning), "".join(content)) == ("Let me add 2 and 2.\n", "\n\nThe answer is 4.")
