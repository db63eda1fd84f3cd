"""Two memory terms of `dsft plan`, each pinned to the bytes the training code allocates, computed here from the
model's dimensions (not read back from the planner's output).

(a) Under sequence parallelism, multi-head latent attention trains with its values zero-padded from
``v_head_dim`` to the query/key width (``qk_nope_head_dim + qk_rope_head_dim``) around Ulysses's all-to-all
(dsft.training.sequence_parallel_mla). Per layer, per token and head, autograd then keeps the padded values and
the padded kernel output (query/key width each) and o_proj's copy of the sliced output (value width), where
unpadded attention keeps the kv_b_proj output the values are a view of (``qk_nope + v`` wide) and an output that
o_proj shares (``v`` wide): ``2 (nope + rope) + v - (nope + v) - v = nope + 2 rope - v`` more elements.

(b) dsft's chunked loss computes its gradients in forward (dsft.training.loss), and they are alive when backward
starts: the hidden states' gradient and, for a trainable lm_head, its fp32 [vocab, hidden] weight gradient; the
backward node multiplies each by the incoming scalar (a copy of the hidden one, and for DeepSpeed's bf16 lm_head
an fp32 [vocab, hidden] product before the cast to bf16).
"""

from __future__ import annotations

import pytest
from transformers import DeepseekV3Config

from dsft.plan.memory import GPU_FRAMEWORK_BYTES, PlanRequest
from dsft.plan.planner import REFERENCE_TOKENS, estimate_memory, load_profile, profile_from_config

BF16 = 2


@pytest.fixture(scope="module")
def v3():
    return load_profile("deepseek-v3")


def _padding_elements(config) -> int:
    """Extra saved elements per token and head when MLA's values are padded (see the module docstring)."""
    return config.qk_nope_head_dim + 2 * config.qk_rope_head_dim - config.v_head_dim


def test_mla_values_padded_under_sequence_parallelism_are_traced_as_training_pads_them() -> None:
    # Widths chosen so that no two terms coincide: nope 16, rope 8, values 12 -> 16 + 16 - 12 = 20 per head.
    config = DeepseekV3Config(vocab_size=256, hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
                              num_hidden_layers=2, first_k_dense_replace=1, num_attention_heads=4,
                              num_key_value_heads=4, n_routed_experts=4, num_experts_per_tok=2, n_group=1,
                              topk_group=1, q_lora_rank=32, kv_lora_rank=16, qk_nope_head_dim=16, qk_rope_head_dim=8,
                              v_head_dim=12)
    profile = profile_from_config(config)
    plain, padded = profile.layer_activations("bf16", sp=1), profile.layer_activations("bf16", sp=2)
    extra = REFERENCE_TOKENS * config.num_attention_heads * _padding_elements(config) * BF16
    assert [(count, b.saved_bytes - a.saved_bytes) for (a, count), (b, _) in zip(plain, padded)] == [(1, extra),
                                                                                                        (1, extra)]
    assert profile.layer_activations("bf16", sp=4) is padded  # one padded trace, whatever the degree


def _guide_003(offload: str = "optimizer") -> PlanRequest:
    """`dsft plan --model deepseek-v3 --method full --nodes 32 --gpus-per-node 8 --gpu-mem 80 --seq-len 32768
    --zero 3 --offload optimizer --sp 8 --micro-batch 1 --grad-checkpointing` (guide 003)."""
    return PlanRequest(method="full", nodes=32, gpus_per_node=8, gpu_mem_gib=80, seq_len=32768, micro_batch=1,
                       zero=3, offload=offload, sp=8, grad_checkpointing=True)  # type: ignore[arg-type]


def test_guide_003_recomputes_a_layer_with_padded_values(v3) -> None:
    config, tokens = v3.hf_config, 32768 // 8  # tokens per GPU under SP 8
    estimate = estimate_memory(v3, _guide_003())
    plain = v3.layer_activations("bf16", sp=1)  # the layers' activations as traced without padding
    largest_layer = max(a.saved_bytes for a, _ in plain) * tokens // REFERENCE_TOKENS
    largest_tensor = max(a.largest_tensor_bytes for a, _ in plain) * tokens // REFERENCE_TOKENS
    layer_input = tokens * config.hidden_size * BF16
    padding = tokens * config.num_attention_heads * _padding_elements(config) * BF16  # 128 per head: 0.125 GiB
    assert padding == 2**27
    kept = config.num_hidden_layers * layer_input  # checkpointing keeps each layer's input
    assert estimate.breakdown["activations"] == kept + (largest_layer + padding) + (2 * layer_input + largest_tensor)


def test_guide_003_holds_the_loss_gradients_into_backward(v3) -> None:
    config, tokens = v3.hf_config, 32768 // 8
    estimate = estimate_memory(v3, _guide_003())
    b = estimate.breakdown
    persistent = b["weights"] + b["optimizer_states"] + GPU_FRAMEWORK_BYTES
    kept = config.num_hidden_layers * tokens * config.hidden_size * BF16
    head = config.vocab_size * config.hidden_size  # 129,280 x 7,168
    # saved hidden gradient + its copy; saved fp32 lm_head gradient (3.45 GiB), scaled and cast to bf16 a block
    # of rows at a time (no second fp32 copy)
    held = 2 * tokens * config.hidden_size * BF16 + 4 * head
    assert estimate.phases["loss_backward"] == persistent + b["gradients"] + kept + held
    assert estimate.per_gpu_bytes == estimate.phases["loss_backward"]  # the peak of the guide's step
    assert f"{estimate.per_gpu_bytes / 2**30:.2f}" == "55.28" and estimate.fits  # guide 003's README quotes it


def test_an_fp32_lm_head_returns_its_gradient_without_a_second_copy_and_lora_holds_only_the_hidden_one() -> None:
    profile = load_profile("deepseek-r1-distill-qwen-1.5b")
    config = profile.hf_config
    hidden = 2 * 1024 * config.hidden_size * BF16
    for method, head in (("full", 4 * config.vocab_size * config.hidden_size), ("lora", 0)):
        # ZeRO 0 trains an fp32 lm_head under autocast: the backward's product is the gradient itself.
        estimate = estimate_memory(profile, PlanRequest(method=method, seq_len=1024, grad_checkpointing=True))
        b = estimate.breakdown
        persistent = b["weights"] + b["lora_weights"] + b["optimizer_states"] + GPU_FRAMEWORK_BYTES
        kept = config.num_hidden_layers * 1024 * config.hidden_size * BF16
        assert estimate.phases["loss_backward"] == persistent + b["gradients"] + kept + hidden + head, method
