"""Where one benchmark system's step time goes: ``dsft bench train --profile DIR``.

:class:`StepProfiler` records the timed optimizer steps of a system with ``torch.profiler`` and writes
``DIR/<system>.txt``: how busy the device was over the recorded wall time, the device time by kind of
kernel (matmul, attention, everything else), the top kernels and operators, and the host reads per
micro-batch (a tensor's value read on the host, e.g. ``float(loss)``: on a GPU each waits for every kernel
queued before it, so the host cannot queue ahead). On CPU the same figures are taken from operator CPU
time. The recorded steps are the timed ones and profiling slows them down,
so a profiled report says ``"profiled": true`` and its speed figures are not comparable with others.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import torch
from torch.autograd import DeviceType
from transformers import TrainerCallback

# Kernel (or, on CPU, operator) name -> kind. The first pattern that matches wins.
KINDS = (
    ("attention", re.compile(r"flash|fmha|attention|varlen", re.IGNORECASE)),
    ("matmul", re.compile(r"gemm|cutlass|xmma|nvjet|cublas|aten::(mm|bmm|addmm_?|baddbmm|matmul|linear|_grouped_mm)\b", re.IGNORECASE)),
)


# The operator behind ``item()``, ``float()``, ``int()`` and ``bool()`` of a tensor: one host read each.
HOST_READ_OP = "aten::_local_scalar_dense"


def kind_of(name: str) -> str:
    for kind, pattern in KINDS:
        if pattern.search(name):
            return kind
    return "other"


def _busy_seconds(intervals: list[tuple[float, float]]) -> float:
    """The time covered by the union of ``intervals`` (microseconds in, seconds out)."""
    total, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total / 1e6


def summarize_profile(events: list[Any], wall_seconds: float, on_device: bool, steps: int = 0,
                      micro_batches: int = 0) -> dict[str, Any]:
    """Device busy share, time per kind, the top entries and the host reads from a profiler's ``events()``
    over ``steps`` optimizer steps of ``micro_batches`` micro-batches."""
    if on_device:
        leaves = [e for e in events if e.device_type == DeviceType.CUDA]
        seconds = [(e.name, e.time_range.elapsed_us() / 1e6) for e in leaves]
        busy = _busy_seconds([(e.time_range.start, e.time_range.end) for e in leaves])
    else:  # operators' own CPU time (their children's excluded), top-level and nested alike
        leaves = [e for e in events if e.device_type == DeviceType.CPU]
        seconds = [(e.name, e.self_cpu_time_total / 1e6) for e in leaves]
        busy = sum(s for _, s in seconds)
    by_kind: dict[str, float] = {}
    by_name: dict[str, list[float]] = {}
    for name, s in seconds:
        by_kind[kind_of(name)] = by_kind.get(kind_of(name), 0.0) + s
        entry = by_name.setdefault(name, [0.0, 0])
        entry[0] += s
        entry[1] += 1
    total = sum(by_kind.values()) or 1.0
    top = sorted(by_name.items(), key=lambda item: -item[1][0])[:40]
    reads = sum(1 for e in events if e.name == HOST_READ_OP)
    return {
        "steps": steps,
        "micro_batches": micro_batches,
        "host_reads": reads,
        "host_reads_per_micro_batch": reads / micro_batches if micro_batches else None,
        # Every device-to-host copy, the reads above included (``.cpu()``, ``.tolist()`` of a device tensor).
        "device_to_host_copies": sum(1 for e in leaves if e.name.startswith("Memcpy DtoH")) if on_device else None,
        "recorded_wall_seconds": wall_seconds,
        "busy_seconds": busy,
        "busy_share_of_wall": busy / wall_seconds if wall_seconds > 0 else None,
        "share_by_kind": {kind: s / total for kind, s in sorted(by_kind.items(), key=lambda kv: -kv[1])},
        "top": [{"name": name[:160], "seconds": s, "calls": calls, "kind": kind_of(name)}
                for name, (s, calls) in top],
    }


def format_profile(system: str, summary: dict[str, Any], on_device: bool) -> str:
    unit = "device kernels" if on_device else "operators' own CPU time"
    lines = [(f"{system}: {summary['recorded_wall_seconds']:.3f} s recorded, {summary['busy_seconds']:.3f} s busy "
              f"({unit}; {summary['busy_share_of_wall'] or 0:.1%} of wall)"), "",
             "share by kind: " + ", ".join(f"{k} {v:.1%}" for k, v in summary["share_by_kind"].items()),
             _host_reads_line(summary), "",
             f"{'seconds':>9} {'calls':>7}  kind       name"]
    lines += [f"{row['seconds']:9.4f} {row['calls']:7d}  {row['kind']:<10} {row['name']}" for row in summary["top"]]
    return "\n".join(lines) + "\n"


def _host_reads_line(summary: dict[str, Any]) -> str:
    per = summary.get("host_reads_per_micro_batch")
    line = (f"host reads (item/float/int/bool of a tensor): {summary['host_reads']} over {summary['steps']} "
            f"steps of {summary['micro_batches']} micro-batches"
            + (f", {per:.2f} per micro-batch" if per is not None else ""))
    if summary.get("device_to_host_copies") is not None:
        line += f"; device-to-host copies: {summary['device_to_host_copies']}"
    return line


class StepProfiler(TrainerCallback):
    """Profile optimizer steps ``first``..end of training (step 0 is the benchmark's warm-up)."""

    def __init__(self, out_dir: str | Path, system: str, first: int = 1) -> None:
        self.out_dir, self.system, self.first = Path(out_dir), system, first
        self.profiler: Any = None
        self.started = 0.0
        self.summary: dict[str, Any] | None = None
        self.on_device = torch.cuda.is_available()
        self.steps = self.micro_batches = 0  # recorded

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.profiler is None and state.global_step >= self.first and self.summary is None:
            activities = [torch.profiler.ProfilerActivity.CPU]
            if self.on_device:
                activities.append(torch.profiler.ProfilerActivity.CUDA)
                torch.cuda.synchronize()
            self.profiler = torch.profiler.profile(activities=activities)
            self.profiler.__enter__()
            self.started = time.perf_counter()

    def on_substep_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.profiler is not None:  # a micro-batch that ends no optimizer step
            self.micro_batches += 1

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.profiler is not None:
            self.steps += 1
            self.micro_batches += 1

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.profiler is None:
            return
        if self.on_device:
            torch.cuda.synchronize()
        wall = time.perf_counter() - self.started
        self.profiler.__exit__(None, None, None)
        self.summary = summarize_profile(list(self.profiler.events()), wall, self.on_device, self.steps,
                                         self.micro_batches)
        self.profiler = None
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / f"{self.system}.txt").write_text(
            format_profile(self.system, self.summary, self.on_device), encoding="utf-8")
