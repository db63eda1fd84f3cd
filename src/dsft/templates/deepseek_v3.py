"""DeepSeek-V3 (V2.5, V3, V3-0324) and DeepSeek-R1 (R1 and every R1-Distill) renderers.

Official rendering (both families): BOS, all system messages joined by ``\\n\\n``, then
``<｜User｜>content`` for users and ``<｜Assistant｜>content<｜end▁of▁sentence｜>`` for assistants.
R1 differs in two places: history assistant content keeps only the text after its last ``</think>``,
and the generation prompt is ``<｜Assistant｜><think>\\n`` (the model then writes
``reasoning\\n</think>\\n\\nanswer``).

Tool use follows the official templates: calls as ``<｜tool▁calls▁begin｜>`` + one
``<｜tool▁call▁begin｜>TYPE<｜tool▁sep｜>NAME\\n```json\\nARGS\\n```<｜tool▁call▁end｜>`` per call
(``\\n``-separated) + ``<｜tool▁calls▁end｜>``; consecutive tool results inside one
``<｜tool▁outputs▁begin｜>…<｜tool▁outputs▁end｜>`` block; the assistant turn after tool results
continues right after ``<｜tool▁outputs▁end｜>`` with no ``<｜Assistant｜>`` and no generation prompt.
Where the released templates are broken for multi-round tool use (the "first call" and "first
output" flags are never reset; a user turn after tool results never closes the outputs block), every
round is rendered like the first one and the block is closed. Single-round tool use and all
conversations without tools render byte-identically to the released templates.
"""

from __future__ import annotations

from dsft.data.conversation import Conversation, Message
from dsft.errors import DsftError
from dsft.templates.base import Segment, split_think_content, tool_arguments_text
from dsft.templates.family import TemplateFamily
from dsft.markers import (
    ASSISTANT, BOS, END_THINK, EOS, THINK, TOOL_CALL_BEGIN, TOOL_CALL_END, TOOL_CALLS_BEGIN, TOOL_CALLS_END,
    TOOL_OUTPUT_BEGIN, TOOL_OUTPUT_END, TOOL_OUTPUTS_BEGIN, TOOL_OUTPUTS_END, TOOL_SEP, USER,
)
from dsft.templates.ollama_go import go_newline, v3_layout

V3_SPECIAL_TOKENS = (BOS, EOS, USER, ASSISTANT)
R1_SPECIAL_TOKENS = (*V3_SPECIAL_TOKENS, THINK, END_THINK)


def system_segments(conv: Conversation) -> list[Segment]:
    """Every system message, wherever it stands, joined by ``\\n\\n`` (nothing before the first turn)."""
    segments: list[Segment] = []
    for i, message in enumerate(conv.messages):
        if message.role == "system":
            if segments:
                segments.append(Segment("\n\n"))
            segments.append(Segment(message.content, owner=i))
    return segments


def tool_call_parts(message: Message, index: int) -> list[tuple[str, str, str]]:
    """``(type, name, arguments text)`` of each OpenAI-form tool call, validated."""
    parts = []
    for k, call in enumerate(message.tool_calls or []):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise DsftError(
                f"message {index}: tool_calls[{k}] must look like "
                '{"type": "function", "function": {"name": ..., "arguments": ...}}'
            )
        parts.append((call.get("type") or "function", function["name"], tool_arguments_text(function.get("arguments", ""))))
    return parts


def v3_tool_calls_text(message: Message, index: int) -> str:
    """The V3/R1 tool-call block of an assistant message ("" without calls)."""
    calls = [
        f"{TOOL_CALL_BEGIN}{kind}{TOOL_SEP}{name}\n```json\n{arguments}\n```{TOOL_CALL_END}"
        for kind, name, arguments in tool_call_parts(message, index)
    ]
    return f"{TOOL_CALLS_BEGIN}{chr(10).join(calls)}{TOOL_CALLS_END}" if calls else ""


def think_block_target(reasoning: str | None, answer: str) -> str:
    """R1's trained continuation after ``<think>\\n``: ``reasoning\\n</think>\\n\\nanswer``.

    A turn without reasoning gets an empty think block (``\\n</think>\\n\\nanswer``): the prompt has
    already opened ``<think>\\n``, so the model must still close it before answering.
    """
    return f"{(reasoning or '').strip(chr(10))}\n{END_THINK}\n\n{answer.lstrip(chr(10))}"


def inline_reasoning(reasoning: str | None, answer: str) -> str:
    """A trained turn whose prompt did not open a think block: ``<think>\\n…\\n</think>\\n\\n`` + answer
    when there is reasoning, the answer alone otherwise."""
    if not reasoning:
        return answer
    return f"{THINK}\n{think_block_target(reasoning, answer)}"


def _assistant_segments(
    message: Message, index: int, trained: bool, after_tool: bool, r1: bool
) -> list[Segment]:
    calls = v3_tool_calls_text(message, index)
    # After tool results the turn continues right after <｜tool▁outputs▁end｜> (no header).
    header = "" if after_tool else ASSISTANT
    if trained:
        reasoning, answer = split_think_content(message)
        if r1 and not after_tool:
            header += THINK + "\n"
            body = think_block_target(reasoning, answer)
        else:
            body = inline_reasoning(reasoning, answer)
        return [Segment(header, owner=index), Segment(body + calls + EOS, owner=index, target=True)]
    content = message.content
    if r1 and not after_tool and not message.tool_calls and END_THINK in content:
        content = content.split(END_THINK)[-1]  # the official template: text after the LAST </think>
    return [Segment(header + content + calls + EOS, owner=index)]


def _render_v3_like(
    conv: Conversation, trained: frozenset[int], add_generation_prompt: bool, r1: bool
) -> list[Segment]:
    segments = [Segment(BOS), *system_segments(conv)]
    outputs_open = False  # inside a <｜tool▁outputs▁begin｜> block
    for i, message in enumerate(conv.messages):
        if message.role == "system":
            continue
        if message.role == "tool":
            opener = "" if outputs_open else TOOL_OUTPUTS_BEGIN
            segments.append(Segment(f"{opener}{TOOL_OUTPUT_BEGIN}{message.content}{TOOL_OUTPUT_END}", owner=i))
            outputs_open = True
            continue
        after_tool, outputs_open = outputs_open, False
        closer = TOOL_OUTPUTS_END if after_tool else ""
        if message.role == "user":
            segments.append(Segment(closer + USER + message.content, owner=i))
        else:
            if closer:
                segments.append(Segment(closer, owner=i))
            segments.extend(_assistant_segments(message, i, i in trained, after_tool, r1))
    if outputs_open:
        segments.append(Segment(TOOL_OUTPUTS_END))
    elif add_generation_prompt:
        segments.append(Segment(ASSISTANT + (THINK + "\n" if r1 else "")))
    return segments


def render_deepseek_v3(
    conv: Conversation, trained: frozenset[int], add_generation_prompt: bool, thinking: bool | None = None
) -> list[Segment]:
    """DeepSeek-V3 family. ``thinking`` is ignored (V3 has no thinking mode); a trained turn with
    reasoning writes it inline as ``<think>\\n…\\n</think>\\n\\n`` before the answer."""
    return _render_v3_like(conv, trained, add_generation_prompt, r1=False)


def render_deepseek_r1(
    conv: Conversation, trained: frozenset[int], add_generation_prompt: bool, thinking: bool | None = None
) -> list[Segment]:
    """DeepSeek-R1 family. ``thinking`` is ignored (R1 always thinks: the prompt opens ``<think>\\n``).

    A trained turn renders ``<｜Assistant｜><think>\\n`` (prompt) + ``reasoning\\n</think>\\n\\nanswer``
    + EOS (target); earlier untrained turns are stripped of reasoning as the official template does.
    """
    return _render_v3_like(conv, trained, add_generation_prompt, r1=True)


def _has_r1_generation_prompt(chat_template: str) -> bool:
    # Released templates hold the newline either escaped in a JSON-decoded string or literal.
    return any(f"{ASSISTANT}{THINK}{nl}" in chat_template for nl in ("\\n", "\n"))


V3 = TemplateFamily(
    "deepseek-v3", render_deepseek_v3, V3_SPECIAL_TOKENS,
    description="DeepSeek-V2.5, V3, V3-0324: <｜User｜>/<｜Assistant｜>, no thinking",
    tool_call_format="deepseek-v3", vllm_tool_parser="deepseek_v3",
    ollama=v3_layout(ASSISTANT),
    # V3's template has <｜Assistant｜> and no think handling at all.
    signature=lambda t: ASSISTANT in t and END_THINK not in t,
)

R1 = TemplateFamily(
    "deepseek-r1", render_deepseek_r1, R1_SPECIAL_TOKENS,
    description="DeepSeek-R1 and every R1-Distill: prompt ends <｜Assistant｜><think>\\n",
    reasoning="always", vllm_reasoning_parser="deepseek_r1", tool_call_format="deepseek-v3",
    vllm_tool_parser="deepseek_v3",
    # DeepSeek's recommended sampling for R1 and every R1 distill (model cards).
    sampling={"temperature": 0.6, "top_p": 0.95},
    # The generation prompt is the one training used, so the reply starts inside the reasoning block.
    ollama=v3_layout(go_newline(f"{ASSISTANT}{THINK}\n")),
    signature=_has_r1_generation_prompt,
)
