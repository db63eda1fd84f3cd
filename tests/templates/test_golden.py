"""Golden strings: every example of the reference rendering (official templates, generation prompt on).

BOS/EOS/U/A below are the exact DeepSeek marker strings; the expected strings are the reference's
examples written out, not outputs of the code under test.
"""

from __future__ import annotations

from typing import Any

import pytest

from dsft.data.conversation import Conversation, Message
from dsft.templates import get_template

from template_cases import SYSTEM, jinja_render, reference_conversation

BOS, EOS = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"
U, A = "<｜User｜>", "<｜Assistant｜>"
THINKING_HISTORY = Message("assistant", "<think>\nGreeting.\n</think>\n\nHello!")


def test_deepseek_llm_reference_example() -> None:
    expected = f"{BOS}{SYSTEM}\n\nUser: Hi\n\nAssistant: Hello!{EOS}User: What is 2+2?\n\nAssistant:"
    assert get_template("deepseek-llm").render_prompt(reference_conversation()) == expected


def test_deepseek_v3_reference_example() -> None:
    expected = f"{BOS}{SYSTEM}{U}Hi{A}Hello!{EOS}{U}What is 2+2?{A}"
    assert get_template("deepseek-v3").render_prompt(reference_conversation()) == expected


def test_deepseek_r1_reference_example_strips_history_reasoning() -> None:
    expected = f"{BOS}{SYSTEM}{U}Hi{A}\n\nHello!{EOS}{U}What is 2+2?{A}<think>\n"
    assert get_template("deepseek-r1").render_prompt(reference_conversation(THINKING_HISTORY)) == expected


def test_deepseek_r1_separate_reasoning_is_dropped_from_history() -> None:
    conv = reference_conversation(Message("assistant", "Hello!", reasoning="Greeting."))
    expected = f"{BOS}{SYSTEM}{U}Hi{A}Hello!{EOS}{U}What is 2+2?{A}<think>\n"
    assert get_template("deepseek-r1").render_prompt(conv) == expected


def test_deepseek_r1_empty_reasoning_in_history() -> None:
    conv = reference_conversation(Message("assistant", "<think>\n\n</think>\n\nHello!", reasoning=None))
    expected = f"{BOS}{SYSTEM}{U}Hi{A}\n\nHello!{EOS}{U}What is 2+2?{A}<think>\n"
    assert get_template("deepseek-r1").render_prompt(conv) == expected
    conv = reference_conversation(Message("assistant", "Hello!", reasoning=""))
    assert get_template("deepseek-r1").render_prompt(conv) == expected.replace("\n\nHello!", "Hello!")


def test_deepseek_r1_keeps_text_after_the_last_end_think() -> None:
    conv = Conversation([Message("user", "q"), Message("assistant", "a</think>b</think>c"), Message("user", "r")])
    assert get_template("deepseek-r1").render_prompt(conv) == f"{BOS}{U}q{A}c{EOS}{U}r{A}<think>\n"


def test_deepseek_v31_reference_example_non_thinking() -> None:
    expected = f"{BOS}{SYSTEM}{U}Hi{A}</think>\n\nHello!{EOS}{U}What is 2+2?{A}</think>"
    assert get_template("deepseek-v3.1").render_prompt(reference_conversation(THINKING_HISTORY)) == expected


def test_deepseek_v31_keeps_text_after_the_first_end_think() -> None:
    conv = Conversation([Message("user", "q"), Message("assistant", "a</think>b</think>c"), Message("user", "r")])
    assert get_template("deepseek-v3.1").render_prompt(conv) == f"{BOS}{U}q{A}</think>b</think>c{EOS}{U}r{A}</think>"


def test_deepseek_v32_documented_example_thinking() -> None:
    conv = Conversation([
        Message("user", "hello"), Message("assistant", "Hello! I am DeepSeek."), Message("user", "1+1=?"),
    ])
    expected = f"{BOS}{U}hello{A}</think>Hello! I am DeepSeek.{EOS}{U}1+1=?{A}<think>"
    assert get_template("deepseek-v3.1").render_prompt(conv, thinking=True) == expected


def test_deepseek_v4_reference_example_thinking() -> None:
    conv = reference_conversation(Message("assistant", "Hello!", reasoning="Greeting."))
    expected = f"{BOS}{SYSTEM}{U}Hi{A}</think>Hello!{EOS}{U}What is 2+2?{A}<think>"
    assert get_template("deepseek-v4").render_prompt(conv, thinking=True) == expected


def test_deepseek_v4_chat_mode_prompt() -> None:
    conv = Conversation([Message("user", "Hi")])
    assert get_template("deepseek-v4").render_prompt(conv) == f"{BOS}{U}Hi{A}</think>"


@pytest.mark.parametrize("name", ["deepseek-v3", "deepseek-r1", "deepseek-v3.1", "deepseek-v4"])
def test_multiple_system_messages_are_joined_before_the_first_turn(name: str) -> None:
    conv = Conversation([Message("system", "A."), Message("user", "Hi"), Message("system", "B.")])
    assert get_template(name).render_prompt(conv).startswith(f"{BOS}A.\n\nB.{U}Hi{A}")


def test_deepseek_llm_keeps_system_messages_in_place() -> None:
    conv = Conversation([Message("system", "A."), Message("user", "Hi"), Message("system", "B.")])
    assert get_template("deepseek-llm").render_prompt(conv) == f"{BOS}A.\n\nUser: Hi\n\nB.\n\nAssistant:"


def test_r1_multi_turn_without_system() -> None:
    conv = Conversation([
        Message("user", "a"), Message("assistant", "b", reasoning="x"), Message("user", "c"),
        Message("assistant", "<think>y</think>\n\nd"), Message("user", "e"),
    ])
    assert get_template("deepseek-r1").render_prompt(conv) == f"{BOS}{U}a{A}b{EOS}{U}c{A}\n\nd{EOS}{U}e{A}<think>\n"


def test_v3_and_r1_tool_round() -> None:
    call = {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    conv = Conversation([
        Message("user", "Weather?"), Message("assistant", "", tool_calls=[call]),
        Message("tool", "22C"), Message("tool", "sunny"), Message("assistant", "22C and sunny."),
        Message("user", "Thanks"),
    ])
    calls = ("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n"
             '{"city": "Paris"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>')
    outputs = ("<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>22C<｜tool▁output▁end｜>"
               "<｜tool▁output▁begin｜>sunny<｜tool▁output▁end｜><｜tool▁outputs▁end｜>")
    head = f"{BOS}{U}Weather?{A}{calls}{EOS}{outputs}22C and sunny.{EOS}{U}Thanks{A}"
    assert get_template("deepseek-v3").render_prompt(conv) == head
    assert get_template("deepseek-r1").render_prompt(conv) == head + "<think>\n"


def test_generation_prompt_after_tool_results_is_the_closed_outputs_block() -> None:
    conv = Conversation([
        Message("user", "q"),
        Message("assistant", "", tool_calls=[{"type": "function", "function": {"name": "f", "arguments": {"x": 1}}}]),
        Message("tool", "out"),
    ])
    text = get_template("deepseek-r1").render_prompt(conv)
    assert text.endswith('```json\n{"x": 1}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜><｜end▁of▁sentence｜>'
                         "<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>out<｜tool▁output▁end｜><｜tool▁outputs▁end｜>")


def test_v31_tool_round() -> None:
    call = {"type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    conv = Conversation([
        Message("user", "q"), Message("assistant", "", tool_calls=[call, call]), Message("tool", "r"),
        Message("assistant", "done"),
    ])
    expected = (f"{BOS}{U}q{A}</think><｜tool▁calls▁begin｜>"
                + '<｜tool▁call▁begin｜>f<｜tool▁sep｜>{"a": 1}<｜tool▁call▁end｜>' * 2
                + f"<｜tool▁calls▁end｜>{EOS}<｜tool▁output▁begin｜>r<｜tool▁output▁end｜>done{EOS}")
    assert get_template("deepseek-v3.1").render_prompt(conv) == expected


def test_v4_tool_results_go_into_a_user_turn() -> None:
    conv = Conversation([
        Message("user", "q"), Message("assistant", "calling"), Message("tool", "r1"), Message("tool", "r2"),
    ])
    expected = f"{BOS}{U}q{A}</think>calling{EOS}{U}<tool_result>r1</tool_result><tool_result>r2</tool_result>{A}</think>"
    assert get_template("deepseek-v4").render_prompt(conv) == expected


def test_no_generation_prompt_when_asked() -> None:
    conv = Conversation([Message("user", "Hi"), Message("assistant", "Hello!")])
    assert get_template("deepseek-r1").render_prompt(conv, add_generation_prompt=False) == f"{BOS}{U}Hi{A}Hello!{EOS}"


# DeepSeek-V4 tool calls: DSML after the content, as the official V4 encoding writes them (encoding_dsv4:
# tool results merged into a user turn; in thinking mode only turns after the last user/tool-result turn
# keep their reasoning; a string parameter is written as is, anything else as JSON).
V4_CALL = {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris", "days": 2}'}}
V4_CALLS = ('\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name="get_weather">\n'
            '<｜DSML｜parameter name="city" string="true">Paris</｜DSML｜parameter>\n'
            '<｜DSML｜parameter name="days" string="false">2</｜DSML｜parameter>\n'
            '</｜DSML｜invoke>\n</｜DSML｜tool_calls>')


def v4_tool_round() -> Conversation:
    return Conversation([
        Message("user", "Weather in Paris?"),
        Message("assistant", "", reasoning="Need the weather tool.", tool_calls=[V4_CALL]),
        Message("tool", "22C"),
        Message("assistant", "It is 22C.", reasoning="The tool said 22C."),
    ])


def test_v4_tool_call_round_chat_mode() -> None:
    expected = (f"{BOS}{U}Weather in Paris?{A}</think>{V4_CALLS}{EOS}"
                f"{U}<tool_result>22C</tool_result>{A}</think>It is 22C.{EOS}")
    assert get_template("deepseek-v4").render_prompt(v4_tool_round(), add_generation_prompt=False) == expected


def test_v4_tool_call_round_thinking_mode() -> None:
    expected = (f"{BOS}{U}Weather in Paris?{A}</think>{V4_CALLS}{EOS}"
                f"{U}<tool_result>22C</tool_result>{A}<think>The tool said 22C.</think>It is 22C.{EOS}")
    assert get_template("deepseek-v4").render_prompt(v4_tool_round(), thinking=True,
                                                     add_generation_prompt=False) == expected


def test_v4_parallel_calls_and_json_parameter_values() -> None:
    second = {"type": "function", "function": {"name": "search", "arguments": {"q": "雨", "opts": {"n": 3}, "ok": True}}}
    conv = Conversation([Message("user", "q"), Message("assistant", "Checking.", tool_calls=[V4_CALL, second])])
    expected = (f"{BOS}{U}q{A}</think>Checking.\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"get_weather\">\n"
                '<｜DSML｜parameter name="city" string="true">Paris</｜DSML｜parameter>\n'
                '<｜DSML｜parameter name="days" string="false">2</｜DSML｜parameter>\n</｜DSML｜invoke>\n'
                '<｜DSML｜invoke name="search">\n<｜DSML｜parameter name="q" string="true">雨</｜DSML｜parameter>\n'
                '<｜DSML｜parameter name="opts" string="false">{"n": 3}</｜DSML｜parameter>\n'
                '<｜DSML｜parameter name="ok" string="false">true</｜DSML｜parameter>\n</｜DSML｜invoke>\n'
                f"</｜DSML｜tool_calls>{EOS}")
    assert get_template("deepseek-v4").render_prompt(conv, add_generation_prompt=False) == expected


# DeepSeek-V3.2: the official encoding (encoding_dsv32.encode_messages, as vLLM calls it: tools passed as a
# leading system message). Strings written out from the encoding's documented templates.
V32_TOOLS_PROMPT = """## Tools

You have access to a set of tools you can use to answer the user's question.
You can invoke functions by writing a "<｜DSML｜function_calls>" block like the following as part of your reply to the user:
<｜DSML｜function_calls>
<｜DSML｜invoke name="$FUNCTION_NAME">
<｜DSML｜parameter name="$PARAMETER_NAME" string="true|false">$PARAMETER_VALUE</｜DSML｜parameter>
...
</｜DSML｜invoke>
<｜DSML｜invoke name="$FUNCTION_NAME2">
...
</｜DSML｜invoke>
</｜DSML｜function_calls>

String and scalar parameters should be specified as is without any escaping or quotes, while lists and objects should use JSON format. The "string" attribute should be set to "true" for string type parameters and "false" for other types (numbers, booleans, arrays, objects).

If the thinking_mode is enabled, then after function results you should strongly consider outputting a thinking block. Here is an example:

<｜DSML｜function_calls>
...
</｜DSML｜function_calls>

<function_results>
...
</function_results>

<think>...thinking about results</think>

Here are the functions available in JSONSchema format:
<functions>
"""


def v32_documented_conversation() -> Conversation:
    return Conversation([
        Message("user", "hello"), Message("assistant", "Hello! I am DeepSeek.", reasoning="thinking..."),
        Message("user", "1+1=?"),
    ])


def test_deepseek_v32_documented_example() -> None:
    v32 = get_template("deepseek-v3.2")
    history = f"{BOS}{U}hello{A}</think>Hello! I am DeepSeek.{EOS}{U}1+1=?{A}"
    assert v32.render_prompt(v32_documented_conversation(), thinking=True) == history + "<think>"
    assert v32.render_prompt(v32_documented_conversation()) == history + "</think>"
    # Every user turn opens the reply: there is no separate generation prompt.
    assert v32.render_prompt(v32_documented_conversation(), add_generation_prompt=False) == history + "</think>"


def test_deepseek_v32_system_messages_stay_where_they_are() -> None:
    conv = Conversation([Message("system", "A."), Message("user", "Hi"), Message("system", "B.")])
    assert get_template("deepseek-v3.2").render_prompt(conv) == f"{BOS}A.{U}Hi{A}</think>B."


def test_deepseek_v32_tool_round_thinking_with_tool_definitions() -> None:
    weather = {"name": "get_weather", "description": "Weather of a city",
               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
    call = {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    conv = Conversation([
        Message("system", SYSTEM), Message("user", "Weather in Paris?"),
        Message("assistant", "", reasoning="Need weather.", tool_calls=[call]),
        Message("tool", "22C"), Message("assistant", "It is 22C.", reasoning="Got it."),
    ], tools=[{"type": "function", "function": weather}])
    schema = ('{"name": "get_weather", "description": "Weather of a city", "parameters": {"type": "object", '
              '"properties": {"city": {"type": "string"}}}}')
    expected = (
        f"{BOS}\n\n{V32_TOOLS_PROMPT}{schema}\n</functions>\n{SYSTEM}{U}Weather in Paris?{A}<think>Need weather.</think>"
        '\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name="get_weather">\n'
        '<｜DSML｜parameter name="city" string="true">Paris</｜DSML｜parameter>\n</｜DSML｜invoke>\n'
        f"</｜DSML｜function_calls>{EOS}"
        f"\n\n<function_results>\n<result>22C</result>\n</function_results>\n\n<think>Got it.</think>It is 22C.{EOS}"
    )
    assert get_template("deepseek-v3.2").render_prompt(conv, thinking=True) == expected


def test_deepseek_v32_parallel_calls_chat_mode() -> None:
    first = {"type": "function", "function": {"name": "f", "arguments": {"n": 1, "tags": ["a"]}}}
    second = {"type": "function", "function": {"name": "g", "arguments": {}}}
    conv = Conversation([
        Message("user", "q"), Message("assistant", "Calling.", tool_calls=[first, second]),
        Message("tool", "r1"), Message("tool", "r2"),
    ])
    expected = (
        f"{BOS}{U}q{A}</think>Calling.\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"f\">\n"
        '<｜DSML｜parameter name="n" string="false">1</｜DSML｜parameter>\n'
        '<｜DSML｜parameter name="tags" string="false">["a"]</｜DSML｜parameter>\n</｜DSML｜invoke>\n'
        '<｜DSML｜invoke name="g">\n\n</｜DSML｜invoke>\n</｜DSML｜function_calls>'
        f"{EOS}\n\n<function_results>\n<result>r1</result>\n<result>r2</result>\n</function_results>\n\n</think>"
    )
    assert get_template("deepseek-v3.2").render_prompt(conv) == expected


def test_deepseek_v32_rejects_unpaired_tool_results() -> None:
    from dsft.errors import DsftError

    call = {"type": "function", "function": {"name": "f", "arguments": {}}}
    orphan = Conversation([Message("user", "q"), Message("tool", "r")])
    extra = Conversation([Message("user", "q"), Message("assistant", "", tool_calls=[call]),
                          Message("tool", "r"), Message("tool", "again")])
    early = Conversation([Message("user", "q"), Message("assistant", "", tool_calls=[call, call]),
                          Message("tool", "r"), Message("user", "next")])
    for conv, message in ((orphan, "message 1 is a tool result"), (extra, "message 3 is a tool result"),
                          (early, "message 3 comes before every tool call")):
        with pytest.raises(DsftError, match=message):
            get_template("deepseek-v3.2").render_prompt(conv)


# DeepSeek-V4 tool definitions: DeepSeek's published encoding (encoding_dsv4.encode_messages), with a request's
# tools on the first system message as vLLM's V4 adapter passes them (it adds an empty system message when there
# is none). The conversation and its thinking-mode string are the encoding's own test case (encoding/tests/
# test_input_1.json and test_output_1.txt, shipped with the V4 models); the other strings were written out by
# that encoding. Each is checked on the Python renderer and on the Jinja twin.
V4_TOOLS_PROMPT = """## Tools

You have access to a set of tools to help answer the user's question. You can invoke tools by writing a "<｜DSML｜tool_calls>" block like the following:

<｜DSML｜tool_calls>
<｜DSML｜invoke name="$TOOL_NAME">
<｜DSML｜parameter name="$PARAMETER_NAME" string="true|false">$PARAMETER_VALUE</｜DSML｜parameter>
...
</｜DSML｜invoke>
<｜DSML｜invoke name="$TOOL_NAME2">
...
</｜DSML｜invoke>
</｜DSML｜tool_calls>

String parameters should be specified as is and set `string="true"`. For all other types (numbers, booleans, arrays, objects), pass the value in JSON format and set `string="false"`.

If thinking_mode is enabled (triggered by <think>), you MUST output your complete reasoning inside <think>...</think> BEFORE any tool calls or final response.

Otherwise, output directly after </think> with tool calls or final response.

### Available Tool Schemas

"""
V4_TOOLS_OUTRO = "\n\nYou MUST strictly follow the above defined tool name and parameter schemas to invoke tool calls.\n"
V4_PUBLISHED_TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Get the weather for a specific location",
        "parameters": {"type": "object", "properties": {
            "location": {"type": "string", "description": "The city name"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "Temperature unit"}},
            "required": ["location"]}}},
    {"type": "function", "function": {
        "name": "search", "description": "Search the web for information",
        "parameters": {"type": "object", "properties": {
            "query": {"type": "string", "description": "Search query"},
            "num_results": {"type": "integer", "description": "Number of results to return"}},
            "required": ["query"]}}},
]
V4_PUBLISHED_SCHEMAS = (
    '{"name": "get_weather", "description": "Get the weather for a specific location", "parameters": {"type": '
    '"object", "properties": {"location": {"type": "string", "description": "The city name"}, "unit": {"type": '
    '"string", "enum": ["celsius", "fahrenheit"], "description": "Temperature unit"}}, "required": ["location"]}}\n'
    '{"name": "search", "description": "Search the web for information", "parameters": {"type": "object", '
    '"properties": {"query": {"type": "string", "description": "Search query"}, "num_results": {"type": "integer", '
    '"description": "Number of results to return"}}, "required": ["query"]}}'
)
V4_TOOLS_TEXT = f"\n\n{V4_TOOLS_PROMPT}{V4_PUBLISHED_SCHEMAS}{V4_TOOLS_OUTRO}"
V4_PUBLISHED_CALLS = ('\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name="get_weather">\n'
                      '<｜DSML｜parameter name="location" string="true">Beijing</｜DSML｜parameter>\n'
                      '<｜DSML｜parameter name="unit" string="true">celsius</｜DSML｜parameter>\n'
                      '</｜DSML｜invoke>\n</｜DSML｜tool_calls>')
V4_WEATHER = '{"temperature": 22, "condition": "sunny", "humidity": 45}'
V4_ANSWER = "The weather in Beijing is currently sunny with a temperature of 22°C and 45% humidity."


def v4_published_tool_conversation(system: bool = True) -> Conversation:
    """encoding/tests/test_input_1.json (call arguments as an object: the Jinja twin needs one)."""
    call = {"id": "call_001", "type": "function",
            "function": {"name": "get_weather", "arguments": {"location": "Beijing", "unit": "celsius"}}}
    messages = [
        Message("user", "What's the weather in Beijing?"),
        Message("assistant", "", tool_calls=[call],
                reasoning="The user wants to know the weather in Beijing. I should use the get_weather tool."),
        Message("tool", V4_WEATHER, tool_call_id="call_001"),
        Message("assistant", V4_ANSWER, reasoning="Got the weather data. Let me format a nice response."),
    ]
    return Conversation(([Message("system", SYSTEM)] if system else []) + messages, tools=V4_PUBLISHED_TOOLS)


def v4_renderings(tokenizer: Any, conv: Conversation, thinking: bool, add_generation_prompt: bool) -> list[str]:
    """The Python renderer's prompt and the Jinja twin's, for one conversation."""
    template = get_template("deepseek-v4")
    python = template.render_prompt(conv, thinking=thinking, add_generation_prompt=add_generation_prompt)
    return [python, jinja_render(tokenizer, template.chat_template, conv, add_generation_prompt,
                                 **template.jinja_kwargs(thinking))]


def test_v4_published_tool_example_thinking_mode(tokenizer: Any) -> None:
    """System message + tools, thinking mode: the encoding's own golden output (test_output_1.txt). With tools,
    every turn keeps its reasoning (the encoding turns drop_thinking off when any message carries tools)."""
    expected = (
        f"{BOS}{SYSTEM}{V4_TOOLS_TEXT}{U}What's the weather in Beijing?{A}<think>The user wants to know the weather "
        f"in Beijing. I should use the get_weather tool.</think>{V4_PUBLISHED_CALLS}{EOS}"
        f"{U}<tool_result>{V4_WEATHER}</tool_result>{A}<think>Got the weather data. Let me format a nice response."
        f"</think>{V4_ANSWER}{EOS}"
    )
    assert v4_renderings(tokenizer, v4_published_tool_conversation(), True, False) == [expected, expected]


def test_v4_tool_definitions_chat_mode(tokenizer: Any) -> None:
    expected = (f"{BOS}{SYSTEM}{V4_TOOLS_TEXT}{U}What's the weather in Beijing?{A}</think>{V4_PUBLISHED_CALLS}{EOS}"
                f"{U}<tool_result>{V4_WEATHER}</tool_result>{A}</think>{V4_ANSWER}{EOS}")
    assert v4_renderings(tokenizer, v4_published_tool_conversation(), False, False) == [expected, expected]


@pytest.mark.parametrize("thinking", [True, False])
def test_v4_tool_definitions_without_a_system_message(tokenizer: Any, thinking: bool) -> None:
    """No system message: vLLM's V4 adapter adds an empty one for the tools, so the prompt opens with BOS and the
    tools text's own leading blank line. Prompts after the question and after the tool result."""
    conv = v4_published_tool_conversation(system=False)
    mark = "<think>" if thinking else "</think>"
    asked = f"{BOS}{V4_TOOLS_TEXT}{U}What's the weather in Beijing?{A}{mark}"
    question = Conversation(conv.messages[:1], tools=conv.tools)
    assert v4_renderings(tokenizer, question, thinking, True) == [asked, asked]
    reasoning = "The user wants to know the weather in Beijing. I should use the get_weather tool.</think>"
    reasoning = reasoning if thinking else ""
    answered = f"{asked}{reasoning}{V4_PUBLISHED_CALLS}{EOS}{U}<tool_result>{V4_WEATHER}</tool_result>{A}{mark}"
    after_result = Conversation(conv.messages[:3], tools=conv.tools)
    assert v4_renderings(tokenizer, after_result, thinking, True) == [answered, answered]


def test_v4_rejects_malformed_tool_definitions() -> None:
    from dsft.errors import DsftError

    conv = Conversation([Message("user", "q")], tools=[{"name": "get_weather"}])
    with pytest.raises(DsftError, match=r"tools\[0\]: must look like"):
        get_template("deepseek-v4").render_prompt(conv)
