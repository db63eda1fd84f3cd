"""Parity: the Python renderer and the family's Jinja ``chat_template`` (run by transformers'
``apply_chat_template``) render every conversation identically; and both match the released
DeepSeek templates the tiny checkpoints ship, on the conversations those templates render correctly.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsft.data.conversation import Conversation, Message
from dsft.models.tokenizers import chat_template as released_template
from dsft.templates import get_template
from dsft.templates.hf import openai_messages

from template_cases import FAMILY_STRATEGIES, jinja_render, text

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("name", sorted(FAMILY_STRATEGIES))
def test_python_renderer_equals_its_jinja_template(name: str, tokenizer: Any) -> None:
    template = get_template(name)

    @SETTINGS
    @given(conv=FAMILY_STRATEGIES[name], add_generation_prompt=st.booleans(), thinking=st.sampled_from([None, True, False]))
    def check(conv: Conversation, add_generation_prompt: bool, thinking: bool | None) -> None:
        expected = jinja_render(tokenizer, template.chat_template, conv, add_generation_prompt,
                                **template.jinja_kwargs(thinking))
        assert template.render_prompt(conv, thinking=thinking, add_generation_prompt=add_generation_prompt) == expected

    check()


def test_enable_thinking_alias_selects_thinking_mode(tokenizer: Any) -> None:
    conv = Conversation([Message("user", "Hi")])
    for name in ("deepseek-v3.1", "deepseek-v4"):
        rendered = jinja_render(tokenizer, get_template(name).chat_template, conv, True, enable_thinking=True)
        assert rendered.endswith("<｜Assistant｜><think>")


@st.composite
def plain_chats(draw: Any, max_system: int) -> Conversation:
    """System messages (at most ``max_system``) then alternating user/assistant turns: what every
    released template renders as intended."""
    messages = [Message("system", draw(text)) for _ in range(draw(st.integers(0, max_system)))]
    for k in range(draw(st.integers(1, 6))):
        role = "user" if k % 2 == 0 else "assistant"
        messages.append(Message(role, draw(text), reasoning=draw(st.one_of(st.none(), text)) if role == "assistant" else None))
    return Conversation(messages)


@pytest.mark.parametrize(
    ("family", "released", "max_system"),
    [("deepseek-r1", "deepseek-r1", 3), ("deepseek-r1", "deepseek-r1-distill", 1), ("deepseek-llm", "deepseek-llm", 2)],
)
def test_matches_the_released_template(family: str, released: str, max_system: int, tokenizer: Any) -> None:
    template, official = get_template(family), released_template(released)

    @SETTINGS
    @given(conv=plain_chats(max_system), add_generation_prompt=st.booleans())
    def check(conv: Conversation, add_generation_prompt: bool) -> None:
        expected = jinja_render(tokenizer, official, conv, add_generation_prompt)
        assert template.render_prompt(conv, add_generation_prompt=add_generation_prompt) == expected

    check()


def test_single_tool_round_matches_the_released_r1_template(tokenizer: Any) -> None:
    call = {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    conv = Conversation([
        Message("system", "Use tools."), Message("user", "Weather?"), Message("assistant", "", tool_calls=[call, call]),
        Message("tool", "22C"), Message("tool", "sunny"), Message("assistant", "22C and sunny."),
    ])
    messages = openai_messages(conv)
    for add in (True, False):
        expected = tokenizer.apply_chat_template(messages, chat_template=released_template("deepseek-r1"),
                                                 tokenize=False, add_generation_prompt=add)
        assert get_template("deepseek-r1").render_prompt(conv, add_generation_prompt=add) == expected


def test_v4_jinja_asks_for_object_arguments(tokenizer: Any) -> None:
    """vLLM hands the template parsed arguments; a JSON string (transformers as is) is refused, not garbled."""
    call = {"type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}
    conv = Conversation([Message("user", "q"), Message("assistant", "", tool_calls=[call])])
    with pytest.raises(Exception, match="arguments as an object"):
        jinja_render(tokenizer, get_template("deepseek-v4").chat_template, conv, False)
