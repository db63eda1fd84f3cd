"""`dsft plan`: will this run fit, where does the memory go, and what is the cheapest fix.

    profile = load_profile("deepseek-r1-distill-qwen-7b")
    estimate = estimate_memory(profile, PlanRequest(method="lora", gpu_mem_gib=24))
    estimate.fits, estimate.breakdown["activations"]

A profile holds the model's parameter counts and its traced per-layer activations at a reference
length; activations are linear in tokens per GPU (flash attention keeps no s x s term), so every
candidate configuration the recommender tries is pure arithmetic on one profile.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from dsft.errors import DsftError
from dsft.plan.activations import LayerActivations, trace_model_layers
from dsft.plan.memory import (
    GIB, GPU_FRAMEWORK_BYTES, MemoryEstimate, PlanRequest, activation_memory, adapter_model_states,
    checkpoint_bytes, full_model_states, host_breakdown, loading_bytes, loss_backward_bytes, loss_bytes, phase_peaks,
)
from dsft.plan.model_source import resolve_planner_config
from dsft.plan.shapes import ModelShapes, build_meta_model, model_shapes
from dsft.training.distributed import sequence_parallel_heads_problem

REFERENCE_TOKENS = 1024  # tokens per GPU the layers are traced at; results scale linearly


@dataclass
class ModelProfile:
    """A model as the planner sees it: counts plus traced activations per dtype."""

    name: str
    shapes: ModelShapes
    hf_config: Any
    _meta_model: Any = None
    _traced: dict[tuple[str, bool], list[tuple[LayerActivations, int]]] = field(default_factory=dict)

    def layer_activations(self, precision: str, sp: int = 1) -> list[tuple[LayerActivations, int]]:
        """Traced activations at REFERENCE_TOKENS for ``precision`` (bf16 or fp32) under sequence parallelism
        over ``sp`` ranks, computed once: Ulysses's all-to-all gives o_proj a second copy of the attention
        output, and multi-head latent attention pads its values around it
        (:func:`dsft.training.sequence_parallel_mla.ulysses_for_mla`); both are traced so."""
        import torch

        key = (precision, sp > 1)
        if key not in self._traced:
            if self._meta_model is None:
                self._meta_model = build_meta_model(self.hf_config)
            dtype = torch.float32 if precision == "fp32" else torch.bfloat16
            self._meta_model.to(dtype)
            self._traced[key] = trace_model_layers(self._meta_model, 1, REFERENCE_TOKENS, dtype, ulysses=key[1])
        return self._traced[key]


def load_profile(model: str, lora_targets: str | list[str] = "all-linear", lora_experts: bool = True,
                 given_as: str = "--model") -> ModelProfile:
    """Build the planner's profile of ``model`` (preset name, hub id, tiny preset or config.json path), its LoRA
    adapters on ``lora_targets`` (``lora.targets``; stacked experts with ``lora_experts``). Errors name ``model``
    as ``given_as`` gave it (a flag, or a config file's key)."""
    name, hf_config = resolve_planner_config(model, given_as)
    return ModelProfile(name=name, shapes=model_shapes(hf_config, lora_targets, lora_experts), hf_config=hf_config)


def profile_from_config(hf_config: Any, name: str = "model", lora_targets: str | list[str] = "all-linear",
                        lora_experts: bool = True) -> ModelProfile:
    """A profile for an already-built transformers config (tests, callers holding a model)."""
    return ModelProfile(name=name, shapes=model_shapes(hf_config, lora_targets, lora_experts), hf_config=hf_config)


def tokens_per_gpu(req: PlanRequest) -> int:
    """Tokens one GPU holds activations for: a micro-batch of rows, split over the sequence-parallel group."""
    return -(-req.micro_batch * req.seq_len // req.sp)


def _scaled(layers: list[tuple[LayerActivations, int]], tokens: int) -> list[tuple[LayerActivations, int]]:
    def scale(value: int) -> int:
        return value * tokens // REFERENCE_TOKENS

    return [(LayerActivations(scale(a.saved_bytes), scale(a.input_bytes), scale(a.largest_tensor_bytes)), n)
            for a, n in layers]


def attention_score_bytes(profile: ModelProfile, req: PlanRequest) -> int:
    """Per layer: the s x s softmax probabilities the math attention path saves (0 for flash kernels).

    Ulysses sequence parallelism gives each rank all tokens of heads / sp heads. The probabilities are
    kept in fp32 (softmax) and, for 16-bit training, also in the compute dtype.
    """
    if req.attention == "flash":
        return 0
    heads = profile.hf_config.num_attention_heads // req.sp
    width = 4 if req.precision == "fp32" else 4 + 2
    return req.micro_batch * heads * req.seq_len * req.seq_len * width


def replicated_key_value_bytes(profile: ModelProfile, req: PlanRequest) -> int:
    """Per layer: what the attention kernel saves beyond the trace when Ulysses repeats key/value heads.

    With more sequence-parallel ranks than key/value heads, DeepSpeed-Ulysses repeats them until each rank has
    one (``kv_replication_factor``), so the kernel saves key and value over all ``seq_len`` tokens of the row:
    ``sp`` x tokens per GPU x head_dim each, where the trace saved ``kv heads`` x tokens per GPU x head_dim.
    """
    config = profile.hf_config
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    if req.sp <= kv_heads or getattr(config, "kv_lora_rank", None):  # MLA: one key/value head per query head
        return 0
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    width = 4 if req.precision == "fp32" else 2
    return 2 * tokens_per_gpu(req) * head_dim * (req.sp - kv_heads) * width


def validate_request(req: PlanRequest) -> None:
    """Reject requests that cannot be run as stated, naming the option."""
    problems = []
    if req.sp < 1 or req.world_size % req.sp:
        problems.append(f"--sp {req.sp}: must divide the {req.world_size} GPUs")
    if req.seq_len % req.sp:
        problems.append(f"--sp {req.sp}: must divide --seq-len {req.seq_len}")
    if req.offload != "none" and req.zero == 0:
        problems.append(f"--offload {req.offload}: needs DeepSpeed ZeRO (--zero 1, 2 or 3)")
    if req.offload == "optimizer+param" and req.zero != 3:
        problems.append("--offload optimizer+param: parameter offload needs --zero 3")
    if req.method == "qlora" and req.precision == "fp32":
        problems.append("--method qlora: 4-bit bases train in bf16, not fp32")
    for name in ("gpus_per_node", "nodes", "seq_len", "micro_batch", "lora_rank"):
        if getattr(req, name) < 1:
            problems.append(f"--{name.replace('_', '-')}: must be >= 1, got {getattr(req, name)}")
    if problems:
        raise DsftError("invalid plan request", problems)


def supports_sequence_parallel(profile: ModelProfile, sp: int) -> bool:
    """Whether dsft can train this model with sequence parallelism over ``sp`` ranks: DeepSpeed-Ulysses splits
    its attention heads between them (``dsft train`` refuses the same)."""
    return sequence_parallel_heads_problem(profile.hf_config, sp) is None


def estimate_memory(profile: ModelProfile, req: PlanRequest) -> MemoryEstimate:
    """Per-GPU bytes by category, host RAM per node and checkpoint size for ``req``."""
    validate_request(req)
    shapes = profile.shapes
    states = full_model_states(shapes, req) if req.method == "full" else adapter_model_states(shapes, req)
    tokens = tokens_per_gpu(req)
    breakdown = {"weights": states["weights"], "lora_weights": states.get("lora_weights", 0),
                 "gradients": states["gradients"], "optimizer_states": states["optimizer_states"]}
    scores = attention_score_bytes(profile, req)
    extra = scores + replicated_key_value_bytes(profile, req)
    layers = [(LayerActivations(a.saved_bytes + extra, a.input_bytes, max(a.largest_tensor_bytes, scores)), n)
              for a, n in _scaled(profile.layer_activations(req.precision, req.sp), tokens)]
    acts = activation_memory(layers, req)
    loss = loss_bytes(shapes, req, tokens)
    breakdown["activations"] = acts.kept + acts.recompute + acts.working
    breakdown["logits_loss"] = loss
    breakdown["framework_overhead"] = GPU_FRAMEWORK_BYTES if req.device == "gpu" else 0
    notes = []
    if req.zero == 3 and not req.per_expert_modules and shapes.routed_expert_params:
        notes.append(
            f"ZeRO-3 gathers each layer's fused routed experts whole ({shapes.largest_layer_params / 1e9:.2f}B "
            "parameters); a per-expert module layout gathers one expert matrix at a time"
        )
    if loading_bytes(shapes, req):
        notes.append(
            f"QLoRA under ZeRO-3: transformers loads a quantised model without zero.Init, so every GPU holds the "
            f"whole base ({loading_bytes(shapes, req) / GIB:.2f} GiB) until DeepSpeed partitions it (peak during load)"
        )
    if req.sp > 1 and req.micro_batch > 1:  # guide 003's recommended "SP 4, bs 2" row
        notes.append(
            f"--sp {req.sp} with --micro-batch {req.micro_batch}: dsft trains packed rows one to a micro-batch under "
            f"sequence parallelism (train.micro_batch_size: 1, train.grad_accum x{req.micro_batch}: the same tokens "
            f"a step, the activations of one row); {req.micro_batch} rows a micro-batch train unpacked "
            "(train.packing: false)"
        )
    if not supports_sequence_parallel(profile, req.sp):
        notes.append(
            f"sizing only: dsft trains with DeepSpeed-Ulysses sequence parallelism, which cannot split this "
            f"model's attention over {req.sp} ranks (train.sequence_parallel={req.sp}: "
            f"{sequence_parallel_heads_problem(profile.hf_config, req.sp)})"
        )
    return MemoryEstimate(
        breakdown=breakdown, phases=phase_peaks(breakdown, acts, loss, req, loss_backward_bytes(shapes, req, tokens),
                                                loading_bytes(shapes, req)),
        host_breakdown=host_breakdown(shapes, req),
        checkpoint_bytes=checkpoint_bytes(shapes, req), gpu_mem_bytes=int(req.gpu_mem_gib * GIB),
        host_mem_bytes=None if req.host_mem_gib is None else int(req.host_mem_gib * GIB), notes=notes,
    )


def with_changes(req: PlanRequest, **changes: Any) -> PlanRequest:
    """A copy of ``req`` with some fields changed (the recommender's moves)."""
    return replace(req, **changes)
