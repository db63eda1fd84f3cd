"""Ollama packaging: ``model.gguf`` + a ``Modelfile`` whose Go TEMPLATE renders the training template.

Ollama ignores the Jinja chat template inside a GGUF and renders prompts with the Modelfile's Go
template, so each family's template is written here by hand, mirroring the Jinja one: BOS is left
out (llama.cpp adds it, as ``tokenizer.ggml.add_bos_token`` says), system text first, each user turn
``<｜User｜>…``, each assistant turn ``<｜Assistant｜>…`` with EOS unless it is the last message, and the
generation prompt when the last message is not the assistant's. R1-style models get the prompt
``<｜Assistant｜><think>\\n`` they were trained with, so the reply starts inside the reasoning block and
carries ``</think>`` before the answer. Newlines are written as ``{{ "\\n" }}`` so Go's whitespace
trimming cannot eat them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dsft.errors import UnsupportedError
from dsft.export.gguf_export import GGUF_FILE_NAME, GGUFExport, export_gguf
from dsft.export.hf import R1_SAMPLING, is_r1_family
from dsft.export.source import ExportSource

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
USER = "<｜User｜>"
ASSISTANT = "<｜Assistant｜>"

_LOOP_HEAD = '{{- range $i, $_ := .Messages }}{{- $last := eq (len (slice $.Messages $i)) 1 }}'


def _v3_like(generation_prompt: str, assistant_prefix: str = "") -> str:
    """V3 / R1 / V3.1 layout: system text, then ``<｜User｜>`` / ``<｜Assistant｜>`` turns."""
    return (
        '{{- if .System }}{{ .System }}{{ end }}'
        + _LOOP_HEAD
        + f'{{{{- if eq .Role "user" }}}}{USER}{{{{ .Content }}}}'
        + f'{{{{- else if eq .Role "assistant" }}}}{ASSISTANT}{assistant_prefix}{{{{ .Content }}}}'
        + f'{{{{- if not $last }}}}{EOS}{{{{- end }}}}'
        + '{{- end }}'
        + f'{{{{- if and $last (ne .Role "assistant") }}}}{generation_prompt}{{{{- end }}}}'
        + '{{- end }}'
    )


def _deepseek_llm() -> str:
    """DeepSeek-LLM chat: ``User: …\\n\\n`` / ``Assistant: …`` + EOS; prompt ``Assistant:`` (no space)."""
    return (
        '{{- if .System }}{{ .System }}{{ "\\n\\n" }}{{ end }}'
        + _LOOP_HEAD
        + '{{- if eq .Role "user" }}User: {{ .Content }}{{ "\\n\\n" }}'
        + f'{{{{- else if eq .Role "assistant" }}}}Assistant: {{{{ .Content }}}}{{{{- if not $last }}}}{EOS}{{{{- end }}}}'
        + '{{- end }}'
        + '{{- if and $last (ne .Role "assistant") }}Assistant:{{- end }}'
        + '{{- end }}'
    )


@dataclass(frozen=True)
class OllamaFamily:
    """What the Modelfile needs for one template family."""

    template: str
    stops: tuple[str, ...]


OLLAMA_FAMILIES: dict[str, OllamaFamily] = {
    "deepseek-r1": OllamaFamily(_v3_like(f'{ASSISTANT}<think>{{{{ "\\n" }}}}'), (BOS, EOS, USER, ASSISTANT)),
    "deepseek-v3": OllamaFamily(_v3_like(ASSISTANT), (BOS, EOS, USER, ASSISTANT)),
    # V3.1 non-thinking mode (the official default): every assistant turn opens with </think>.
    "deepseek-v3.1": OllamaFamily(_v3_like(f"{ASSISTANT}</think>", "</think>"), (BOS, EOS, USER, ASSISTANT)),
    "deepseek-llm": OllamaFamily(_deepseek_llm(), (EOS, "User:", "Assistant:")),
}


def ollama_model_name(text: str) -> str:
    """A valid Ollama model name from a run/model directory name (lowercase, [a-z0-9._-])."""
    name = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")
    return name or "dsft-model"


def sampling_parameters(template_name: str, generation_config_path: Path | None) -> dict[str, float]:
    """R1 family: temperature 0.6 / top_p 0.95; others: whatever the exported generation_config says."""
    if is_r1_family(template_name):
        return {"temperature": R1_SAMPLING["temperature"], "top_p": R1_SAMPLING["top_p"]}
    if generation_config_path is None or not generation_config_path.is_file():
        return {}
    config = json.loads(generation_config_path.read_text(encoding="utf-8"))
    return {key: float(config[key]) for key in ("temperature", "top_p") if config.get(key) is not None}


def render_modelfile(template_name: str, gguf_file: str = GGUF_FILE_NAME,
                     sampling: dict[str, float] | None = None) -> str:
    """The Modelfile text for a template family (:class:`UnsupportedError` for families without one)."""
    family = OLLAMA_FAMILIES.get(template_name)
    if family is None:
        raise UnsupportedError(
            f"ollama export: no Ollama template for chat template {template_name!r}; supported: "
            f"{', '.join(OLLAMA_FAMILIES)} (export --format gguf and write the Modelfile TEMPLATE by hand)"
        )
    lines = [f"FROM ./{gguf_file}", f'TEMPLATE """{family.template}"""']
    lines += [f'PARAMETER stop "{stop}"' for stop in family.stops]
    lines += [f"PARAMETER {key} {value:g}" for key, value in (sampling or {}).items()]
    return "\n".join(lines) + "\n"


def create_command(name: str) -> str:
    """The command that registers the model with a local Ollama (run inside the export directory)."""
    return f"ollama create {name} -f Modelfile"


def export_ollama(source: ExportSource, out_dir: Path, dtype: str = "auto", verify: bool = True,
                  tolerance: float | None = None, name: str | None = None,
                  echo: Callable[[str], None] = print) -> GGUFExport:
    """GGUF export (verified like ``--format gguf``) plus Modelfile and README with the ``ollama create`` command."""
    if source.template not in OLLAMA_FAMILIES:
        render_modelfile(source.template)  # raises the UnsupportedError before any conversion work
    result = export_gguf(source, out_dir, dtype=dtype, verify=verify, tolerance=tolerance, echo=echo)
    sampling = sampling_parameters(source.template, source.model_dir / "generation_config.json")
    (out_dir / "Modelfile").write_text(render_modelfile(source.template, GGUF_FILE_NAME, sampling), encoding="utf-8")
    model_name = ollama_model_name(name or (source.run_dir or source.model_dir).name)
    command = create_command(model_name)
    (out_dir / "README.md").write_text(
        f"# {model_name}\n\nExported by dsft (chat template `{source.template}`, {result.dtype}).\n\n"
        f"Register and run it with Ollama from this directory:\n\n```sh\ncd {out_dir.resolve()}\n{command}\n"
        f"ollama run {model_name}\n```\n",
        encoding="utf-8",
    )
    echo(f"ollama: cd {out_dir} && {command}")
    return result
