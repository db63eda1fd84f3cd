"""The planner against published sizing: the 671B full-SFT table and the seeds' rules of thumb.

The 671B rows (8 x H100-80G per node, 32K context, ZeRO-3, bf16, activation checkpointing) were
measured with xtuner's implementation; dsft trains transformers' DeepseekV3 whose routed experts are
one fused parameter per layer, which ZeRO-3 gathers whole (11.3B parameters, 45 GB with its gradient).
The table is also not consistent with any model monotone in tokens per GPU: "SP 1, bs 1" (32K tokens
per GPU) is listed at ~30 GB while "SP 4, bs 2" (16K tokens per GPU) needs ~74 GB. Rows the planner
does not reproduce within 20 % are strict xfails carrying the measured gap in their reason.
"""

from __future__ import annotations

import pytest

from dsft.plan.memory import GIB, PlanRequest
from dsft.plan.model_source import PLANNER_PRESETS
from dsft.plan.planner import estimate_memory, load_profile
from dsft.plan.recommend import recommend


@pytest.fixture(scope="module")
def v3():
    return load_profile("deepseek-v3")


def _v3_request(nodes: int, sp: int, offload: str, batch: int) -> PlanRequest:
    return PlanRequest(method="full", nodes=nodes, gpus_per_node=8, gpu_mem_gib=80, seq_len=32768,
                       micro_batch=batch, zero=3, offload=offload, sp=sp, grad_checkpointing=True)  # type: ignore[arg-type]


TRAINS = [
    pytest.param(16, 8, 2, 30, marks=pytest.mark.xfail(strict=True, reason="planner 57.2 GiB vs ~30 GB (+91%): fused-expert ZeRO-3 gather")),
    pytest.param(32, 8, 1, 32, marks=pytest.mark.xfail(strict=True, reason="planner 50.4 GiB vs ~32 GB (+57%): fused-expert ZeRO-3 gather")),
    pytest.param(32, 4, 1, 25, marks=pytest.mark.xfail(strict=True, reason="planner 57.2 GiB vs ~25 GB (+129%): fused-expert ZeRO-3 gather")),
    pytest.param(32, 1, 1, 30, marks=pytest.mark.xfail(strict=True, reason="planner 97.2 GiB vs ~30 GB: one MoE layer recomputed at 32K tokens is 24 GB; the table is inconsistent with its SP4/bs2 row")),
    pytest.param(32, 4, 2, 74),
]


@pytest.mark.parametrize("nodes,sp,batch,stated_gb", TRAINS)
def test_671b_rows_that_train_are_sized_within_20_percent(v3, nodes: int, sp: int, batch: int, stated_gb: float) -> None:
    estimate = estimate_memory(v3, _v3_request(nodes, sp, "optimizer+param", batch))
    assert abs(estimate.per_gpu_bytes / GIB - stated_gb) / stated_gb <= 0.20
    assert estimate.fits


@pytest.mark.parametrize("nodes,sp,offload,batch", [
    (32, 1, "optimizer+param", 2), (32, 4, "none", 1), (32, 1, "none", 1),
])
def test_671b_rows_that_ran_out_of_memory_do_not_fit_80gb(v3, nodes: int, sp: int, offload: str, batch: int) -> None:
    estimate = estimate_memory(v3, _v3_request(nodes, sp, offload, batch))
    assert not estimate.fits
    assert estimate.per_gpu_bytes > 80 * GIB


def test_671b_checkpoint_is_terabytes(v3) -> None:
    # The guide reports about 7.4 TB per intermediate checkpoint; DeepSpeed writes bf16 weights plus
    # fp32 master weights and both Adam moments (14 bytes per parameter).
    estimate = estimate_memory(v3, _v3_request(32, 4, "optimizer+param", 2))
    assert 7.0e12 <= estimate.checkpoint_bytes <= 1.0e13


def test_7b_lora_fits_one_24gb_card() -> None:
    """Seeds: 7B LoRA on one consumer card (bf16, checkpointing, 1024-token rows as the seeds pad to)."""
    for preset in ("deepseek-llm-7b", "deepseek-r1-distill-qwen-7b"):
        profile = load_profile(preset)
        estimate = estimate_memory(profile, PlanRequest(method="lora", gpu_mem_gib=24, seq_len=1024,
                                                        grad_checkpointing=True))
        assert estimate.fits, (preset, estimate.per_gpu_bytes / GIB)
        full = estimate_memory(profile, PlanRequest(method="full", gpu_mem_gib=24, seq_len=1024, grad_checkpointing=True))
        assert not full.fits


def test_full_finetune_of_32b_needs_several_80gb_gpus() -> None:
    """Seeds: 34B full fine-tuning on four cards. Without CPU offload no single 80 GB GPU holds it."""
    profile = load_profile("deepseek-r1-distill-qwen-32b")
    for zero in (0, 1, 2, 3):
        single = PlanRequest(method="full", zero=zero, seq_len=2048, grad_checkpointing=True)
        assert not estimate_memory(profile, single).fits, zero
    four = PlanRequest(method="full", zero=3, gpus_per_node=4, seq_len=2048, grad_checkpointing=True)
    assert not estimate_memory(profile, four).fits  # 16 bytes/param over 4 GPUs is 131 GB each
    eight = PlanRequest(method="full", zero=3, gpus_per_node=8, seq_len=2048, grad_checkpointing=True)
    # 77.25 GiB, at the start of backward: the chunked loss's fp32 lm_head gradient (152,064 x 5,120) is held
    # there beside the states; its bf16 cast is formed a block of rows at a time, or eight would not fit.
    assert estimate_memory(profile, eight).fits
    assert estimate_memory(profile, PlanRequest(method="full", zero=3, gpus_per_node=8, nodes=2, seq_len=2048,
                                                grad_checkpointing=True)).fits


def test_recommendation_fits_and_is_the_cheapest_single_change() -> None:
    profile = load_profile("deepseek-r1-distill-qwen-7b")
    req = PlanRequest(method="lora", gpu_mem_gib=24, seq_len=2048)
    assert not estimate_memory(profile, req).fits
    rec = recommend(profile, req)
    assert rec is not None and rec.estimate.fits
    assert rec.changes == ["--grad-checkpointing"]


def test_every_reference_preset_is_sized() -> None:
    expected_billions = {"deepseek-llm-7b": 6.91, "deepseek-llm-67b": 67.4, "deepseek-r1-distill-qwen-1.5b": 1.777,
                         "deepseek-r1-distill-qwen-7b": 7.616, "deepseek-r1-distill-qwen-14b": 14.77,
                         "deepseek-r1-distill-qwen-32b": 32.76, "deepseek-r1-distill-llama-8b": 8.03,
                         "deepseek-r1-distill-llama-70b": 70.55, "deepseek-moe-16b": 16.4, "deepseek-v2-lite": 15.7,
                         "deepseek-v2": 235.7, "deepseek-v3": 671.0}
    assert set(expected_billions) <= set(PLANNER_PRESETS)
    for name, billions in expected_billions.items():
        total = load_profile(name).shapes.total_params / 1e9
        assert abs(total - billions) / billions < 0.01, (name, total)


def test_recommendation_respects_host_ram() -> None:
    """32B full fine-tuning on one GPU: optimizer offload would fit the GPU but needs ~0.8 TB of host RAM."""
    profile = load_profile("deepseek-r1-distill-qwen-32b")
    unlimited = recommend(profile, PlanRequest(method="full", seq_len=2048))
    assert unlimited is not None and "--offload optimizer" in unlimited.changes
    assert unlimited.estimate.host_ram_bytes > 512 * GIB
    limited = recommend(profile, PlanRequest(method="full", seq_len=2048, host_mem_gib=256))
    assert limited is not None and limited.estimate.fits
    assert limited.estimate.host_ram_bytes <= 256 * GIB
    assert limited.request.method == "full" and limited.request.world_size > 1


def test_sp_is_marked_sizing_only_where_ulysses_cannot_split_the_heads(v3) -> None:
    """DeepSeek-V3's 128 MLA heads split over 4 ranks (dsft trains it); R1-Distill-Qwen-1.5B's 12 query heads
    do not split over 8 (``dsft train`` refuses it)."""
    for sp in (1, 4):
        assert not any("sizing only" in note for note in estimate_memory(v3, _v3_request(32, sp, "optimizer+param", 2)).notes)
    small = load_profile("deepseek-r1-distill-qwen-1.5b")
    request = PlanRequest(method="lora", gpus_per_node=8, seq_len=32768, sp=8, zero=1)  # type: ignore[arg-type]
    notes = [note for note in estimate_memory(small, request).notes if "sizing only" in note]
    assert notes and "must divide the model's attention heads (12)" in notes[0]


@pytest.mark.parametrize(("model", "nodes", "base_gib"), [("deepseek-r1-distill-qwen-32b", 1, 61),
                                                           ("deepseek-r1-distill-llama-8b", 1, 14.9),
                                                           ("deepseek-r1-distill-qwen-32b", 2, 30.5)])
def test_lora_zero3_param_offload_counts_the_frozen_base_on_the_host(model: str, nodes: int, base_gib: float) -> None:
    """ZeRO-3 parameter offload moves the frozen bf16 base to host RAM (partitioned over the nodes)."""
    profile = load_profile(model)
    req = PlanRequest(method="lora", nodes=nodes, gpus_per_node=2, gpu_mem_gib=24, seq_len=1024, zero=3,
                      offload="optimizer+param", host_mem_gib=base_gib / 2)
    estimate = estimate_memory(profile, req)
    assert estimate.host_breakdown["offloaded_states"] >= base_gib * 0.97 * GIB
    assert not estimate.fits  # the host cannot hold half the weights it is asked to take
