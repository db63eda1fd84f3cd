"""Conversations and helpers shared by the template tests."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from dsft.data.conversation import Conversation, Message
from dsft.templates.hf import openai_messages

SYSTEM = "You are a helpful assistant."


def reference_conversation(assistant: Message | None = None) -> Conversation:
    """The reference example: system, user "Hi", assistant, user "What is 2+2?"."""
    return Conversation([
        Message("system", SYSTEM),
        Message("user", "Hi"),
        assistant or Message("assistant", "Hello!"),
        Message("user", "What is 2+2?"),
    ])


def jinja_render(tokenizer: Any, template: str, conv: Conversation, add_generation_prompt: bool,
                 **kwargs: Any) -> str:
    """``conv`` rendered by a Jinja chat template through transformers' ``apply_chat_template``."""
    return tokenizer.apply_chat_template(
        openai_messages(conv), chat_template=template, tools=conv.tools, tokenize=False,
        add_generation_prompt=add_generation_prompt, **kwargs,
    )


def supervised_spans(rendered: Any, tokenizer: Any) -> list[str]:
    """Decode each maximal run of supervised tokens (what the model is trained to write)."""
    spans: list[str] = []
    run: list[int] = []
    for token, sup in [*zip(rendered.input_ids, rendered.supervised), (None, False)]:
        if sup:
            run.append(token)
        elif run:
            spans.append(tokenizer.decode(run, skip_special_tokens=False, clean_up_tokenization_spaces=False))
            run = []
    return spans


# Text pieces chosen to hit the edges: think tags inside content, newlines, quotes, non-ASCII.
PIECES = ["a", "Hi there", " ", "\n", "\n\n", "<think>", "</think>", "中文", "é", "{", "'", '"', "2+2=4"]
text = st.lists(st.sampled_from(PIECES), max_size=5).map("".join)
CALL = st.builds(
    lambda name, args: {"type": "function", "function": {"name": name, "arguments": args}},
    st.sampled_from(["get_weather", "search"]),
    st.one_of(st.just('{"city": "Paris"}'), st.dictionaries(st.sampled_from(["q", "n"]), st.integers(0, 9), max_size=2)),
)
# DSML families (V3.2, V4) write one parameter per argument: arguments are objects of any JSON values.
JSON_VALUE = st.one_of(text, st.integers(-5, 99), st.booleans(), st.none(), st.lists(st.integers(0, 3), max_size=2),
                       st.dictionaries(st.sampled_from(["k", "中"]), text, max_size=1))
OBJECT_CALL = st.builds(
    lambda name, args: {"type": "function", "function": {"name": name, "arguments": args}},
    st.sampled_from(["get_weather", "search"]),
    st.dictionaries(st.sampled_from(["city", "q", "n"]), JSON_VALUE, max_size=3),
)

# Tool definitions (OpenAI form) with the same edge pieces in descriptions and non-ASCII keys, so the families
# that render them are compared on how the JSON is written (json.dumps in Python, tojson in Jinja).
TOOL_DEFINITION = st.builds(
    lambda name, description, properties: {"type": "function", "function": {
        "name": name, "description": description, "parameters": {"type": "object", "properties": properties}}},
    st.sampled_from(["get_weather", "search"]),
    text,
    st.dictionaries(st.sampled_from(["city", "中", "n"]),
                    st.fixed_dictionaries({"type": st.sampled_from(["string", "integer"])}), max_size=2),
)
TOOL_DEFINITIONS = st.one_of(st.none(), st.lists(TOOL_DEFINITION, min_size=1, max_size=2))


@st.composite
def conversations(draw: Any, tools: bool = True, tool_calls: bool = True, object_arguments: bool = False) -> Conversation:
    """Any order of roles (the renderers must agree even on odd ones), tools optional."""
    roles = ["system", "user", "assistant"] + (["tool"] if tools else [])
    messages = []
    for role in draw(st.lists(st.sampled_from(roles), min_size=1, max_size=7)):
        message = Message(role, draw(text))
        if role == "assistant":
            message.reasoning = draw(st.one_of(st.none(), text))
            if tool_calls and draw(st.booleans()):
                message.tool_calls = draw(st.lists(OBJECT_CALL if object_arguments else CALL, min_size=1, max_size=2))
        messages.append(message)
    return Conversation(messages, tools=draw(TOOL_DEFINITIONS) if tools else None)


@st.composite
def paired_tool_conversations(draw: Any) -> Conversation:
    """Conversations where every tool result answers a call of the assistant turn right before it (what
    V3.2's encoding requires): system, user and assistant turns, and tool rounds (a calling assistant turn
    then one result per call), in any order; tools optional."""
    messages = []
    for kind in draw(st.lists(st.sampled_from(["system", "user", "assistant", "tool_round"]), min_size=1, max_size=6)):
        if kind in ("system", "user"):
            messages.append(Message(kind, draw(text)))
            continue
        calls = draw(st.lists(OBJECT_CALL, min_size=1, max_size=2)) if kind == "tool_round" else None
        messages.append(Message("assistant", draw(text), reasoning=draw(st.one_of(st.none(), text)), tool_calls=calls))
        messages += [Message("tool", draw(text)) for _ in calls or []]
    return Conversation(messages, tools=draw(TOOL_DEFINITIONS))


# Per family, the conversations its template tests draw from (only what that family's template renders).
FAMILY_STRATEGIES = {
    "deepseek-llm": conversations(tools=False, tool_calls=False),
    "deepseek-v3": conversations(),
    "deepseek-r1": conversations(),
    "deepseek-v3.1": conversations(),
    "deepseek-v4": conversations(object_arguments=True),
    "deepseek-v3.2": paired_tool_conversations(),
}
