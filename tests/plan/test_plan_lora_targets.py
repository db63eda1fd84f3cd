"""`dsft plan` sizes LoRA on the modules the config's ``lora.targets`` name, as training adapts them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from dsft.config import LoraConfig
from dsft.models.lora import apply_lora
from dsft.models.presets import real_model_config
from dsft.plan.planner import profile_from_config

GUIDE_002 = Path(__file__).resolve().parents[2] / "examples/guides/002-medical-cot-r1-distill/config.yaml"


@pytest.mark.parametrize("preset, targets, experts", [
    ("tiny-r1-distill-qwen", "all-linear", True),
    ("tiny-r1-distill-qwen", ["q_proj", "v_proj"], True),
    ("tiny-deepseek-v3", "all-linear", True),
    ("tiny-deepseek-v3", "all-linear", False),
    ("tiny-deepseek-v3", ["q_b_proj", "kv_b_proj", "mlp.experts.down_proj"], True),
])
def test_planned_adapter_parameters_are_those_peft_trains(preset, targets, experts, tiny_model_dir) -> None:
    config = AutoConfig.from_pretrained(tiny_model_dir(preset))
    planned = profile_from_config(config, lora_targets=targets, lora_experts=experts).shapes.lora_params(8)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    wrapped = apply_lora(model, LoraConfig(r=8, targets=targets, target_experts=experts))
    assert planned == sum(p.numel() for p in wrapped.parameters() if p.requires_grad)


def _plan(run_cli, *args: str) -> dict:
    code, out, err = run_cli(["plan", *args, "--json"])
    assert code == 0, err
    return json.loads(out)


def test_plan_config_honours_lora_targets(tmp_path: Path, run_cli) -> None:
    """Guide 002's q_proj + v_proj on the 7B distill: r x (in + out) per adapted matrix, counted from the model's
    published shapes, not the all-linear adapters."""
    qwen = real_model_config("r1-distill-qwen-7b")
    hidden, head = qwen["hidden_size"], qwen["hidden_size"] // qwen["num_attention_heads"]
    per_layer = (hidden + qwen["num_attention_heads"] * head) + (hidden + qwen["num_key_value_heads"] * head)
    guide = _plan(run_cli, "--config", str(GUIDE_002), "--model", "deepseek-r1-distill-qwen-7b")
    assert guide["params"]["lora"] == 16 * per_layer * qwen["num_hidden_layers"]  # lora.r: 16
    assert guide["breakdown"]["lora_weights"] == 4 * guide["params"]["lora"]  # fp32 adapters
    every_linear = _plan(run_cli, "--config", str(GUIDE_002), "--model", "deepseek-r1-distill-qwen-7b",
                         "--lora-targets", "all-linear")
    assert every_linear["params"]["lora"] > 7 * guide["params"]["lora"]
    assert every_linear["per_gpu_bytes"] > guide["per_gpu_bytes"]
    assert _plan(run_cli, "--model", "deepseek-r1-distill-qwen-7b", "--lora-targets", "q_proj,v_proj")["params"] \
        == guide["params"]


def test_plan_refuses_targets_the_model_does_not_have(tmp_path: Path, run_cli) -> None:
    code, _, err = run_cli(["plan", "--model", "deepseek-r1-distill-qwen-7b", "--lora-targets", "q_proj,vproj"])
    assert code == 2
    assert "lora.targets: 'vproj' matches no adaptable Linear" in err and "Traceback" not in err


def test_a_full_fine_tune_is_planned_whatever_its_unused_lora_targets_say(tmp_path: Path, run_cli) -> None:
    """train.method: full reads no lora key (dsft train does not check them; it names them as not applied)."""
    config = tmp_path / "full.yaml"
    config.write_text("model: {name_or_path: deepseek-r1-distill-qwen-7b}\ntrain: {method: full}\n"
                      "lora: {targets: [q_proj, vproj]}\n")
    code, out, err = run_cli(["plan", "--config", str(config), "--json"])
    assert code == 0, err
    assert json.loads(out)["request"]["method"] == "full"
    assert err.startswith("lora.targets=[q_proj, vproj]: not applied; train.method=full")
