"""Under ZeRO-3 the planner counts the module gathered whole in the dtype the frozen base stores it in.

QLoRA's Linear4bit weights are gathered as their packed 4-bit storage (peft's QLoRA + ZeRO-3 recipe; DeepSpeed
gathers a parameter's storage, whatever ``bnb_4bit_quant_storage`` names as its element type); what bitsandbytes
leaves in 16 bits (embeddings, lm_head, fused experts) is gathered in 16 bits. The planner counted every gathered
module at 16 bits, QLoRA or not.

The NF4 quantisation state (each 64-weight block's absmax, quantised to 8 bits, and one fp32 absmax per 256
blocks) is no parameter: bitsandbytes keeps it on the weight's ``quant_state``, so ZeRO-3 neither partitions,
gathers nor offloads it, and every GPU holds all of it. The planner divided it over the ranks with the weights and
counted the gathered module's share of it a second time.
"""

from __future__ import annotations

import pytest
from transformers import Qwen2Config

from dsft.plan.memory import (
    GIB, GPU_FRAMEWORK_BYTES, NF4_BYTES_PER_PARAM, NF4_STATE_BYTES_PER_PARAM, PlanRequest, adapter_model_states, frozen_base_bytes,
    host_breakdown, nf4_state_bytes,
)
from dsft.plan.planner import estimate_memory, load_profile, profile_from_config


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
def test_qlora_gathers_its_largest_linear_as_packed_4_bit_not_16_bit(per_expert_modules: bool) -> None:
    shapes = _shapes(vocab_size=128, intermediate_size=1024)  # an MLP matrix (64 x 1024) beats the embedding
    assert shapes.largest_layer_params == 64 * 1024 and shapes.largest_unquantized_params == 128 * 64
    assert _gathered(shapes, "lora", per_expert_modules) == 2 * 64 * 1024
    # The GPU keeps the whole base's quantisation state besides the gathered matrix's packed weights.
    state = int(shapes.quantized_params * NF4_STATE_BYTES_PER_PARAM)
    assert _gathered(shapes, "qlora", per_expert_modules) == state + 64 * 1024 // 2


def test_qlora_gathers_an_embedding_larger_than_any_linear_in_16_bits() -> None:
    shapes = _shapes(vocab_size=4096, intermediate_size=128)  # the embedding (4096 x 64) is the largest module
    state = int(shapes.quantized_params * NF4_STATE_BYTES_PER_PARAM)
    assert _gathered(shapes, "qlora") - state == _gathered(shapes, "lora") == 2 * 4096 * 64


def test_qlora_under_zero3_partitions_the_packed_weights_and_keeps_the_quant_state_whole() -> None:
    """Qwen2 layout, hidden 64, MLP 1024, 2 layers, 4 query and 2 key/value heads of 16, vocab 128, 8 GPUs.

    Per layer the Linear weights are q 64x64 (4,096), k and v 64x32 (2,048 each), o 64x64 (4,096) and gate, up,
    down 64x1024 (65,536 each): 208,896, so 417,792 NF4 weights in 2 layers. In 16 bits stay the embedding and the
    untied lm_head (128x64 = 8,192 each), the final norm (64) and per layer the q/k/v biases (128) and two norms
    (128): 16,960 parameters, 33,920 bytes.
    - packed weights: 417,792 / 2 = 208,896 bytes, partitioned with the 16-bit rest:
      (208,896 + 33,920) / 8 = 30,352 bytes per GPU;
    - quantisation state: 417,792 / 64 = 6,528 blocks, one 8-bit absmax each (6,528 bytes), and one fp32 absmax
      per 256 blocks (6,528 / 256 x 4 = 102 bytes): 6,630 bytes, whole on every GPU;
    - gathered: the largest module, a 64x1024 MLP matrix, packed: 65,536 / 2 = 32,768 bytes (more than the
      embedding's 8,192 x 2 = 16,384).
    Per GPU: 30,352 + 6,630 + 32,768 = 69,750 bytes. The planner said 64,989: the state divided by 8 with the
    weights, and the gathered matrix at 4.127 bits.
    """
    shapes = _shapes(vocab_size=128, intermediate_size=1024)
    req = PlanRequest(method="qlora", zero=3, gpus_per_node=8)
    assert (shapes.total_params, shapes.quantized_params) == (434_752, 417_792)
    assert nf4_state_bytes(shapes, req) == 6_630
    assert frozen_base_bytes(shapes, req) == 208_896 + 6_630 + 33_920
    assert adapter_model_states(shapes, req)["weights"] == 30_352 + 6_630 + 32_768


def test_parameter_offload_moves_the_packed_weights_not_the_quant_state() -> None:
    """The same model with ``offload: optimizer+param`` on one node: the host takes the partitioned parameters
    (208,896 packed + 33,920 16-bit bytes), the GPU keeps the 6,630 bytes of quantisation state and the gathered
    32,768-byte matrix."""
    shapes = _shapes(vocab_size=128, intermediate_size=1024)
    req = PlanRequest(method="qlora", zero=3, offload="optimizer+param", gpus_per_node=8)
    assert adapter_model_states(shapes, req)["weights"] == 6_630 + 32_768
    adapters = shapes.lora_params(req.lora_rank)
    optimizer_states = int(adapters * 18 * 1.5)  # DeepSpeed's per-parameter host bytes and its buffer factor
    assert host_breakdown(shapes, req)["offloaded_states"] == optimizer_states + 208_896 + 33_920


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


def test_qlora_under_zero3_loads_the_whole_base_on_every_gpu_first() -> None:
    """transformers builds a quantised model without DeepSpeed's zero.Init: each rank loads and quantises the whole
    base onto its own GPU, and only deepspeed.initialize partitions it. For the model above that is its whole
    frozen base, 208,896 + 6,630 + 33,920 = 249,446 bytes, plus the framework's overhead, on each of the 8 GPUs;
    the planner had no load phase, so it sized the 1/8 share only."""
    profile = profile_from_config(Qwen2Config(vocab_size=128, hidden_size=64, intermediate_size=1024,
                                              num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2))
    estimate = estimate_memory(profile, PlanRequest(method="qlora", zero=3, gpus_per_node=8, seq_len=16))
    assert estimate.phases["load"] == 249_446 + GPU_FRAMEWORK_BYTES
    assert any("every GPU holds the whole base" in note for note in estimate.notes)
    for method, zero in (("lora", 3), ("qlora", 2)):  # no quantised load under ZeRO-3 / the base stays whole anyway
        assert "load" not in estimate_memory(profile, PlanRequest(method=method, zero=zero, gpus_per_node=8)).phases


def test_a_qlora_base_larger_than_the_gpu_does_not_fit_under_zero3_on_any_number_of_gpus() -> None:
    """R1-Distill-Qwen-32B in NF4 with its 16-bit embedding and lm_head is 17.9 GiB: 16 GiB GPUs cannot load it
    however many share the training states (the planner said it fit on 8 of them, at 8.3 GiB)."""
    profile = load_profile("deepseek-r1-distill-qwen-32b")
    req = PlanRequest(method="qlora", zero=3, gpus_per_node=8, gpu_mem_gib=16, grad_checkpointing=True)
    estimate = estimate_memory(profile, req)
    assert not estimate.fits and estimate.per_gpu_bytes == estimate.phases["load"]
    assert 17.8 * GIB < frozen_base_bytes(profile.shapes, req) < 18 * GIB
