"""One benchmark system in a fresh process: ``python -m dsft.training.bench.worker SPEC.json RESULT.json``.

A fresh process per system keeps peak memory honest (no allocator state or imports left over from
another system) and keeps one system's threads and caches from warming the next.
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path
from typing import Any

import torch
from transformers import set_seed

from dsft.config.schema import LoraConfig
from dsft.models.loading import load_model, load_tokenizer
from dsft.models.lora import apply_lora
from dsft.onednn_caches import bound_onednn_caches
from dsft.training.bench.held_out import held_out_loss
from dsft.training.bench.profiling import StepProfiler
from dsft.training.bench.systems import BUILDERS, Meter, bench_precision, summarize
from dsft.training.lean_blocks import lean_blocks_used


def peak_memory_bytes(device: str) -> int:
    """Peak GPU memory allocated by torch on GPU; peak resident set size of this process on CPU."""
    if device != "cpu":
        return int(torch.cuda.max_memory_allocated())
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux reports KiB


def run_system(spec: dict[str, Any]) -> dict[str, Any]:
    """Load the model with the shared LoRA adapter, train ``spec['steps'] + 1`` steps, report figures."""
    torch.set_num_threads(spec["threads"])
    set_seed(spec["seed"])
    examples = [json.loads(line) for line in Path(spec["data"]).read_text(encoding="utf-8").splitlines()]
    tokenizer = load_tokenizer(spec["model_dir"])
    full = spec["method"] == "full"
    # As dsft train: LoRA keeps the frozen base in the training precision, a full fine-tune fp32 master weights.
    device = "cuda" if torch.cuda.is_available() else "cpu"
    bf16_base = bench_precision(spec.get("precision", "auto"), device) == "bf16" and not full
    model = load_model(spec["model_dir"], dtype="bfloat16" if bf16_base else "float32")
    model.config.use_cache = False
    if not full:
        model = apply_lora(model, LoraConfig())
    device = next(model.parameters()).device.type
    if device != "cpu":
        torch.cuda.reset_peak_memory_stats()
    memory_before = peak_memory_bytes(device)
    meter = Meter()
    trainer, accelerations = BUILDERS[spec["system"]](spec, model, tokenizer, examples, meter)
    profiler = StepProfiler(spec["profile_dir"], spec["system"]) if spec.get("profile_dir") else None
    if profiler is not None:
        trainer.add_callback(profiler)
    trainer.train()
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    result = summarize(meter, base, peak_memory_bytes(device), full)
    result["memory_before_train_bytes"] = memory_before
    if spec.get("held_out"):  # after the peak memory is read: the check's forwards are no part of training
        held_out = [json.loads(line) for line in Path(spec["held_out"]).read_text(encoding="utf-8").splitlines()]
        result["held_out_loss"] = held_out_loss(model, held_out, bf16=bool(trainer.args.bf16))
    result["optimizer_steps_timed"] = spec["steps"]
    if profiler is not None:
        result["profiled"], result["profile"] = True, profiler.summary
    if accelerations is not None:  # what dsft switched on in this system; of its lean blocks, what ran
        result["dsft_accelerations"] = accelerations + lean_blocks_used(model, device)
    result["gradient_accumulation_steps"] = trainer.args.gradient_accumulation_steps
    result["per_device_train_batch_size"] = trainer.args.per_device_train_batch_size
    result["gradient_checkpointing"] = bool(trainer.args.gradient_checkpointing)
    if hasattr(trainer, "loss_chunk_size"):
        result["loss_chunk_size"] = trainer.loss_chunk_size  # dsft: "auto" resolved for this device
    # The dtypes the matmuls ran in (MFU is taken against the peak of each): the body's weights, and the
    # lm_head's, or for dsft its loss's (train.loss_dtype resolved for this device and head).
    names = {torch.float32: "fp32", torch.bfloat16: "bf16"}
    body_dtype = torch.bfloat16 if trainer.args.bf16 else torch.float32
    head_dtype = getattr(trainer, "loss_compute_dtype", body_dtype)
    result["body_dtype"], result["lm_head_dtype"] = names[body_dtype], names.get(head_dtype, "bf16")
    result["base_weights_dtype"] = names.get(base.get_input_embeddings().weight.dtype, "other")  # as loaded
    return result


def main(argv: list[str]) -> None:
    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    if spec["system"] == "dsft":  # as dsft's command line and run_training do (a peer runs as it runs by itself)
        bound_onednn_caches()
    result = run_system(spec)
    Path(argv[1]).write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1:])
