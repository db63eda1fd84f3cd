"""The planner's view of a model: built from its HF config on the ``meta`` device, never materialised.

Everything the memory model needs is read off the real module tree that transformers builds for the
config (so MLA projections, fused MoE experts, shared experts, SwiGLU and untied heads are counted
as they are, not from a formula): parameter totals, the largest ZeRO-3 gather unit, the weights LoRA
adapts for the run's ``lora.targets`` (resolved by :mod:`dsft.models.lora`, as training resolves them), and
the parameters that stay in 16 bits under 4-bit quantisation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dsft.errors import DsftError
from dsft.models.lora import adapted_weight_shapes

_FUSED_EXPERT_PARAMS = ("gate_up_proj", "down_proj")


@dataclass
class ModelShapes:
    """Parameter counts of a model, read from its meta-device module tree (counts, not bytes)."""

    model_type: str
    total_params: int
    embedding_params: int  # input embeddings + untied lm_head: never quantised, never LoRA targets
    largest_layer_params: int  # the largest module's own parameters (DeepSpeed's ZeRO-3 gather unit)
    largest_layer_params_per_expert: int  # the same if every routed expert were its own module
    # The largest module QLoRA leaves in 16 bits (anything but a plain nn.Linear, and the lm_head: what
    # bitsandbytes does not turn into Linear4bit), fused experts as one module / every expert its own Linear.
    largest_unquantized_params: int
    largest_unquantized_params_per_expert: int
    # Weights QLoRA stores in NF4: those of the plain nn.Linear modules but the lm_head (biases, norms, embeddings
    # and fused 3-D experts stay 16-bit); with every routed expert its own Linear, add routed_expert_params.
    quantized_params: int
    routed_expert_params: int  # all routed experts, all layers
    active_params: int  # parameters a token passes through (top-k of the routed experts)
    num_layers: int
    hidden_size: int
    vocab_size: int
    # (in, out, matrices) of the weights LoRA adapts for lora_targets (dsft.models.lora.adapted_weight_shapes)
    lora_linear_shapes: list[tuple[int, int, int]] = field(default_factory=list)
    lora_targets: str | list[str] = "all-linear"  # as lora.targets names them

    def largest_useful_rank(self) -> int | None:
        """The widest smaller side of the matrices LoRA adapts: a rank above it adds parameters, no capacity (a
        rank-r adapter on an (in x out) matrix adds a matrix of rank min(r, in, out)). None with no target."""
        return max((min(fan_in, fan_out) for fan_in, fan_out, _ in self.lora_linear_shapes), default=None)

    def lora_params(self, rank: int) -> int:
        """Adapter parameters for rank ``rank`` on every LoRA target: r * (in + out) per adapted matrix."""
        return sum(rank * (fan_in + fan_out) * count for fan_in, fan_out, count in self.lora_linear_shapes)


def build_meta_model(hf_config: Any) -> Any:
    """Instantiate ``hf_config``'s causal LM on the meta device: shapes only, no memory, about a second."""
    import torch
    from transformers import AutoModelForCausalLM

    try:
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(hf_config, dtype=torch.bfloat16)
    except (ValueError, KeyError, TypeError) as exc:
        raise DsftError(
            f"cannot build model type {getattr(hf_config, 'model_type', '?')!r} for planning: {exc}"
        ) from exc


def _own_params(module: Any) -> int:
    return sum(p.numel() for p in module.parameters(recurse=False))


def _is_fused_experts(module: Any) -> bool:
    """True for a transformers 5.x experts module holding all routed experts as 3-D parameters."""
    return any(getattr(getattr(module, name, None), "dim", lambda: 0)() == 3 for name in _FUSED_EXPERT_PARAMS)


def _is_quantized_by_bnb(module: Any, head: Any) -> bool:
    """True for a module transformers' bitsandbytes integration turns into Linear4bit: a plain nn.Linear other
    than the lm_head (``replace_with_bnb_linear``; fused 3-D experts are parameters of no Linear)."""
    import torch

    return type(module) is torch.nn.Linear and module is not head


def _routed_experts(model: Any) -> tuple[int, int]:
    """(parameters in all routed experts, the largest single expert matrix)."""
    import torch

    total, largest = 0, 0
    for module in model.modules():
        for pname in _FUSED_EXPERT_PARAMS:
            param = getattr(module, pname, None)
            if isinstance(param, torch.nn.Parameter) and param.dim() == 3:
                total += param.numel()
                # A per-expert layout (remote-code DeepSeek) has separate gate, up and down Linears.
                rows = param.shape[1] // 2 if pname == "gate_up_proj" else param.shape[1]
                largest = max(largest, rows * param.shape[2])
    return total, largest


def model_shapes(hf_config: Any, lora_targets: str | list[str] = "all-linear",
                 lora_experts: bool = True) -> ModelShapes:
    """Read every count the planner needs from a meta-device instance of ``hf_config``; the LoRA adapters for
    ``lora_targets`` and ``lora_experts`` (``lora.targets``, ``lora.target_experts``)."""
    model = build_meta_model(hf_config)
    # DeepSpeed counts shared (tied) parameters once; so do we.
    unique = {id(p): p.numel() for p in model.parameters()}
    total = sum(unique.values())
    embeddings = model.get_input_embeddings().weight.numel()
    head = model.get_output_embeddings()
    if head is not None and head.weight is not model.get_input_embeddings().weight:
        embeddings += head.weight.numel()
    routed_total, largest_expert_matrix = _routed_experts(model)
    largest = max(_own_params(m) for m in model.modules())
    largest_non_expert = max(_own_params(m) for m in model.modules() if not _is_fused_experts(m))
    unquantized = [m for m in model.modules() if not _is_quantized_by_bnb(m, head)]
    largest_unquantized = max(_own_params(m) for m in unquantized)
    quantized = sum(m.weight.numel() for m in model.modules() if _is_quantized_by_bnb(m, head))
    largest_unquantized_per_expert = max(_own_params(m) for m in unquantized if not _is_fused_experts(m))
    experts = next((getattr(hf_config, k) for k in ("n_routed_experts", "num_local_experts", "num_experts")
                    if getattr(hf_config, k, None)), None)
    top_k = getattr(hf_config, "num_experts_per_tok", None)
    active = total
    if routed_total and experts and top_k:
        active = total - routed_total + routed_total * top_k // experts
    return ModelShapes(
        model_type=hf_config.model_type,
        total_params=total,
        embedding_params=embeddings,
        largest_layer_params=largest,
        largest_layer_params_per_expert=max(largest_non_expert, largest_expert_matrix),
        largest_unquantized_params=largest_unquantized,
        largest_unquantized_params_per_expert=largest_unquantized_per_expert,
        quantized_params=quantized,
        routed_expert_params=routed_total,
        active_params=active,
        num_layers=hf_config.num_hidden_layers,
        hidden_size=hf_config.hidden_size,
        vocab_size=hf_config.vocab_size,
        lora_linear_shapes=adapted_weight_shapes(model, lora_targets, include_experts=lora_experts),
        lora_targets=lora_targets,
    )
