"""DeepSeek-V4 renderer (modes ``chat`` and ``thinking``), after DeepSeek's published ``encoding_dsv4``.

Rendering: BOS, system messages joined by ``\\n\\n``, then the tool definitions (OpenAI ``tools``) when
there are any: ``\\n\\n## Tools…`` with one JSON schema per line (:data:`TOOLS_PROMPT`), as the
encoding appends them to the system message that carries them and vLLM attaches a request's ``tools``
to the first system message (or to an empty one it adds); users as ``<｜User｜>content``; each assistant
turn opens with ``<｜Assistant｜>`` then ``<think>`` when its reasoning is shown (thinking mode, after
the last user turn; or every turn when tools are defined) or ``</think>`` otherwise, then
``reasoning</think>content`` (think open) or ``content``, then EOS. History turns take reasoning from
``reasoning`` (``reasoning_content``) only and keep the content after its last ``</think>``. Generation prompt:
``<｜Assistant｜><think>`` (thinking) or ``<｜Assistant｜></think>`` (chat, the default here), written
whenever asked for (every V4 assistant turn opens with it, so a trained turn's prompt always ends so).
V4 has no ``tool`` role: tool results are written into a user turn as
``<tool_result>…</tool_result>`` (consecutive results share one user turn). Assistant tool calls are
DSML (:mod:`dsft.templates.dsml`, block ``tool_calls``) after the content, before EOS:
``…content\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name="f">\n…\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>``.
"""

from __future__ import annotations

from dsft.data.conversation import Conversation, Message
from dsft.templates.base import Segment, split_think_content
from dsft.templates.deepseek_v3 import system_segments
from dsft.templates.dsml import dsml_tool_calls, tool_schemas
from dsft.templates.family import TemplateFamily
from dsft.markers import ASSISTANT, BOS, DSML, END_THINK, EOS, THINK, USER
from dsft.templates.ollama_go import v3_layout

V4_SPECIAL_TOKENS = (BOS, EOS, USER, ASSISTANT, THINK, END_THINK)

# The tool-definition text of the published encoding (its TOOLS_TEMPLATE): DSML ``tool_calls`` format,
# the thinking-mode rule, then one JSON schema per line. Written after the system prompt as "\n\n" + this.
TOOLS_PROMPT = f"""## Tools

You have access to a set of tools to help answer the user's question. You can invoke tools by writing a "<{DSML}tool_calls>" block like the following:

<{DSML}tool_calls>
<{DSML}invoke name="$TOOL_NAME">
<{DSML}parameter name="$PARAMETER_NAME" string="true|false">$PARAMETER_VALUE</{DSML}parameter>
...
</{DSML}invoke>
<{DSML}invoke name="$TOOL_NAME2">
...
</{DSML}invoke>
</{DSML}tool_calls>

String parameters should be specified as is and set `string="true"`. For all other types (numbers, booleans, arrays, objects), pass the value in JSON format and set `string="false"`.

If thinking_mode is enabled (triggered by {THINK}), you MUST output your complete reasoning inside {THINK}...{END_THINK} BEFORE any tool calls or final response.

Otherwise, output directly after {END_THINK} with tool calls or final response.

### Available Tool Schemas

{{schemas}}

You MUST strictly follow the above defined tool name and parameter schemas to invoke tool calls.
"""


def tools_prompt(tools: list) -> str:
    """The text OpenAI-form tool definitions add after the system prompt (``\\n\\n## Tools…``)."""
    return "\n\n" + TOOLS_PROMPT.replace("{schemas}", tool_schemas(tools))


def _assistant_segments(message: Message, index: int, trained: bool, show_reasoning: bool,
                        thinking: bool | None) -> list[Segment]:
    calls = dsml_tool_calls(message, index, "tool_calls")
    if trained:
        reasoning, answer = split_think_content(message)
        show_reasoning = thinking if thinking is not None else bool(reasoning)
        reasoning = (reasoning or "").strip("\n")
    else:
        # History: reasoning only from the message's own field; an inline think block in the content is
        # dropped as R1 drops it (the text after the last </think> stays).
        reasoning, answer = message.reasoning or "", message.content.split(END_THINK)[-1]
    header = ASSISTANT + (THINK if show_reasoning else END_THINK)
    body = f"{reasoning}{END_THINK}{answer}" if show_reasoning else answer
    return [Segment(header, owner=index), Segment(body + calls + EOS, owner=index, target=trained)]


def render_deepseek_v4(
    conv: Conversation, trained: frozenset[int], add_generation_prompt: bool, thinking: bool | None = None
) -> list[Segment]:
    """DeepSeek-V4 family. ``thinking`` picks the mode (None = chat). A trained turn renders
    ``<｜Assistant｜><think>`` + ``reasoning</think>answer`` + EOS in thinking mode, or
    ``<｜Assistant｜></think>`` + ``answer`` + EOS in chat mode; with ``thinking=None`` each trained
    turn is in thinking mode iff it has reasoning."""
    segments = [Segment(BOS), *system_segments(conv)]
    if conv.tools:
        segments.append(Segment(tools_prompt(conv.tools)))
    user_turns = [i for i, m in enumerate(conv.messages) if m.role in ("user", "tool")]
    last_user = user_turns[-1] if user_turns else -1
    previous = None  # role of the previous non-system message
    for i, message in enumerate(conv.messages):
        if message.role == "system":
            continue
        if message.role == "user":
            segments.append(Segment(USER + message.content, owner=i))
        elif message.role == "tool":
            opener = "" if previous == "tool" else USER
            segments.append(Segment(f"{opener}<tool_result>{message.content}</tool_result>", owner=i))
        else:
            show = bool(thinking) and (i > last_user or bool(conv.tools))
            segments.extend(_assistant_segments(message, i, i in trained, show, thinking))
        previous = message.role
    if add_generation_prompt:
        segments.append(Segment(ASSISTANT + (THINK if thinking else END_THINK)))
    return segments


FAMILY = TemplateFamily(
    "deepseek-v4", render_deepseek_v4, V4_SPECIAL_TOKENS,
    description="DeepSeek-V4: chat or thinking mode, tool definitions and DSML tool calls",
    thinking_flag="thinking", reasoning="hybrid", tool_call_format="dsml", renders_tool_definitions=True,
    vllm_reasoning_parser="deepseek_v4", vllm_tool_parser="deepseek_v4", vllm_tokenizer_mode="hf",
    # Ollama gets chat mode (the default here): every assistant turn opens with </think>.
    ollama=v3_layout(ASSISTANT + END_THINK, END_THINK),
    model_types=("deepseek_v4",),  # V4 ships no Jinja template: its config is the signature
)
