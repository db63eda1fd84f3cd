"""The cheapest change that makes a run fit.

Moves and their costs, from the measured trade-offs in the performance notes: checkpointing costs
about 20-30 % throughput; halving the micro-batch (gradient accumulation keeps the global batch)
costs GPU efficiency; each ZeRO stage adds communication; offload moves work to the CPU and PCIe
(optimizer offload about 2x slower steps, parameter offload more); sequence parallelism adds all-to-all
per layer; LoRA/QLoRA change what is trained; more GPUs cost money. Every combination of moves is
evaluated (pure arithmetic on the profile) and the fitting one with the lowest total cost wins; ties go
to the one with more free memory.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from dsft.errors import DsftError
from dsft.plan.memory import MemoryEstimate, PlanRequest
from dsft.plan.planner import ModelProfile, estimate_memory, supports_sequence_parallel, with_changes

COST_CHECKPOINTING = 1.0
COST_HALVE_MICRO_BATCH = 0.5
COST_PER_ZERO_STAGE = {0: 0.0, 1: 0.2, 2: 0.4, 3: 1.2}
COST_OFFLOAD = {"none": 0.0, "optimizer": 2.5, "optimizer+param": 4.0}
COST_PER_SP_DOUBLING = 0.8
# Switching full fine-tuning to adapters changes what is trained: dearer than several GPU doublings.
COST_METHOD = {("full", "lora"): 15.0, ("full", "qlora"): 16.5, ("lora", "qlora"): 1.5}
COST_PER_GPU_DOUBLING = 3.0
MAX_NODES = 256


@dataclass
class Recommendation:
    """A fitting configuration, the moves that lead to it from the request, and its estimate."""

    request: PlanRequest
    changes: list[str]
    cost: float
    estimate: MemoryEstimate

    def to_dict(self) -> dict[str, Any]:
        return {"changes": self.changes, "cost": round(self.cost, 2),
                "per_gpu_bytes": self.estimate.per_gpu_bytes, "settings": _settings(self.request)}


def _settings(req: PlanRequest) -> dict[str, Any]:
    return {"method": req.method, "gpus_per_node": req.gpus_per_node, "nodes": req.nodes, "zero": req.zero,
            "offload": req.offload, "micro_batch": req.micro_batch, "sp": req.sp,
            "grad_checkpointing": req.grad_checkpointing}


def _gpu_layouts(req: PlanRequest) -> list[tuple[int, int, int]]:
    """(gpus_per_node, nodes, doublings): the request's layout, then doublings (fill a node of 8 first)."""
    layouts, gpus, nodes, step = [(req.gpus_per_node, req.nodes, 0)], req.gpus_per_node, req.nodes, 0
    while nodes <= MAX_NODES and step < 8:
        step += 1
        if gpus < 8 and nodes == 1:
            gpus *= 2
        else:
            nodes *= 2
        layouts.append((gpus, nodes, step))
    return layouts


def _describe(req: PlanRequest, new: PlanRequest) -> list[str]:
    changes = []
    if new.method != req.method:
        changes.append(f"--method {new.method}")
    if (new.gpus_per_node, new.nodes) != (req.gpus_per_node, req.nodes):
        changes.append(f"--gpus-per-node {new.gpus_per_node} --nodes {new.nodes}")
    if new.zero != req.zero:
        changes.append(f"--zero {new.zero}")
    if new.offload != req.offload:
        changes.append(f"--offload {new.offload}")
    if new.sp != req.sp:
        changes.append(f"--sp {new.sp}")
    if new.grad_checkpointing != req.grad_checkpointing:
        changes.append("--grad-checkpointing")
    if new.micro_batch != req.micro_batch:
        changes.append(f"--micro-batch {new.micro_batch} (raise gradient accumulation to keep the batch)")
    return changes


def _halvings(original: int, smaller: int) -> int:
    """How many times ``original`` was halved to reach ``smaller`` (both powers-of-two apart)."""
    return (original // smaller).bit_length() - 1


def _candidates(req: PlanRequest) -> Any:
    """(cost, request) for every combination of moves from ``req`` that can run as stated."""
    methods = {"full": ["full", "lora", "qlora"], "lora": ["lora", "qlora"], "qlora": ["qlora"]}[req.method]
    micro = sorted({req.micro_batch >> k for k in range(8) if req.micro_batch >> k >= 1}, reverse=True)
    zeros = [z for z in (0, 1, 2, 3) if z >= req.zero]
    offloads = ["none", "optimizer", "optimizer+param"]
    for method, (gpus, nodes, doublings), zero, offload, mb, sp_exp, ckpt in itertools.product(
        methods, _gpu_layouts(req), zeros, offloads, micro, range(5), (req.grad_checkpointing, True)
    ):
        sp = req.sp * 2**sp_exp
        new = with_changes(req, method=method, gpus_per_node=gpus, nodes=nodes, zero=zero, offload=offload,
                           micro_batch=mb, sp=sp, grad_checkpointing=ckpt)
        if (offload != "none" and zero == 0) or (offload == "optimizer+param" and zero != 3):
            continue
        if new.world_size % sp or req.seq_len % sp or (method == "qlora" and req.precision == "fp32"):
            continue
        cost = (COST_METHOD.get((req.method, method), 0.0) + doublings * COST_PER_GPU_DOUBLING
                + COST_PER_ZERO_STAGE[zero] - COST_PER_ZERO_STAGE[req.zero]
                + COST_OFFLOAD[offload] - COST_OFFLOAD[req.offload] + sp_exp * COST_PER_SP_DOUBLING
                + (COST_CHECKPOINTING if ckpt and not req.grad_checkpointing else 0.0)
                + COST_HALVE_MICRO_BATCH * _halvings(req.micro_batch, mb))
        yield cost, new


def recommend(profile: ModelProfile, req: PlanRequest) -> Recommendation | None:
    """The lowest-cost configuration that fits ``req.gpu_mem_gib``; None when nothing in reach fits."""
    best: tuple[float, int, PlanRequest, MemoryEstimate] | None = None
    for cost, candidate in sorted(_candidates(req), key=lambda pair: pair[0]):
        if best is not None and cost > best[0]:
            break
        if candidate.sp != req.sp and not supports_sequence_parallel(profile, candidate.sp):
            continue  # a change dsft could not train is never the recommendation
        try:
            estimate = estimate_memory(profile, candidate)
        except DsftError:
            continue
        if estimate.fits and (best is None or estimate.per_gpu_bytes < best[1]):
            best = (cost, estimate.per_gpu_bytes, candidate, estimate)
    if best is None:
        return None
    return Recommendation(request=best[2], changes=_describe(req, best[2]), cost=best[0], estimate=best[3])
