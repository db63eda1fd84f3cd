"""What to evaluate: a model (directory, tiny preset, hub id) or a dsft run directory.

A run directory is recognised by its ``run.json``. Its template and thinking mode come from there (never
guessed); its ``final/`` holds either a LoRA adapter, which is loaded with peft on top of the base model
WITHOUT merging (what was trained is what is measured), or full weights. A plain model gets the template
named by ``--template`` or detected from its config and tokenizer.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsft.errors import DsftError


@dataclass
class EvalTarget:
    """A loaded model ready to generate, with the template and thinking mode its prompts use."""

    name: str
    model: Any
    tokenizer: Any
    template_name: str
    template: Any
    thinking: bool | None = None
    run_dir: Path | None = None
    adapter: bool = False

    def render_prompt(self, conversation: Any) -> str:
        """The inference prompt for ``conversation`` (the template's generation prompt included)."""
        return self.template.render_prompt(conversation, thinking=self.thinking)


def is_run_dir(path: str | Path) -> bool:
    """Whether ``path`` is a dsft run directory (holds ``run.json``)."""
    return (Path(path) / "run.json").is_file()


def read_run(run_dir: Path, required: Sequence[str] = ("template", "base_model")) -> dict[str, Any]:
    """``run.json`` of a run directory, with a clear error when it is unreadable or lacks a ``required`` key."""
    try:
        info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DsftError(f"{run_dir / 'run.json'}: unreadable ({exc})") from exc
    missing = [key for key in required if not info.get(key)]
    if missing:
        raise DsftError(f"{run_dir / 'run.json'}: missing {', '.join(missing)}; was the run written by dsft?")
    return info


def resolve_template(model_dir: Path, name: str | None, label: str, tokenizer: Any = None) -> tuple[str, Any]:
    """``name`` (``--template``) or the family detected from the model; an unknown one names ``template.name``.

    ``tokenizer`` is the one prompts are encoded with: the ``hf`` family renders with its chat template.
    """
    from dsft.templates import detect_template, get_template

    if not name or name == "auto":
        try:
            name = detect_template(model_dir)
        except DsftError as exc:
            raise DsftError(f"{label}: {exc} (on the command line: --template NAME)") from exc
    try:
        return name, get_template(name, tokenizer)
    except DsftError as exc:
        raise DsftError(f"template.name: {exc}") from exc


def _load_run(run_dir: Path, template_name: str | None, device: str | None, dtype: str,
              cache_dir: str | Path | None) -> EvalTarget:
    from dsft.models.loading import load_model, load_tokenizer
    from dsft.models.resolve import resolve_model

    info = read_run(run_dir)
    final = run_dir / str(info.get("final") or "final")
    if not final.is_dir():
        raise DsftError(f"{run_dir}: no {final.name}/ directory; the run has not finished (status: "
                        f"{info.get('status', 'unknown')})")
    base_dir = Path(info["base_model"])
    if not (base_dir / "config.json").is_file():
        # The base may have been a tiny preset in another cache, or a hub id: resolve the name again.
        base_dir = resolve_model(info.get("model_name_or_path") or info["base_model"], cache_dir=cache_dir)
    has_tokenizer = any((final / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json"))
    tokenizer = load_tokenizer(final if has_tokenizer else base_dir)
    name, template = resolve_template(base_dir, template_name or info["template"], str(run_dir), tokenizer)
    adapter = (final / "adapter_config.json").is_file()
    if adapter:
        from dsft.models.lora import load_lora_adapter

        # Loaded as trained (fused MoE expert targets included); never merged into the base weights.
        model = load_lora_adapter(load_model(base_dir, dtype=dtype, device=device), str(final))
        model.eval()
    else:
        model = load_model(final, dtype=dtype, device=device)
    return EvalTarget(str(run_dir), model, tokenizer, name, template, info.get("thinking"), run_dir, adapter)


def load_eval_target(model_or_run: str | Path, template_name: str | None = None, device: str | None = None,
                     dtype: str = "auto", cache_dir: str | Path | None = None) -> EvalTarget:
    """Load ``model_or_run`` for evaluation (see the module docstring)."""
    if is_run_dir(model_or_run):
        return _load_run(Path(model_or_run), template_name, device, dtype, cache_dir)
    from dsft.models.loading import load_model, load_tokenizer
    from dsft.models.resolve import resolve_model

    model_dir = resolve_model(model_or_run, cache_dir=cache_dir)
    tokenizer = load_tokenizer(model_dir)
    name, template = resolve_template(model_dir, template_name, str(model_or_run), tokenizer)
    model = load_model(model_dir, dtype=dtype, device=device)
    return EvalTarget(str(model_or_run), model, tokenizer, name, template)
