"""Hugging Face exports: a merged (or full) checkpoint, or the PEFT adapter alone.

The merged checkpoint is what vLLM, TGI, llama.cpp's converter and ``transformers`` load without
dsft: sharded safetensors, the tokenizer carrying the chat template that training used (so
``apply_chat_template`` and ``vllm serve`` build the same prompt as training; for V3.2/V4 vLLM needs
``--tokenizer-mode hf`` for that, see :func:`vllm_template_notes`), and a
generation_config.json with DeepSeek's recommended sampling.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dsft.errors import DsftError, UnsupportedError
from dsft.export.options import HF_DTYPES
from dsft.export.source import ExportSource, load_trained_model, routes_to_experts, stored_dtype
from dsft.export.bounds import (
    AbsoluteBound, LogitBound, LogitComparison, RelativeBound, as_bound, tolerating_rerouted_tokens,
)
from dsft.export.verify import check_tolerance, compare_logits, hf_logits, verification_prompts
from dsft.models.loading import load_model, load_tokenizer
from dsft.models.lora import load_lora_adapter
from dsft.templates import get_template

# Accepted by default, per stored dtype. float32 only reorders sums: a max |logit difference|. Half precision
# rounds each merged weight (2^-11 relative for fp16, 2^-8 for bf16), which moves the logits in proportion to
# their scale: 8 units of that rounding of the largest logit (measured 1.9-2.8 units, see RelativeBound), and
# never less than the former absolute bounds. --tolerance sets another bound (dsft.export.bounds).
DEFAULT_TOLERANCE: dict[str, LogitBound] = {
    "float32": AbsoluteBound(1e-3), "float16": RelativeBound(8 * 2**-11, floor=5e-2),
    "bfloat16": RelativeBound(8 * 2**-8, floor=2.5e-1),
}
# A MoE model's rounded weights reroute a few tokens to other experts, which moves those positions' logits by
# their whole scale (tiny V3, trained-like: float16 1 of 79 positions by 7.7, bfloat16 2 by 7.7 and 9.6, on
# logits of 18; every other position within the bound): they may exceed it at up to 10% of the positions.
MOE_TOLERANCE: dict[str, LogitBound] = {
    "float32": DEFAULT_TOLERANCE["float32"],
    "float16": tolerating_rerouted_tokens(RelativeBound(8 * 2**-11, floor=5e-2)),
    "bfloat16": tolerating_rerouted_tokens(RelativeBound(8 * 2**-8, floor=2.5e-1)),
}
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")

def export_dtype_name(requested: str, source: ExportSource) -> str:
    """Resolve ``auto`` to the dtype the (base) checkpoint is stored in; reject GGUF-only dtypes."""
    name = stored_dtype(source.model_dir) if requested == "auto" else requested
    if name not in HF_DTYPES:
        raise UnsupportedError(f"--dtype {requested}: Hugging Face exports are stored as one of "
                               f"{', '.join(HF_DTYPES)}; q8_0 applies to --format gguf/ollama only")
    return name


def load_export_tokenizer(source: ExportSource) -> Any:
    """The training tokenizer with the run's chat template set explicitly (never whatever the base shipped)."""
    tokenizer = load_tokenizer(source.tokenizer_dir)
    tokenizer.chat_template = get_template(source.template, tokenizer).chat_template
    return tokenizer


def write_generation_config(out_dir: Path, source: ExportSource, tokenizer: Any) -> dict[str, Any]:
    """generation_config.json: the base's own, special ids from the tokenizer, and the template family's
    recommended sampling (R1: temperature 0.6, top_p 0.95).

    Families that recommend none keep the sampling their checkpoint shipped.
    """
    path = source.model_dir / "generation_config.json"
    config: dict[str, Any] = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    for key, token_id in (("bos_token_id", tokenizer.bos_token_id), ("eos_token_id", tokenizer.eos_token_id),
                          ("pad_token_id", tokenizer.pad_token_id)):
        if token_id is not None:
            config[key] = token_id
    sampling = get_template(source.template).recommended_sampling
    if sampling:
        config.update({"do_sample": True, **sampling})
    config.pop("transformers_version", None)
    (out_dir / "generation_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return config


def write_export_metadata(out_dir: Path, source: ExportSource, fmt: str, dtype: str,
                          comparison: LogitComparison | None, bound: float | LogitBound | None = None,
                          **extra: Any) -> None:
    """export.json: what was exported from where, with the measured verification figures and what ``bound``
    (the verification's pass criterion) needed of them."""
    meta: dict[str, Any] = {
        "format": fmt, "dtype": dtype, "template": source.template, "method": source.method,
        "source": str(source.run_dir or source.model_dir), "base_model": str(source.model_dir),
        # Which of a run's weights: its final/ or the checkpoint the export was pointed at.
        **({"weights": str(source.adapter_dir or source.model_dir)} if source.run_dir is not None else {}),
        "verification": None if comparison is None else {
            "max_abs_logit_diff": comparison.max_abs_diff, "max_abs_reference_logit": comparison.max_abs_logit,
            "top1_agreement": comparison.top1_agreement, "mean_kl": comparison.mean_kl,
            "positions": comparison.positions, "prompts": comparison.prompts,
            "needs": None if bound is None else as_bound(bound).describe(comparison),
        },
    }
    meta.update(extra)
    (out_dir / "export.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def merge_adapter(model: Any) -> Any:
    """Fold LoRA weights into the base (peft ``merge_and_unload``), incl. fused MoE experts adapted via
    ``target_parameters``; a plain model is returned unchanged."""
    from peft import PeftModel

    return model.merge_and_unload() if isinstance(model, PeftModel) else model


def export_hf(source: ExportSource, out_dir: Path, dtype: str = "auto", verify: bool = True,
              tolerance: float | LogitBound | None = None, max_shard_size: str = "5GB",
              echo: Callable[[str], None] = print) -> LogitComparison | None:
    """Save the merged (LoRA) or full model as sharded safetensors + tokenizer + generation config.

    The merge runs in float32 and the result is cast once to the target dtype (``auto`` = the base's
    stored dtype), so the only rounding is that of the stored weights. With ``verify`` the saved
    directory is reloaded and its logits compared with the trained model (adapter on base).
    """
    import torch

    dtype_name = export_dtype_name(dtype, source)
    if tolerance is None:
        tolerance = (MOE_TOLERANCE if routes_to_experts(source.model_dir) else DEFAULT_TOLERANCE)[dtype_name]
    tokenizer = load_export_tokenizer(source)
    trained = load_trained_model(source)
    prompts = verification_prompts(tokenizer, source.template) if verify else []
    reference = hf_logits(trained, prompts) if verify else []
    merged = merge_adapter(trained).to(getattr(torch, dtype_name))
    out_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(str(out_dir), max_shard_size=max_shard_size, safe_serialization=True)
    # The template goes into tokenizer_config.json (not only chat_template.jinja): older transformers,
    # vLLM and llama.cpp's converter read it from there.
    tokenizer.save_pretrained(str(out_dir), save_jinja_files=False)
    write_generation_config(out_dir, source, tokenizer)
    del merged, trained
    notes = vllm_template_notes(source.template)
    for note in notes:
        echo(f"note (vLLM): {note}")
    comparison = None
    if verify:
        reloaded = load_model(out_dir, dtype="float32", device="cpu")
        comparison = compare_logits(reference, hf_logits(reloaded, prompts))
        write_export_metadata(out_dir, source, "hf", dtype_name, comparison, tolerance, vllm_notes=notes)
        check_tolerance(comparison, tolerance, f"hf export {out_dir}", echo)
    else:
        write_export_metadata(out_dir, source, "hf", dtype_name, None, vllm_notes=notes)
    return comparison


def vllm_template_notes(template_name: str) -> list[str]:
    """What ``vllm serve`` needs to render this family's prompts with the exported template (empty: nothing)."""
    mode = get_template(template_name).vllm_tokenizer_mode
    if not mode:
        return []
    return [f"vLLM renders {template_name} prompts with its own DeepSeek encoder and ignores this export's chat "
            f"template unless given --tokenizer-mode {mode} (`dsft serve DIR --engine vllm` passes it)"]


def vllm_adapter_notes(adapter_config: dict[str, Any]) -> list[str]:
    """What keeps vLLM's ``--lora-modules`` from serving this adapter as is (empty: nothing known)."""
    notes = []
    if adapter_config.get("target_parameters"):
        notes.append("the adapter trains fused MoE expert parameters (peft target_parameters); vLLM's LoRA "
                     "loader may not apply them (several versions drop them silently and serve the base "
                     "experts): export --format hf (merged) to serve this run with vLLM")
    rank = int(adapter_config.get("r", 0))
    if rank > 16:
        notes.append(f"LoRA rank {rank} > vLLM's default --max-lora-rank 16: pass --max-lora-rank {rank}")
    if adapter_config.get("modules_to_save"):
        notes.append("modules_to_save (fully trained extra modules) are ignored by vLLM LoRA: merge instead")
    return notes


def require_adapter(source: ExportSource) -> None:
    """Refuse ``--format adapter`` for a model trained without one (a full fine-tune), before anything is said or
    written."""
    if source.adapter_dir is None:
        raise UnsupportedError(f"{source.run_dir or source.model_dir}: a {source.method} model has no adapter; "
                               "use --format hf (or gguf/ollama) to export full weights")


def export_adapter(source: ExportSource, out_dir: Path, verify: bool = True,
                   tolerance: float | LogitBound | None = None,
                   echo: Callable[[str], None] = print) -> LogitComparison | None:
    """Copy the PEFT adapter alone (adapter_config.json + adapter_model.safetensors) and check it loads.

    Verification loads the exported files onto the base with peft and compares logits with the run's
    adapter on the same base: they must agree to float32 round-off.
    """
    require_adapter(source)
    missing = [name for name in ADAPTER_FILES if not (source.adapter_dir / name).is_file()]
    if missing:
        raise DsftError(f"{source.adapter_dir}: missing {', '.join(missing)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ADAPTER_FILES:
        shutil.copy2(source.adapter_dir / name, out_dir / name)
    config = json.loads((out_dir / "adapter_config.json").read_text(encoding="utf-8"))
    notes = vllm_adapter_notes(config) + vllm_template_notes(source.template)
    for note in notes:
        echo(f"note (vLLM): {note}")
    comparison = None
    if verify:
        tolerance = AbsoluteBound(1e-5) if tolerance is None else tolerance
        comparison = _verify_adapter(source, out_dir, tolerance, echo)
    write_export_metadata(out_dir, source, "adapter", "adapter", comparison, tolerance, vllm_notes=notes)
    return comparison


def _verify_adapter(source: ExportSource, out_dir: Path, tolerance: float | LogitBound,
                    echo: Callable[[str], None]) -> LogitComparison:
    tokenizer = load_export_tokenizer(source)
    prompts = verification_prompts(tokenizer, source.template)
    trained = load_trained_model(source)
    reference = hf_logits(trained, prompts)
    base = trained.unload()  # the same base weights, adapter layers removed
    exported = load_lora_adapter(base, str(out_dir)).eval()
    comparison = compare_logits(reference, hf_logits(exported, prompts))
    return check_tolerance(comparison, tolerance, f"adapter export {out_dir}", echo)
