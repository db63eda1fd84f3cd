"""Tool calls through the live server and the openai client: a reply ending in the family's calls block comes
back as ``tool_calls`` (whole and streamed), ``tools`` reach the prompt only where the template renders them
and are refused, not dropped, elsewhere."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import openai
import pytest
from live_server import LiveServer, run_live
from scripted import scripted_serving

from dsft.data.conversation import Message
from dsft.serve.engine import TransformersEngine
from dsft.serve.prompts import conversation_from_messages, render_chat_prompt
from dsft.serve.protocol import ChatMessageIn
from dsft.serve.settings import ServeSettings
from dsft.templates.deepseek_v3 import v3_tool_calls_text
from dsft.templates.dsml import dsml_tool_calls

CALL = {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris", "days": 2}'}}
V3_REPLY = "Checking.\n</think>\n\nLet me look." + v3_tool_calls_text(Message("assistant", "", tool_calls=[CALL]), 1)
DSML_REPLY = "Let me look." + dsml_tool_calls(Message("assistant", "", tool_calls=[CALL]), 1, "function_calls")
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather by city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
ASK = [{"role": "user", "content": "Weather in Paris?"}]


@pytest.fixture(scope="module")
def tokenizer(serve_model_dir: Path) -> Any:
    from dsft.models.loading import load_tokenizer

    return load_tokenizer(serve_model_dir)


@contextmanager
def scripted_server(tokenizer: Any, text: str, template: str,
                    prompts: list[list[int]] | None = None) -> Iterator[LiveServer]:
    with run_live(TransformersEngine(lambda: scripted_serving(tokenizer, text, template, prompts)),
                  ServeSettings(served_model_name="scripted")) as server:
        yield server


def streamed(server: LiveServer, **ask: Any) -> tuple[str, list[Any], str | None]:
    content, calls, finish = [], [], None
    for chunk in server.client().chat.completions.create(model="scripted", stream=True, **ask):
        choice = chunk.choices[0]
        content.append(choice.delta.content or "")
        calls += choice.delta.tool_calls or []
        finish = choice.finish_reason or finish
    return "".join(content), calls, finish


def test_r1_reply_with_a_calls_block_is_returned_as_tool_calls(tokenizer: Any) -> None:
    with scripted_server(tokenizer, V3_REPLY, "deepseek-r1") as server:
        answer = server.client().chat.completions.create(model="scripted", messages=ASK, max_tokens=200)
        content, calls, finish = streamed(server, messages=ASK, max_tokens=200)
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "\n\nLet me look."
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris", "days": 2}
    assert call.id.startswith("call_") and call.type == "function"
    # Streamed: the text before the block arrives as content, never a piece of the block's markers.
    assert content == "\n\nLet me look." and finish == "tool_calls"
    assert [(c.index, c.function.name, json.loads(c.function.arguments)) for c in calls] == \
        [(0, "get_weather", {"city": "Paris", "days": 2})]


def test_tool_choice_none_and_a_cut_off_block_leave_the_text_as_content(tokenizer: Any) -> None:
    with scripted_server(tokenizer, V3_REPLY, "deepseek-r1") as server:
        client = server.client()
        untouched = client.chat.completions.create(model="scripted", messages=ASK, max_tokens=200, tool_choice="none")
        cut = client.chat.completions.create(model="scripted", messages=ASK, max_tokens=30)
        cut_stream = streamed(server, messages=ASK, max_tokens=30)
    assert untouched.choices[0].finish_reason == "stop" and not untouched.choices[0].message.tool_calls
    assert untouched.choices[0].message.content.endswith("<｜tool▁calls▁end｜>")
    assert cut.choices[0].finish_reason == "length" and not cut.choices[0].message.tool_calls
    assert cut_stream[0] == cut.choices[0].message.content and cut_stream[1:] == ([], "length")


def test_tools_on_a_template_that_cannot_render_them_are_refused(tokenizer: Any) -> None:
    with scripted_server(tokenizer, V3_REPLY, "deepseek-r1") as server:
        with pytest.raises(openai.BadRequestError, match="does not render tool definitions") as refused:
            server.client().chat.completions.create(model="scripted", messages=ASK, tools=TOOLS)
        assert refused.value.body["param"] == "tools"
        with pytest.raises(openai.BadRequestError, match="cannot force a call"):
            server.client().chat.completions.create(model="scripted", messages=ASK, tools=TOOLS, tool_choice="required")


def test_v32_renders_the_tools_and_reads_dsml_calls(tokenizer: Any) -> None:
    prompt = render_chat_prompt("deepseek-v3.2", tokenizer, conversation_from_messages(
        [ChatMessageIn(**m) for m in ASK], TOOLS), None)
    assert '"name": "get_weather"' in prompt and "Weather by city" in prompt
    with scripted_server(tokenizer, DSML_REPLY, "deepseek-v3.2") as server:
        answer = server.client().chat.completions.create(model="scripted", messages=ASK, tools=TOOLS, max_tokens=300)
        content, calls, finish = streamed(server, messages=ASK, tools=TOOLS, max_tokens=300)
    (call,) = answer.choices[0].message.tool_calls
    assert answer.choices[0].message.content == "Let me look." and answer.choices[0].finish_reason == "tool_calls"
    assert json.loads(call.function.arguments) == {"city": "Paris", "days": 2}
    assert content == "Let me look." and finish == "tool_calls" and calls[0].function.name == "get_weather"


def test_v4_renders_the_request_tools_and_reads_dsml_calls(tokenizer: Any) -> None:
    """A V4 request's ``tools`` reach the model's prompt after the system prompt, as DeepSeek's V4 encoding lists
    them (vLLM attaches them to the first system message); the reply's DSML calls come back as ``tool_calls``."""
    prompts: list[list[int]] = []
    reply = "Let me look." + dsml_tool_calls(Message("assistant", "", tool_calls=[CALL]), 1, "tool_calls")
    ask = [{"role": "system", "content": "Be brief."}, *ASK]
    with scripted_server(tokenizer, reply, "deepseek-v4", prompts) as server:
        answer = server.client().chat.completions.create(model="scripted", messages=ask, tools=TOOLS, max_tokens=300)
    (prompt,) = (tokenizer.decode(ids, skip_special_tokens=False) for ids in prompts)
    schema = ('{"name": "get_weather", "description": "Weather by city", '
              '"parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}')
    assert prompt.startswith("<｜begin▁of▁sentence｜>Be brief.\n\n## Tools\n\nYou have access to a set of tools")
    assert prompt.endswith(f"### Available Tool Schemas\n\n{schema}\n\nYou MUST strictly follow the above defined "
                           "tool name and parameter schemas to invoke tool calls.\n"
                           "<｜User｜>Weather in Paris?<｜Assistant｜></think>")
    (call,) = answer.choices[0].message.tool_calls
    assert answer.choices[0].message.content == "Let me look." and answer.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris", "days": 2}
