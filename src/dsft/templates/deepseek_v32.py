"""DeepSeek-V3.2 renderer: the official encoding (``encoding_dsv32.py``), tool calls included.

V3.2 ships no Jinja template; DeepSeek publishes a Python encoder instead. Its rendering:

* BOS; a system message is its content, where it stands (no separator);
* a user turn is ``<｜User｜>content<｜Assistant｜>`` followed by ``<think>`` (the last user turn in
  thinking mode) or ``</think>`` (otherwise): every user turn opens the assistant's reply, so there is
  no separate generation prompt (``add_generation_prompt`` changes nothing);
* an assistant turn is ``reasoning</think>`` (thinking mode, after the last user turn only) + content
  + its DSML tool calls (block ``function_calls``, see :mod:`dsft.templates.dsml`) + EOS;
* tool results answer the calls of the assistant turn before them, in order:
  ``\\n\\n<function_results>`` + ``\\n<result>…</result>`` each + ``\\n</function_results>`` once all
  calls are answered, then ``\\n\\n<think>`` or ``\\n\\n</think>`` as after a user turn;
* tool definitions (OpenAI ``tools``) become a leading system message, as vLLM passes them:
  ``\\n\\n## Tools…`` with one JSON schema per line (:data:`TOOLS_PROMPT`).

Training keeps reasoning in trained turns: a trained turn picks its mode (``thinking``, or with
``thinking=None`` whether it carries reasoning), and the ``<think>`` / ``</think>`` before it follows
that mode, so a trained turn before the last user turn can be rendered in thinking mode too (the
official encoding would show it without reasoning). Untrained turns render exactly as the encoding
does.
"""

from __future__ import annotations

from dsft.data.conversation import Conversation, Message
from dsft.errors import DsftError
from dsft.templates.base import Segment, split_think_content
from dsft.templates.dsml import dsml_tool_calls, tool_schemas
from dsft.templates.family import TemplateFamily
from dsft.markers import ASSISTANT, BOS, DSML, END_THINK, EOS, THINK, USER
from dsft.templates.ollama_go import MARKER_STOPS
from dsft.templates.spec import OllamaTemplate

V32_SPECIAL_TOKENS = (BOS, EOS, USER, ASSISTANT, THINK, END_THINK)

# The tool-definition prompt of the official encoding (DSML format, then one JSON schema per line).
TOOLS_PROMPT = f"""## Tools

You have access to a set of tools you can use to answer the user's question.
You can invoke functions by writing a "<{DSML}function_calls>" block like the following as part of your reply to the user:
<{DSML}function_calls>
<{DSML}invoke name="$FUNCTION_NAME">
<{DSML}parameter name="$PARAMETER_NAME" string="true|false">$PARAMETER_VALUE</{DSML}parameter>
...
</{DSML}invoke>
<{DSML}invoke name="$FUNCTION_NAME2">
...
</{DSML}invoke>
</{DSML}function_calls>

String and scalar parameters should be specified as is without any escaping or quotes, while lists and objects should use JSON format. The "string" attribute should be set to "true" for string type parameters and "false" for other types (numbers, booleans, arrays, objects).

If the thinking_mode is enabled, then after function results you should strongly consider outputting a thinking block. Here is an example:

<{DSML}function_calls>
...
</{DSML}function_calls>

<function_results>
...
</function_results>

{THINK}...thinking about results{END_THINK}

Here are the functions available in JSONSchema format:
<functions>
{{schemas}}
</functions>
"""


def tools_prompt(tools: list) -> str:
    """The leading system text for OpenAI-form tool definitions (``{"type": "function", "function": {...}}``)."""
    return "\n\n" + TOOLS_PROMPT.replace("{schemas}", tool_schemas(tools))


def _thinking_modes(conv: Conversation, trained: frozenset[int], thinking: bool | None) -> dict[int, bool]:
    """Whether each assistant turn shows reasoning: trained turns by their mode, the others as the encoding
    does (thinking mode, after the last user turn)."""
    users = [i for i, m in enumerate(conv.messages) if m.role == "user"]
    last_user = users[-1] if users else -1
    modes = {}
    for i, message in enumerate(conv.messages):
        if message.role != "assistant":
            continue
        if i in trained:
            reasoning, _ = split_think_content(message)
            modes[i] = thinking if thinking is not None else bool(reasoning)
        else:
            modes[i] = bool(thinking) and i > last_user
    return modes


def _think_token(conv: Conversation, index: int, modes: dict[int, bool], official: bool) -> Segment:
    """``<think>`` / ``</think>`` after a user turn or closed results: the next assistant turn's mode, else
    the encoding's own rule (``official``). Owned by that assistant turn (its header, like V3's ``A``)."""
    following = index + 1
    if following < len(conv.messages) and conv.messages[following].role == "assistant":
        return Segment(THINK if modes[following] else END_THINK, owner=following)
    return Segment(THINK if official else END_THINK)


def _assistant_segment(message: Message, index: int, trained: bool, show: bool) -> Segment:
    calls = dsml_tool_calls(message, index, "function_calls")
    if trained:
        reasoning, answer = split_think_content(message)
        reasoning = (reasoning or "").strip("\n")
    else:
        reasoning, answer = message.reasoning or "", message.content
    head = f"{reasoning}{END_THINK}" if show else ""
    return Segment(head + answer + calls + EOS, owner=index, target=trained)


def render_deepseek_v32(
    conv: Conversation, trained: frozenset[int], add_generation_prompt: bool, thinking: bool | None = None
) -> list[Segment]:
    """DeepSeek-V3.2 family (see the module doc). ``thinking`` picks the mode (None = chat, the official
    default); ``add_generation_prompt`` is ignored (every user turn already opens the reply)."""
    segments = [Segment(BOS)]
    if conv.tools:
        segments.append(Segment(tools_prompt(conv.tools)))
    users = [i for i, m in enumerate(conv.messages) if m.role == "user"]
    last_user = users[-1] if users else -1
    modes = _thinking_modes(conv, trained, thinking)
    calls_open, results = 0, 0  # calls of the last assistant turn, and results given so far
    previous = None  # role of the message before
    for i, message in enumerate(conv.messages):
        if message.role != "tool" and results < calls_open and results:
            raise DsftError(f"template 'deepseek-v3.2': message {i} comes before every tool call of the assistant "
                            f"turn before it has its result ({results} of {calls_open}); V3.2 pairs them in order")
        if message.role == "system":
            segments.append(Segment(message.content, owner=i))
        elif message.role == "user":
            segments += [Segment(USER + message.content + ASSISTANT, owner=i),
                         _think_token(conv, i, modes, bool(thinking) and i == last_user)]
        elif message.role == "assistant":
            segments.append(_assistant_segment(message, i, i in trained, modes[i]))
            calls_open, results = len(message.tool_calls or []), 0
        else:
            if previous not in ("assistant", "tool") or results >= calls_open:
                raise DsftError(f"template 'deepseek-v3.2': message {i} is a tool result with no tool call left to "
                                "answer (V3.2 pairs each result with a call of the assistant turn before it)")
            results += 1
            opener = "\n\n<function_results>" if results == 1 else ""
            closer = "\n</function_results>\n\n" if results == calls_open else ""
            segments.append(Segment(f"{opener}\n<result>{message.content}</result>{closer}", owner=i))
            if closer:
                segments.append(_think_token(conv, i, modes, bool(thinking) and i >= last_user))
        previous = message.role
    return segments


# Ollama gets chat mode (the official default): each user turn already ends <｜Assistant｜></think>.
_OLLAMA = OllamaTemplate(
    "{{- if .System }}{{ .System }}{{ end }}"
    "{{- range $i, $_ := .Messages }}{{- $last := eq (len (slice $.Messages $i)) 1 }}"
    f'{{{{- if eq .Role "user" }}}}{USER}{{{{ .Content }}}}{ASSISTANT}{END_THINK}'
    f'{{{{- else if eq .Role "assistant" }}}}{{{{ .Content }}}}{{{{- if not $last }}}}{EOS}{{{{- end }}}}'
    "{{- end }}"
    "{{- end }}",
    MARKER_STOPS,
)

FAMILY = TemplateFamily(
    "deepseek-v3.2", render_deepseek_v32, V32_SPECIAL_TOKENS, hoists_system=False, heads_every_assistant_turn=False,
    description="DeepSeek-V3.2: the official encoding, thinking or chat, DSML tool calls",
    thinking_flag="thinking", reasoning="hybrid", vllm_reasoning_parser="deepseek_v3", tool_call_format="dsml",
    renders_tool_definitions=True, vllm_tool_parser="deepseek_v32", vllm_tokenizer_mode="hf",
    ollama=_OLLAMA,
    model_types=("deepseek_v32",),  # V3.2 ships no Jinja template: its config is the signature
)
