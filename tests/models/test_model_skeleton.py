"""The weightless skeleton holds the modules the load builds, so ``lora.targets`` is checked before anything
heavy: the same names as the loaded model for every kind of source, and no skeleton (no early refusal) where
the exact architecture cannot be known without the weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsft.config import load_config
from dsft.errors import DsftError
from dsft.models.loading import load_model
from dsft.models.lora import discover_lora_targets, linear_module_names
from dsft.models.presets import build_on_meta, real_model_config
from dsft.models.skeleton import check_lora_targets, model_skeleton
from dsft.models.tiny import write_random_checkpoint

# A DeepSeek-V3 shape small enough for a test, as `dsft models random deepseek-r1 --set ...` writes it.
SMALL_V3 = {"hidden_size": 64, "intermediate_size": 128, "moe_intermediate_size": 32, "num_hidden_layers": 2,
            "first_k_dense_replace": 1, "num_attention_heads": 4, "num_key_value_heads": 4, "q_lora_rank": 32,
            "kv_lora_rank": 16, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16,
            "n_routed_experts": 4, "num_experts_per_tok": 2, "n_group": 2, "topk_group": 1}
SMALL_QWEN2 = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
               "num_key_value_heads": 2}
SMALL_MOE = {"hidden_size": 64, "intermediate_size": 128, "moe_intermediate_size": 32, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 4, "n_routed_experts": 4, "num_experts_per_tok": 2,
             "first_k_dense_replace": 1, "vocab_size": 512}


def _same_modules(skeleton, loaded) -> None:
    """Every adaptable Linear (full names) and expert parameter, and what all-linear picks, are the same."""
    assert skeleton is not None
    assert linear_module_names(skeleton) == linear_module_names(loaded)
    assert discover_lora_targets(skeleton) == discover_lora_targets(loaded)


@pytest.mark.parametrize("name", ["tiny-deepseek-v3", "tiny-r1-distill-qwen", "tiny-deepseek-llm"])
def test_tiny_preset_skeleton_has_the_loaded_models_modules(name: str, tiny_model_dir) -> None:
    _same_modules(model_skeleton(name), load_model(tiny_model_dir(name)))


@pytest.mark.parametrize("preset, fields", [("deepseek-r1", SMALL_V3), ("r1-distill-qwen-1.5b", SMALL_QWEN2)])
def test_random_model_skeleton_has_the_loaded_models_modules(preset: str, fields: dict, run_cli,
                                                             tmp_path: Path) -> None:
    out = tmp_path / preset
    sets = [arg for key, value in fields.items() for arg in ("--set", f"{key}={value}")]
    code, _, err = run_cli(["models", "random", preset, "--out", str(out), "--dtype", "float32", *sets])
    assert code == 0, err
    _same_modules(model_skeleton(out), load_model(out))


def test_v2_lite_skeleton_is_v2s_own_attention(tmp_path: Path) -> None:
    """DeepSeek-V2-Lite has no q LoRA (q_proj, not q_a_proj/q_b_proj): the names are its own, not V3's."""
    config = {**real_model_config("deepseek-v2-lite"), **SMALL_MOE, "kv_lora_rank": 16, "qk_nope_head_dim": 16,
              "qk_rope_head_dim": 8, "v_head_dim": 16}
    write_random_checkpoint(tmp_path, config, {}, seed=0)
    skeleton = model_skeleton(tmp_path)
    _same_modules(skeleton, load_model(tmp_path))
    assert "q_proj" in discover_lora_targets(skeleton).modules
    assert discover_lora_targets(skeleton, ["q_proj", "kv_b_proj"]).modules == ["q_proj", "kv_b_proj"]
    with pytest.raises(DsftError, match="'q_a_proj' matches no adaptable Linear"):
        discover_lora_targets(skeleton, ["q_a_proj"])


def test_remote_code_deepseek_moe_gets_no_skeleton_and_no_early_refusal(tmp_path: Path) -> None:
    """DeepSeek-MoE is remote code: the planner's Qwen2-MoE stand-in has other module names (fused experts),
    so targets the real model takes must not be judged on it. No skeleton: the loaded model decides."""
    config = {**real_model_config("deepseek-moe-16b"), **SMALL_MOE}
    (tmp_path / "config.json").write_text(json.dumps(config))
    expert = "model.layers.1.mlp.experts.0.gate_proj"  # a Linear of the remote DeepseekMoE's expert list
    with pytest.raises(DsftError, match="matches no adaptable Linear"):
        discover_lora_targets(build_on_meta(config), [expert])  # the stand-in would refuse it
    for trust in (False, True):
        assert model_skeleton(tmp_path, trust_remote_code=trust) is None
        cfg = load_config(None, [f"model.name_or_path={tmp_path}", f"model.trust_remote_code={trust}",
                                 f"lora.targets=[{expert}]"])
        check_lora_targets(cfg)  # not refused


def test_uncached_hub_id_is_left_to_the_load(tmp_path: Path, monkeypatch) -> None:
    """A hub id not downloaded yet: no network request here (an offline machine would retry for half a
    minute), no skeleton, no refusal."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert model_skeleton("deepseek-ai/no-such-model", cache_dir=tmp_path) is None
