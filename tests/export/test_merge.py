"""Merge parity: the merged model's logits equal the adapter-on-base logits (Llama, Qwen2, V3 incl. experts)."""

from __future__ import annotations

import json

import pytest


@pytest.mark.parametrize("preset", ["tiny-deepseek-llm", "tiny-r1-distill-qwen", "tiny-deepseek-v3"])
def test_merged_logits_equal_adapter_on_base(preset: str, lora_run) -> None:
    import torch

    from dsft.export.hf import load_export_tokenizer, merge_adapter
    from dsft.export.source import load_trained_model, resolve_source
    from dsft.export.verify import compare_logits, hf_logits, verification_prompts

    source = resolve_source(lora_run(preset))
    tokenizer = load_export_tokenizer(source)
    prompts = verification_prompts(tokenizer, source.template)
    trained = load_trained_model(source)
    with_adapter = hf_logits(trained, prompts)
    with trained.disable_adapter():
        base_only = hf_logits(trained, prompts)
    # Fused expert tensors (3-D) as they were before the merge, whatever peft's wrapper names them.
    before = [p.detach().clone() for n, p in trained.named_parameters() if "experts" in n and p.ndim == 3]
    merged = merge_adapter(trained)
    after = hf_logits(merged, prompts)

    effect = compare_logits(base_only, with_adapter)
    parity = compare_logits(with_adapter, after)
    print(f"{preset}: adapter effect {effect.summary()}; merge parity {parity.summary()}")
    assert effect.max_abs_diff > 0.05, "the test adapter must change the logits, or parity proves nothing"
    assert parity.max_abs_diff < 1e-4
    assert parity.top1_agreement == 1.0
    assert not any("lora" in name for name, _ in merged.named_parameters())
    if preset == "tiny-deepseek-v3":
        # The fused routed experts were adapted through target_parameters and really merged.
        config = json.loads((source.adapter_dir / "adapter_config.json").read_text())
        assert "mlp.experts.gate_up_proj" in config["target_parameters"]
        merged_experts = [p for n, p in merged.named_parameters() if "experts" in n and p.ndim == 3]
        assert len(merged_experts) == len(before) == 4  # gate_up_proj + down_proj in 2 MoE layers
        for tensor in merged_experts:  # every fused expert tensor now differs from its base value
            assert not any(old.shape == tensor.shape and torch.equal(old, tensor) for old in before)
