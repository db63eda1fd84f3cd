"""DeepSeek-V3.1 hybrid-thinking renderer.

Official rendering: BOS, system messages joined by ``\\n\\n``, users as ``<｜User｜>content``. An
assistant turn right after a user turn opens with ``<｜Assistant｜></think>`` (history is always
shown in non-thinking form) and keeps only the content after its first ``</think>``; then EOS.
Generation prompt (only after a user turn): ``<｜Assistant｜></think>`` (non-thinking, the default)
or ``<｜Assistant｜><think>`` (``thinking=True``, alias ``enable_thinking``), after which the model
writes ``reasoning</think>answer``. Tool calls (non-thinking mode only) are
``<｜tool▁calls▁begin｜>`` + ``<｜tool▁call▁begin｜>NAME<｜tool▁sep｜>ARGS<｜tool▁call▁end｜>`` per call
+ ``<｜tool▁calls▁end｜>``; tool results are ``<｜tool▁output▁begin｜>…<｜tool▁output▁end｜>`` and the
assistant continues right after them. Tool definitions are not rendered (the official template does
not either: describe them in the system prompt).
"""

from __future__ import annotations

from dsft.data.conversation import Conversation, Message
from dsft.templates.base import Segment, split_think_content
from dsft.templates.deepseek_v3 import system_segments, tool_call_parts
from dsft.templates.family import TemplateFamily
from dsft.markers import (
    ASSISTANT, BOS, END_THINK, EOS, THINK, TOOL_CALL_BEGIN, TOOL_CALL_END, TOOL_CALLS_BEGIN, TOOL_CALLS_END,
    TOOL_OUTPUT_BEGIN, TOOL_OUTPUT_END, TOOL_SEP, USER,
)
from dsft.templates.ollama_go import v3_layout

V31_SPECIAL_TOKENS = (BOS, EOS, USER, ASSISTANT, THINK, END_THINK)


def v31_tool_calls_text(message: Message, index: int) -> str:
    """The V3.1 tool-call block ("" without calls): no type, raw arguments, no separator between calls."""
    calls = [f"{TOOL_CALL_BEGIN}{name}{TOOL_SEP}{arguments}{TOOL_CALL_END}"
             for _, name, arguments in tool_call_parts(message, index)]
    return f"{TOOL_CALLS_BEGIN}{''.join(calls)}{TOOL_CALLS_END}" if calls else ""


def _assistant_segments(
    message: Message, index: int, trained: bool, after_user: bool, after_tool: bool, thinking: bool | None
) -> list[Segment]:
    calls = v31_tool_calls_text(message, index)
    header = ASSISTANT if after_user else ""
    if trained:
        reasoning, answer = split_think_content(message)
        mode = thinking if thinking is not None else bool(reasoning)
        # Thinking needs the <think> the header opens; tool calls are a non-thinking feature.
        think = after_user and mode and not message.tool_calls
        if after_user:
            header += THINK if think else END_THINK
        body = f"{(reasoning or '').strip(chr(10))}{END_THINK}{answer}" if think else answer
        return [Segment(header, owner=index), Segment(body + calls + EOS, owner=index, target=True)]
    if after_user:
        header += END_THINK
    content = message.content
    if not message.tool_calls and not after_tool and END_THINK in content:
        content = content.split(END_THINK, 1)[1]  # the official template: text after the FIRST </think>
    return [Segment(header + content + calls + EOS, owner=index)]


def render_deepseek_v31(
    conv: Conversation, trained: frozenset[int], add_generation_prompt: bool, thinking: bool | None = None
) -> list[Segment]:
    """DeepSeek-V3.1 family. ``thinking`` picks the generation prompt (None = non-thinking, as
    officially). A trained turn in thinking mode renders ``<｜Assistant｜><think>`` (prompt) +
    ``reasoning</think>answer`` + EOS (target); in non-thinking mode ``<｜Assistant｜></think>`` +
    ``answer`` + EOS. With ``thinking=None`` each trained turn is in thinking mode iff it has reasoning.
    """
    segments = [Segment(BOS), *system_segments(conv)]
    after_user = after_tool = False
    for i, message in enumerate(conv.messages):
        if message.role == "system":
            continue
        if message.role == "user":
            segments.append(Segment(USER + message.content, owner=i))
            after_user, after_tool = True, False
        elif message.role == "tool":
            segments.append(Segment(TOOL_OUTPUT_BEGIN + message.content + TOOL_OUTPUT_END, owner=i))
            after_user, after_tool = False, True
        else:
            segments.extend(_assistant_segments(message, i, i in trained, after_user, after_tool, thinking))
            after_user = after_tool = False
    if add_generation_prompt and after_user:
        segments.append(Segment(ASSISTANT + (THINK if thinking else END_THINK)))
    return segments


FAMILY = TemplateFamily(
    "deepseek-v3.1", render_deepseek_v31, V31_SPECIAL_TOKENS, heads_every_assistant_turn=False,
    description="DeepSeek-V3.1 hybrid: thinking (<think>) or not (</think>)",
    thinking_flag="thinking", reasoning="hybrid", vllm_reasoning_parser="deepseek_v3",
    tool_call_format="deepseek-v3.1", vllm_tool_parser="deepseek_v31",
    reasoning_left_out_hint="In deepseek-v3.1 a turn that calls tools, or follows tool results, is a non-thinking "
                            "turn; template.thinking=false renders every turn without reasoning.",
    # Ollama gets the non-thinking mode (the official default): every assistant turn opens with </think>.
    ollama=v3_layout(ASSISTANT + END_THINK, END_THINK),
    signature=lambda t: ASSISTANT + END_THINK in t,  # the history header <｜Assistant｜></think>
)
