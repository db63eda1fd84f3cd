"""DeepSeek-LLM chat renderer (DeepSeek-LLM 7B/67B chat, DeepSeek-MoE-16B chat, V2 / V2-Lite chat).

Official rendering: BOS; each system message as ``content\\n\\n`` where it stands; users as
``User: content\\n\\n``; assistants as ``Assistant: content`` + EOS; generation prompt ``Assistant:``
with no trailing space. So a trained target starts with a space: the prompt ends ``Assistant:`` and
the model writes `` answer`` + EOS. The family has no tool format; tool messages are rejected.
"""

from __future__ import annotations

from dsft.data.conversation import Conversation
from dsft.errors import UnsupportedError
from dsft.templates.base import Segment, split_think_content
from dsft.templates.deepseek_v3 import inline_reasoning
from dsft.templates.family import TemplateFamily
from dsft.markers import BOS, EOS
from dsft.templates.spec import OllamaTemplate

LLM_SPECIAL_TOKENS = (BOS, EOS)


def render_deepseek_llm(
    conv: Conversation, trained: frozenset[int], add_generation_prompt: bool, thinking: bool | None = None
) -> list[Segment]:
    """DeepSeek-LLM family (``thinking`` ignored). A trained turn with reasoning writes it inline as
    ``<think>\\n…\\n</think>\\n\\n`` before the answer (the family has no reasoning format of its own)."""
    segments = [Segment(BOS)]
    for i, message in enumerate(conv.messages):
        if message.role == "system":
            segments.append(Segment(message.content + "\n\n", owner=i))
        elif message.role == "user":
            segments.append(Segment(f"User: {message.content}\n\n", owner=i))
        else:
            if message.tool_calls:
                raise UnsupportedError(
                    f"template 'deepseek-llm': message {i} has tool_calls, which this family has no format "
                    "for; use a V3/R1 model or put the call in the content"
                )
            if i in trained:
                reasoning, answer = split_think_content(message)
                segments.append(Segment("Assistant:", owner=i))
                segments.append(Segment(" " + inline_reasoning(reasoning, answer) + EOS, owner=i, target=True))
            else:
                segments.append(Segment(f"Assistant: {message.content}{EOS}", owner=i))
    if add_generation_prompt:
        segments.append(Segment("Assistant:"))
    return segments


# Ollama: ``User: …\\n\\n`` / ``Assistant: …`` + EOS; prompt ``Assistant:`` (no space).
_NEWLINES = '{{ "\\n\\n" }}'  # Go template text for "\\n\\n" (safe from Go's whitespace trimming)
_OLLAMA = OllamaTemplate(
    "{{- if .System }}{{ .System }}" + _NEWLINES + "{{ end }}"
    + "{{- range $i, $_ := .Messages }}{{- $last := eq (len (slice $.Messages $i)) 1 }}"
    + '{{- if eq .Role "user" }}User: {{ .Content }}' + _NEWLINES
    + f'{{{{- else if eq .Role "assistant" }}}}Assistant: {{{{ .Content }}}}{{{{- if not $last }}}}{EOS}{{{{- end }}}}'
    + "{{- end }}"
    + '{{- if and $last (ne .Role "assistant") }}Assistant:{{- end }}'
    + "{{- end }}",
    (EOS, "User:", "Assistant:"),
)

FAMILY = TemplateFamily(
    "deepseek-llm", render_deepseek_llm, LLM_SPECIAL_TOKENS, roles=("system", "user", "assistant"), hoists_system=False,
    description="DeepSeek-LLM 7B/67B chat, MoE-16B chat, V2(-Lite) chat: 'User: …' / 'Assistant: …'",
    ollama=_OLLAMA,
    signature=lambda t: "'User: '" in t and "'Assistant:'" in t,
)
