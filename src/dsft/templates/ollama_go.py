"""Ollama (Go template) text for the DeepSeek layouts; each family module picks its own.

Ollama ignores the Jinja chat template inside a GGUF and renders prompts with the Modelfile's Go
template, so each family's is written by hand, mirroring its Jinja one: BOS is left out (llama.cpp
adds it, as ``tokenizer.ggml.add_bos_token`` says), system text first, each user turn
``<｜User｜>…``, each assistant turn ``<｜Assistant｜>…`` with EOS unless it is the last message, and the
generation prompt when the last message is not the assistant's. Newlines are written as
``{{ "\\n" }}`` so Go's whitespace trimming cannot eat them.
"""

from __future__ import annotations

from dsft.markers import ASSISTANT, BOS, EOS, USER
from dsft.templates.spec import OllamaTemplate

_LOOP_HEAD = '{{- range $i, $_ := .Messages }}{{- $last := eq (len (slice $.Messages $i)) 1 }}'
MARKER_STOPS = (BOS, EOS, USER, ASSISTANT)


def v3_layout(generation_prompt: str, assistant_prefix: str = "") -> OllamaTemplate:
    """V3 / R1 / V3.1 / V4 layout: system text, then ``<｜User｜>`` / ``<｜Assistant｜>`` turns.

    ``assistant_prefix`` follows ``<｜Assistant｜>`` in history turns (V3.1/V4 write ``</think>``).
    """
    template = (
        '{{- if .System }}{{ .System }}{{ end }}'
        + _LOOP_HEAD
        + f'{{{{- if eq .Role "user" }}}}{USER}{{{{ .Content }}}}'
        + f'{{{{- else if eq .Role "assistant" }}}}{ASSISTANT}{assistant_prefix}{{{{ .Content }}}}'
        + f'{{{{- if not $last }}}}{EOS}{{{{- end }}}}'
        + '{{- end }}'
        + f'{{{{- if and $last (ne .Role "assistant") }}}}{generation_prompt}{{{{- end }}}}'
        + '{{- end }}'
    )
    return OllamaTemplate(template, MARKER_STOPS)


def go_newline(text: str) -> str:
    """``text`` with each newline written as ``{{ "\\n" }}`` (safe from Go's whitespace trimming)."""
    return text.replace("\n", '{{ "\\n" }}')
