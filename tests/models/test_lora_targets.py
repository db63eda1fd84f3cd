"""LoRA targets come from the modules: MLA projections, dense MLPs, shared and routed experts; never the router."""

from __future__ import annotations

import pytest
import torch

from dsft.config.schema import LoraConfig
from dsft.errors import DsftError, UnsupportedError
from dsft.models.loading import load_model, load_tokenizer
from dsft.models.lora import apply_lora, build_lora_config, discover_lora_targets, load_lora_adapter

LLAMA_LIKE = ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]


@pytest.mark.parametrize("name", ["tiny-r1-distill-qwen", "tiny-deepseek-llm"])
def test_dense_models_target_attention_and_mlp(name: str, tiny_model_dir) -> None:
    targets = discover_lora_targets(load_model(tiny_model_dir(name)))
    assert targets.modules == LLAMA_LIKE
    assert targets.parameters == []


def test_v3_targets_mla_shared_and_routed_experts_not_router(tiny_model_dir) -> None:
    model = load_model(tiny_model_dir("tiny-deepseek-v3"))
    targets = discover_lora_targets(model)
    assert targets.modules == ["down_proj", "gate_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj",
                               "q_a_proj", "q_b_proj", "up_proj"]
    assert targets.parameters == ["mlp.experts.down_proj", "mlp.experts.gate_up_proj"]
    assert "gate" not in targets.modules and "lm_head" not in targets.modules
    assert discover_lora_targets(model, include_experts=False).parameters == []


def test_v3_expert_targets_are_found_on_zero3_partitioned_weights(tiny_model_dir) -> None:
    """A model built under ZeRO-3 (every rank holding its partition) shows each weight with shape (0,) and the
    real one in ``ds_shape``; the expert weights stayed LoRA targets there, where they used to be dropped
    silently (3-D was read from ``ndim``)."""
    from dsft.models.lora import adapted_weight_shapes

    model = load_model(tiny_model_dir("tiny-deepseek-v3"))
    whole = discover_lora_targets(model), sorted(adapted_weight_shapes(model))
    for param in model.parameters():  # as DeepSpeed's partitioning leaves a parameter outside its module's forward
        param.ds_shape = param.shape
        param.data = torch.empty(0, dtype=param.dtype)
    assert (discover_lora_targets(model), sorted(adapted_weight_shapes(model))) == whole
    assert whole[0].parameters == ["mlp.experts.down_proj", "mlp.experts.gate_up_proj"]


def test_v3_lora_wraps_every_target_and_trains(tiny_model_dir) -> None:
    path = tiny_model_dir("tiny-deepseek-v3")
    model, tokenizer = load_model(path), load_tokenizer(path)
    peft_model = apply_lora(model, LoraConfig(r=4, alpha=8))
    lora_names = {n for n, _ in peft_model.named_parameters() if "lora_A" in n}
    layer0, layer1 = "base_model.model.model.layers.0.", "base_model.model.model.layers.1."
    # Dense first layer, shared experts and MLA projections all carry adapters (peft's v4->v5 target
    # rewriting would drop the gate/up/down ones).
    for module in ("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj", "self_attn.q_a_proj", "self_attn.kv_b_proj"):
        assert f"{layer0}{module}.lora_A.default.weight" in lora_names, module
    for module in ("mlp.shared_experts.gate_proj", "mlp.shared_experts.down_proj"):
        assert f"{layer1}{module}.lora_A.default.weight" in lora_names, module
    assert sum("mlp.experts" in n for n in lora_names) == 4  # 2 fused parameters x 2 MoE layers
    assert not any(".mlp.gate." in n or "lm_head" in n or "embed" in n for n in lora_names)
    router = peft_model.base_model.model.model.layers[1].mlp.gate
    assert not router.weight.requires_grad

    # Forward + backward through the wrapped experts: with lora_B non-zero, expert adapters get gradients.
    torch.manual_seed(0)
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.02)
    peft_model.train()
    ids = torch.tensor([tokenizer("The reservoir was completed in May 1958.")["input_ids"]])
    peft_model(input_ids=ids, labels=ids).loss.backward()
    expert_grads = [p.grad for n, p in peft_model.named_parameters() if "mlp.experts" in n and "lora" in n]
    assert expert_grads and all(g is not None and g.abs().sum() > 0 for g in expert_grads)
    assert router.weight.grad is None


def test_adapter_round_trip_keeps_every_adapter(tiny_model_dir, tmp_path) -> None:
    path = tiny_model_dir("tiny-deepseek-v3")
    peft_model = apply_lora(load_model(path), LoraConfig(r=4, alpha=8))
    torch.manual_seed(1)
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.05)
    ids = torch.tensor([[0, 100, 200, 300, 400]])
    expected = peft_model(input_ids=ids).logits
    peft_model.save_pretrained(tmp_path / "adapter")
    reloaded = load_lora_adapter(load_model(path), str(tmp_path / "adapter"))
    torch.testing.assert_close(reloaded(input_ids=ids).logits, expected, rtol=0, atol=1e-6)
    # A second named adapter joins the same peft model (serving several adapters).
    both = load_lora_adapter(reloaded, str(tmp_path / "adapter"), adapter_name="second")
    assert set(both.peft_config) == {"default", "second"}
    both.set_adapter("second")
    torch.testing.assert_close(both(input_ids=ids).logits, expected, rtol=0, atol=1e-6)


def test_mla_without_q_lora_targets_plain_q_proj() -> None:
    # V2-Lite style MLA: q_lora_rank null -> a plain q_proj instead of q_a_proj/q_b_proj.
    from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

    config = DeepseekV3Config(vocab_size=256, hidden_size=32, intermediate_size=64, moe_intermediate_size=16,
                              num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2, q_lora_rank=None,
                              kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=8,
                              n_routed_experts=4, n_group=2, topk_group=1, num_experts_per_tok=2,
                              first_k_dense_replace=1)
    targets = discover_lora_targets(DeepseekV3ForCausalLM(config))
    assert "q_proj" in targets.modules
    assert "q_a_proj" not in targets.modules and "q_b_proj" not in targets.modules


def test_explicit_targets_are_checked(tiny_model_dir) -> None:
    model = load_model(tiny_model_dir("tiny-deepseek-v3"))
    chosen = discover_lora_targets(model, ["q_a_proj", "mlp.experts.down_proj"])
    assert chosen.modules == ["q_a_proj"] and chosen.parameters == ["mlp.experts.down_proj"]
    with pytest.raises(DsftError) as err:
        discover_lora_targets(model, ["gate", "lm_head", "q_proj"])
    message = str(err.value)
    assert "'gate'" in message and "'lm_head'" in message and "'q_proj'" in message
    assert "kv_b_proj" in message  # lists what can be targeted


def test_expert_parameters_refuse_dropout(tiny_model_dir) -> None:
    model = load_model(tiny_model_dir("tiny-deepseek-v3"))
    with pytest.raises(UnsupportedError, match="lora.dropout"):
        build_lora_config(LoraConfig(dropout=0.1), model)
    config = build_lora_config(LoraConfig(dropout=0.1, target_experts=False), model)
    assert not config.target_parameters
