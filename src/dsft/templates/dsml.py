"""DSML: the tool-call format of DeepSeek-V3.2 and V4 (``<｜DSML｜invoke name="…">`` blocks).

An assistant turn's calls follow its content as ``\\n\\n<｜DSML｜BLOCK>\\n`` + one invoke per call
(``\\n``-separated) + ``\\n</｜DSML｜BLOCK>``, where BLOCK is ``function_calls`` (V3.2) or ``tool_calls``
(V4). An invoke is ``<｜DSML｜invoke name="NAME">\\n`` + one parameter per argument (``\\n``-separated)
+ ``\\n</｜DSML｜invoke>``; a parameter is
``<｜DSML｜parameter name="KEY" string="true">VALUE</｜DSML｜parameter>`` for a string value (written as
is) and ``string="false"`` with the value as JSON otherwise. Arguments are an object, or a JSON string
of one (OpenAI form), parsed as the official encodings do.

>>> from dsft.data.conversation import Message
>>> call = {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris", "days": 2}'}}
>>> print(dsml_tool_calls(Message("assistant", "", tool_calls=[call]), 1, "tool_calls"))
<BLANKLINE>
<BLANKLINE>
<｜DSML｜tool_calls>
<｜DSML｜invoke name="get_weather">
<｜DSML｜parameter name="city" string="true">Paris</｜DSML｜parameter>
<｜DSML｜parameter name="days" string="false">2</｜DSML｜parameter>
</｜DSML｜invoke>
</｜DSML｜tool_calls>
"""

from __future__ import annotations

import json
from typing import Any

from dsft.data.conversation import Message
from dsft.errors import DsftError
from dsft.markers import DSML


def to_json(value: Any) -> str:
    """JSON as the official encodings (and Jinja's ``tojson`` in transformers) write it."""
    return json.dumps(value, ensure_ascii=False)


def tool_schemas(tools: list) -> str:
    """OpenAI-form tool definitions (``{"type": "function", "function": {...}}``) as the encodings list them:
    each ``function`` object as JSON, one per line.

    >>> tool_schemas([{"type": "function", "function": {"name": "get_weather", "description": "Météo"}}])
    '{"name": "get_weather", "description": "Météo"}'
    """
    schemas = []
    for k, tool in enumerate(tools):
        if not isinstance(tool, dict) or not isinstance(tool.get("function"), dict):
            raise DsftError(f"tools[{k}]: must look like {{\"type\": \"function\", \"function\": {{...}}}}")
        schemas.append(to_json(tool["function"]))
    return "\n".join(schemas)


def call_name_and_arguments(call: Any, index: int, k: int) -> tuple[str, dict[str, Any]]:
    """``(name, arguments object)`` of an OpenAI-form tool call, validated (message ``index``, call ``k``)."""
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise DsftError(
            f"message {index}: tool_calls[{k}] must look like "
            '{"type": "function", "function": {"name": ..., "arguments": ...}}'
        )
    arguments = function.get("arguments", {})
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as exc:
            raise DsftError(f"message {index}: tool_calls[{k}].function.arguments is not valid JSON ({exc.msg}); "
                            "DSML writes each argument as a parameter, so it must be a JSON object") from None
    if not isinstance(arguments, dict):
        raise DsftError(f"message {index}: tool_calls[{k}].function.arguments must be a JSON object "
                        f"(DSML writes one parameter per key), got {type(arguments).__name__}")
    return function["name"], arguments


def dsml_parameter(key: str, value: Any) -> str:
    """One argument: a string as is (``string="true"``), anything else as JSON (``string="false"``)."""
    is_string = isinstance(value, str)
    text = value if is_string else to_json(value)
    return f'<{DSML}parameter name="{key}" string="{"true" if is_string else "false"}">{text}</{DSML}parameter>'


def dsml_invoke(name: str, arguments: dict[str, Any]) -> str:
    """One call: ``<｜DSML｜invoke name="NAME">`` with its parameters on their own lines."""
    parameters = "\n".join(dsml_parameter(str(key), value) for key, value in arguments.items())
    return f'<{DSML}invoke name="{name}">\n{parameters}\n</{DSML}invoke>'


def dsml_tool_calls(message: Message, index: int, block: str) -> str:
    """The calls block an assistant turn writes after its content ("" without calls)."""
    if not message.tool_calls:
        return ""
    invokes = [dsml_invoke(*call_name_and_arguments(call, index, k)) for k, call in enumerate(message.tool_calls)]
    return f"\n\n<{DSML}{block}>\n" + "\n".join(invokes) + f"\n</{DSML}{block}>"
