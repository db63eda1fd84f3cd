"""Ollama packaging: ``model.gguf`` + a ``Modelfile`` whose Go TEMPLATE renders the training template.

Ollama ignores the Jinja chat template inside a GGUF and renders prompts with the Modelfile's Go
template; each template family owns its Go template and stops
(:meth:`dsft.templates.spec.ChatTemplate.ollama_template`) and its recommended sampling. R1-style
models get the prompt ``<｜Assistant｜><think>\\n`` they were trained with, so the reply starts inside
the reasoning block and carries ``</think>`` before the answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dsft.export.bounds import LogitBound
from dsft.export.gguf_export import GGUF_FILE_NAME, GGUFExport, export_gguf
from dsft.export.source import ExportSource
from dsft.models.loading import load_tokenizer
from dsft.models.ollama_tags import OLLAMA_PART_MAX
from dsft.templates import get_template


def ollama_model_name(text: str) -> str:
    """A valid Ollama model name from a run/model directory name (lowercase, [a-z0-9._-], at most the characters
    Ollama takes in a model name: :mod:`dsft.models.ollama_tags`)."""
    name = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")[:OLLAMA_PART_MAX]
    return name or "dsft-model"


def ollama_name_for(name: str | None, directory_name: str) -> str:
    """The model name of an Ollama export: ``name`` as given (checked by
    :func:`dsft.export.options.check_export_options`), else one made from the run or model directory's name."""
    return name if name is not None else ollama_model_name(directory_name)


def sampling_parameters(template_name: str, generation_config_path: Path | None) -> dict[str, float]:
    """The family's recommended sampling (R1: temperature 0.6 / top_p 0.95); for families without one,
    whatever the exported generation_config says."""
    recommended = get_template(template_name).recommended_sampling
    if recommended:
        return dict(recommended)
    if generation_config_path is None or not generation_config_path.is_file():
        return {}
    config = json.loads(generation_config_path.read_text(encoding="utf-8"))
    return {key: float(config[key]) for key in ("temperature", "top_p") if config.get(key) is not None}


def render_modelfile(template_name: str, gguf_file: str = GGUF_FILE_NAME,
                     sampling: dict[str, float] | None = None, tokenizer: Any = None) -> str:
    """The Modelfile text for a template family (:class:`UnsupportedError` for families without one;
    ``hf`` reads the model's ``tokenizer``)."""
    ollama = get_template(template_name, tokenizer).ollama_template()
    lines = [f"FROM ./{gguf_file}", f'TEMPLATE """{ollama.template}"""']
    lines += [f'PARAMETER stop "{stop}"' for stop in ollama.stops]
    lines += [f"PARAMETER {key} {value:g}" for key, value in (sampling or {}).items()]
    return "\n".join(lines) + "\n"


def create_command(name: str) -> str:
    """The command that registers the model with a local Ollama (run inside the export directory)."""
    return f"ollama create {name} -f Modelfile"


def export_ollama(source: ExportSource, out_dir: Path, dtype: str = "auto", verify: bool = True,
                  tolerance: float | LogitBound | None = None, name: str | None = None,
                  echo: Callable[[str], None] = print) -> GGUFExport:
    """GGUF export (verified like ``--format gguf``) plus Modelfile and README with the ``ollama create`` command."""
    tokenizer = load_tokenizer(source.tokenizer_dir)
    render_modelfile(source.template, tokenizer=tokenizer)  # an UnsupportedError comes before any conversion work
    result = export_gguf(source, out_dir, dtype=dtype, verify=verify, tolerance=tolerance, echo=echo)
    sampling = sampling_parameters(source.template, source.model_dir / "generation_config.json")
    modelfile = render_modelfile(source.template, GGUF_FILE_NAME, sampling, tokenizer)
    (out_dir / "Modelfile").write_text(modelfile, encoding="utf-8")
    model_name = ollama_name_for(name, (source.run_dir or source.model_dir).name)
    command = create_command(model_name)
    (out_dir / "README.md").write_text(
        f"# {model_name}\n\nExported by dsft (chat template `{source.template}`, {result.dtype}).\n\n"
        f"Register and run it with Ollama from this directory:\n\n```sh\ncd {out_dir.resolve()}\n{command}\n"
        f"ollama run {model_name}\n```\n",
        encoding="utf-8",
    )
    _record_ollama(out_dir, model_name, command)
    echo(f"ollama: cd {out_dir} && {command}")
    return result


def _record_ollama(out_dir: Path, model_name: str, command: str) -> None:
    """``export.json`` (written by the GGUF export) says ``ollama``, with the model name, the Modelfile and
    the command that registers it."""
    path = out_dir / "export.json"
    meta = json.loads(path.read_text(encoding="utf-8"))
    meta.update(format="ollama", ollama={"name": model_name, "modelfile": "Modelfile", "create": command})
    path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
