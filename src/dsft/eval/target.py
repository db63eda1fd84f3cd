"""What to evaluate: a model (directory, tiny preset, hub id) or a dsft run directory.

A run is recognised by its ``run.json`` (:meth:`RunDir.find`: the run directory, its ``final/`` or one of its
checkpoints). Its template and thinking mode come from there (never guessed); its ``final/`` (or the
checkpoint) holds either a LoRA adapter, which is loaded with peft on top of the base model
WITHOUT merging (what was trained is what is measured), or full weights. A plain model gets the template
named by ``--template`` or detected from its config and tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsft.errors import DsftError
from dsft.models.loading import load_model, load_tokenizer
from dsft.models.lora import load_lora_adapter
from dsft.models.resolve import resolve_model
from dsft.templates import detect_template, get_template
from dsft.training.rundir import RunDir


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


def resolve_template(model_dir: Path, name: str | None, label: str, tokenizer: Any = None) -> tuple[str, Any]:
    """``name`` (``--template``) or the family detected from the model; an unknown one names ``template.name``.

    ``tokenizer`` is the one prompts are encoded with: the ``hf`` family renders with its chat template.
    """
    if not name or name == "auto":
        try:
            name = detect_template(model_dir)
        except DsftError as exc:
            raise DsftError(f"{label}: {exc} (on the command line: --template NAME)") from exc
    try:
        return name, get_template(name, tokenizer)
    except DsftError as exc:
        raise DsftError(f"template.name: {exc}") from exc


def _load_run(run: RunDir, template_name: str | None, device: str | None, dtype: str,
              cache_dir: str | Path | None, base_model: str | Path | None) -> EvalTarget:
    weights, found = run.weights, run.to_load(base_model, cache_dir)  # final/, or the checkpoint pointed at
    tokenizer = load_tokenizer(found.tokenizer_dir)
    label = str(weights if run.is_checkpoint else run.path)
    name, template = resolve_template(weights, template_name or run.template, label, tokenizer)
    model = load_model(found.model_dir, dtype=dtype, device=device)
    adapter = found.adapter_dir is not None
    if adapter:
        # Loaded as trained (fused MoE expert targets included); never merged into the base weights.
        model = load_lora_adapter(model, str(found.adapter_dir))
        model.eval()
    return EvalTarget(label, model, tokenizer, name, template, run.thinking, run.path, adapter)


def load_eval_target(model_or_run: str | Path, template_name: str | None = None, device: str | None = None,
                     dtype: str = "auto", cache_dir: str | Path | None = None,
                     base_model: str | Path | None = None) -> EvalTarget:
    """Load ``model_or_run`` for evaluation (see the module docstring).

    ``base_model`` overrides where a run directory's base model is found (see :meth:`RunDir.base_model`).
    """
    run = RunDir.find(model_or_run)
    if run is not None:
        return _load_run(run, template_name, device, dtype, cache_dir, base_model)
    model_dir = resolve_model(model_or_run, cache_dir=cache_dir)
    tokenizer = load_tokenizer(model_dir)
    name, template = resolve_template(model_dir, template_name, str(model_or_run), tokenizer)
    model = load_model(model_dir, dtype=dtype, device=device)
    return EvalTarget(str(model_or_run), model, tokenizer, name, template)
