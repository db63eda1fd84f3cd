"""Under ZeRO-3 the planner counts the module gathered whole in the dtype the frozen base stores it in.

QLoRA's Linear4bit weights are gathered as their packed NF4 storage (peft's QLoRA + ZeRO-3 recipe; DeepSpeed
gathers a parameter's storage, whatever ``bnb_4bit_quant_storage`` names as its element type), so a quantised
module weighs 4.127 bits a weight; what bitsandbytes leaves in 16 bits (embeddings, lm_head, fused experts) is
gathered in 16 bits. The planner counted every gathered module at 16 bits, QLoRA or not.
"""

from __future__ import annotations

import pytest
from transformers import Qwen2Config

from dsft.plan.memory import NF4_BYTES_PER_PARAM, PlanRequest, adapter_model_states, frozen_base_bytes
from dsft.plan.planner import load_profile, profile_from_config


def _shapes(vocab_size: int, intermediate_size: int):
    config = Qwen2Config(vocab_size=vocab_size, hidden_size=64, intermediate_size=intermediate_size,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
    return profile_from_config(config).shapes


def _gathered(shapes, method: str, per_expert_modules: bool = False) -> int:
    # With the parameters offloaded, the GPU holds only the gathered module of the frozen base.
    req = PlanRequest(method=method, zero=3, offload="optimizer+param", gpus_per_node=8,
                      per_expert_modules=per_expert_modules)
    return adapter_model_states(shapes, req)["weights"]


@pytest.mark.parametrize("per_expert_modules", [False, True])
def test_qlora_gathers_its_largest_linear_as_nf4_not_16_bit(per_expert_modules: bool) -> None:
    shapes = _shapes(vocab_size=128, intermediate_size=1024)  # an MLP matrix (64 x 1024) beats the embedding
    assert shapes.largest_layer_params == 64 * 1024 and shapes.largest_unquantized_params == 128 * 64
    assert _gathered(shapes, "lora", per_expert_modules) == 2 * 64 * 1024
    assert _gathered(shapes, "qlora", per_expert_modules) == int(NF4_BYTES_PER_PARAM * 64 * 1024)


def test_qlora_gathers_an_embedding_larger_than_any_linear_in_16_bits() -> None:
    shapes = _shapes(vocab_size=4096, intermediate_size=128)  # the embedding (4096 x 64) is the largest module
    assert _gathered(shapes, "qlora") == _gathered(shapes, "lora") == 2 * 4096 * 64


def test_qlora_under_zero3_partitions_the_nf4_base_and_adds_the_gathered_module() -> None:
    shapes = _shapes(vocab_size=128, intermediate_size=1024)
    req = PlanRequest(method="qlora", zero=3, gpus_per_node=8)
    quantized = shapes.quantized_params  # the Linear weights; embeddings, lm_head, biases and norms stay 16-bit
    base = int(quantized * NF4_BYTES_PER_PARAM) + 2 * (shapes.total_params - quantized)
    assert adapter_model_states(shapes, req)["weights"] == base // 8 + int(NF4_BYTES_PER_PARAM * 64 * 1024)


def test_qlora_keeps_fused_experts_in_16_bits_and_quantises_expert_linears() -> None:
    """bitsandbytes replaces plain nn.Linear modules only: transformers' fused 3-D experts stay bf16 under QLoRA
    (the planner counted them as NF4, a V3 base at about 1/4 of what it loads as); one Linear per expert is NF4."""
    shapes = load_profile("deepseek-v2-lite").shapes
    fused = frozen_base_bytes(shapes, PlanRequest(method="qlora"))
    assert fused > 2 * shapes.routed_expert_params
    per_expert = frozen_base_bytes(shapes, PlanRequest(method="qlora", per_expert_modules=True))
    nf4 = shapes.quantized_params + shapes.routed_expert_params
    assert per_expert == int(nf4 * NF4_BYTES_PER_PARAM) + 2 * (shapes.total_params - nf4)
    assert per_expert < shapes.total_params  # about 4.1 bits a weight, not 16
