"""The planner's model states against DeepSpeed's own estimators (deepspeed 0.19: stage_1_and_2.py / stage3.py).

DeepSpeed's ``estimate_zero2_model_states_mem_needs`` / ``estimate_zero3_model_states_mem_needs`` take a
parameter count (and the largest layer's) and return (host bytes, GPU bytes). The planner counts
parameters from the meta-device model, so the counts themselves are checked against DeepSpeed's
``model_to_params`` on real (tiny) models, and the per-GPU model states against the estimators for the
real presets, within 5 %.
"""

from __future__ import annotations

import pytest
import torch
from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
from deepspeed.runtime.zero.stage3 import model_to_params as zero3_model_to_params
from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

from dsft.plan.memory import PlanRequest, full_model_states, host_breakdown
from dsft.plan.planner import load_profile
from dsft.plan.shapes import model_shapes

TOLERANCE = 0.05


def _relative_error(ours: int, theirs: int) -> float:
    return abs(ours - theirs) / theirs


@pytest.mark.parametrize("preset", ["tiny-deepseek-v3", "tiny-r1-distill-qwen", "tiny-deepseek-llm"])
def test_parameter_counts_match_deepspeed_on_real_models(preset: str, tiny_model_dir) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(tiny_model_dir(preset))
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # real storage: data_ptr dedup works
    total, largest = zero3_model_to_params(model)
    shapes = model_shapes(config)
    assert shapes.total_params == total
    assert shapes.largest_layer_params == largest


PRESETS = ["deepseek-r1-distill-qwen-7b", "deepseek-r1-distill-qwen-32b", "deepseek-v2-lite", "deepseek-v3"]
LAYOUTS = [(1, 1), (8, 1), (8, 4), (8, 32)]


@pytest.fixture(scope="module")
def profiles() -> dict:
    return {name: load_profile(name) for name in PRESETS}


def _states(profile, **kw) -> int:
    return sum(full_model_states(profile.shapes, PlanRequest(method="full", **kw)).values())


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("gpus,nodes", LAYOUTS)
def test_zero2_model_states_match_deepspeed(preset: str, gpus: int, nodes: int, profiles: dict) -> None:
    profile = profiles[preset]
    psi = profile.shapes.total_params
    for offload in (False, True):
        _, gpu = estimate_zero2_model_states_mem_needs(psi, gpus, nodes, cpu_offload=offload)
        ours = _states(profile, zero=2, gpus_per_node=gpus, nodes=nodes, offload="optimizer" if offload else "none")
        assert _relative_error(ours, gpu) <= TOLERANCE, (preset, gpus, nodes, offload, ours, gpu)
    host, _ = estimate_zero2_model_states_mem_needs(psi, gpus, nodes, cpu_offload=True)
    req = PlanRequest(method="full", zero=2, gpus_per_node=gpus, nodes=nodes, offload="optimizer")
    assert _relative_error(host_breakdown(profile.shapes, req)["offloaded_states"], host) <= TOLERANCE


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("gpus,nodes", LAYOUTS)
def test_zero3_model_states_match_deepspeed(preset: str, gpus: int, nodes: int, profiles: dict) -> None:
    profile = profiles[preset]
    psi, largest = profile.shapes.total_params, profile.shapes.largest_layer_params
    cases = [("none", False, False), ("optimizer", True, False), ("optimizer+param", True, True)]
    for offload, cpu_offload, cpu_offload_params in cases:
        host, gpu, _ = estimate_zero3_model_states_mem_needs(
            psi, largest, gpus, nodes, cpu_offload=cpu_offload, cpu_offload_params=cpu_offload_params)
        ours = _states(profile, zero=3, gpus_per_node=gpus, nodes=nodes, offload=offload)
        assert _relative_error(ours, gpu) <= TOLERANCE, (preset, gpus, nodes, offload, ours, gpu)
        if cpu_offload:
            req = PlanRequest(method="full", zero=3, gpus_per_node=gpus, nodes=nodes, offload=offload)  # type: ignore[arg-type]
            assert _relative_error(host_breakdown(profile.shapes, req)["offloaded_states"], host) <= TOLERANCE
