"""Tool calls read back out of a generated reply: the inverse of each family's tool-call writer.

A reply that ends in a well-formed calls block becomes its text before the block (the content) and
OpenAI-form calls (``{"id", "type": "function", "function": {"name", "arguments": JSON text}}``). A block
that is cut off (``max_tokens``) or malformed is left in the content, untouched, as vLLM's DeepSeek tool
parsers do: a client must never receive a call that was not written whole.

Formats (``ChatTemplate.tool_call_format``), each the exact inverse of the writer that renders training
data, so a model trained by dsft is read back the way it was taught (round-trip tests):

* ``deepseek-v3`` (V3, R1, R1-Distill; :func:`dsft.templates.deepseek_v3.v3_tool_calls_text`):
  ``<｜tool▁call▁begin｜>TYPE<｜tool▁sep｜>NAME\\n```json\\nARGS\\n```<｜tool▁call▁end｜>`` per call;
* ``deepseek-v3.1`` (:func:`dsft.templates.deepseek_v31.v31_tool_calls_text`):
  ``<｜tool▁call▁begin｜>NAME<｜tool▁sep｜>ARGS<｜tool▁call▁end｜>``;
* ``dsml`` (V3.2, V4; :func:`dsft.templates.dsml.dsml_tool_calls`): ``<｜DSML｜invoke name="NAME">``
  blocks with one parameter per argument, strings as written and other values as JSON.

>>> content, calls = parse_tool_calls("deepseek-v3.1",
...     'Checking.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{"city": "Paris"}'
...     '<｜tool▁call▁end｜><｜tool▁calls▁end｜>')
>>> content, calls[0]["function"]
('Checking.', {'name': 'get_weather', 'arguments': '{"city": "Paris"}'})
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dsft.markers import DSML, TOOL_CALL_BEGIN, TOOL_CALL_END, TOOL_CALLS_BEGIN, TOOL_CALLS_END, TOOL_SEP

ToolCall = dict[str, Any]

_V3_CALL = re.compile(
    re.escape(TOOL_CALL_BEGIN) + r"(?P<type>[^\n]*?)" + re.escape(TOOL_SEP)
    + r"(?P<name>[^\n]*?)\n```json\n(?P<args>.*?)\n```" + re.escape(TOOL_CALL_END), re.DOTALL)
_V31_CALL = re.compile(
    re.escape(TOOL_CALL_BEGIN) + r"(?P<name>.*?)" + re.escape(TOOL_SEP) + r"(?P<args>.*?)"
    + re.escape(TOOL_CALL_END), re.DOTALL)
_DSML_INVOKE = re.compile(rf'<{DSML}invoke name="(?P<name>[^"]*)">\n(?P<body>.*?)\n?</{DSML}invoke>', re.DOTALL)
_DSML_PARAMETER = re.compile(
    rf'<{DSML}parameter name="(?P<key>[^"]*)" string="(?P<string>true|false)">(?P<value>.*?)</{DSML}parameter>',
    re.DOTALL)


def openai_call(name: str, arguments: str) -> ToolCall:
    """One call as the OpenAI API returns it (arguments as JSON text, a fresh id)."""
    return {"id": f"call_{secrets.token_hex(12)}", "type": "function",
            "function": {"name": name, "arguments": arguments}}


def _whole(pattern: re.Pattern[str], block: str, separator: str) -> list[re.Match[str]] | None:
    """The matches covering ``block`` entirely (``separator`` between them), or None if anything is left over."""
    matches, position = [], 0
    for match in pattern.finditer(block):
        gap = block[position:match.start()]
        if gap not in ("", separator) or (gap and not matches):
            return None
        matches.append(match)
        position = match.end()
    return matches if matches and position == len(block) else None


def _marker_block(text: str) -> tuple[str, str] | None:
    """``(content, calls block)`` when ``text`` ends with one whole ``<｜tool▁calls▁begin｜>…end｜>`` block."""
    start = text.find(TOOL_CALLS_BEGIN)
    if start < 0 or not text.rstrip().endswith(TOOL_CALLS_END):
        return None
    block = text.rstrip()[start + len(TOOL_CALLS_BEGIN):-len(TOOL_CALLS_END)]
    return text[:start], block


def _parse_marker_calls(text: str, call: re.Pattern[str], separator: str) -> tuple[str, list[ToolCall]]:
    """A ``<｜tool▁calls▁begin｜>`` block of ``call`` matches (``separator`` between them) at the end of ``text``."""
    found = _marker_block(text)
    matches = _whole(call, found[1], separator) if found else None
    if not found or matches is None:
        return text, []
    return found[0], [openai_call(m["name"], m["args"]) for m in matches]


def parse_v3(text: str) -> tuple[str, list[ToolCall]]:
    return _parse_marker_calls(text, _V3_CALL, "\n")


def parse_v31(text: str) -> tuple[str, list[ToolCall]]:
    return _parse_marker_calls(text, _V31_CALL, "")


def _dsml_arguments(body: str) -> str | None:
    """An invoke's parameters as a JSON object text, or None when they do not parse."""
    if not body:
        return "{}"
    matches = _whole(_DSML_PARAMETER, body, "\n")
    if matches is None:
        return None
    arguments: dict[str, Any] = {}
    for match in matches:
        value: Any = match["value"]
        if match["string"] == "false":
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                return None
        arguments[match["key"]] = value
    return json.dumps(arguments, ensure_ascii=False)


def parse_dsml(text: str) -> tuple[str, list[ToolCall]]:
    """V3.2's ``function_calls`` or V4's ``tool_calls`` block (``\\n\\n`` before it belongs to the block)."""
    stripped = text.rstrip()
    for block_name in ("function_calls", "tool_calls"):
        opener, closer = f"\n\n<{DSML}{block_name}>\n", f"\n</{DSML}{block_name}>"
        start = stripped.find(opener)
        if start < 0 or not stripped.endswith(closer):
            continue
        invokes = _whole(_DSML_INVOKE, stripped[start + len(opener):-len(closer)], "\n")
        if invokes is None:
            return text, []
        calls = []
        for invoke in invokes:
            arguments = _dsml_arguments(invoke["body"])
            if arguments is None:
                return text, []
            calls.append(openai_call(invoke["name"], arguments))
        return text[:start], calls
    return text, []


@dataclass(frozen=True)
class ToolCallReader:
    """A format's parser and the text its calls block opens with (a stream holds text back from there)."""

    opener: str
    parse: Callable[[str], tuple[str, list[ToolCall]]]


READERS: dict[str, ToolCallReader] = {
    "deepseek-v3": ToolCallReader(TOOL_CALLS_BEGIN, parse_v3),
    "deepseek-v3.1": ToolCallReader(TOOL_CALLS_BEGIN, parse_v31),
    "dsml": ToolCallReader(f"\n\n<{DSML}", parse_dsml),
}


def parse_tool_calls(tool_call_format: str, text: str) -> tuple[str, list[ToolCall]]:
    """``(content, calls)`` of a reply in ``tool_call_format``; formats without a reader give ``(text, [])``."""
    reader = READERS.get(tool_call_format)
    return reader.parse(text) if reader else (text, [])
