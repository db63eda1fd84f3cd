"""GPU telemetry for metrics.jsonl: utilisation, memory and power of every visible GPU, read through NVML.

What ``watch nvidia-smi`` shows in a second terminal, recorded next to the loss at every logged step:

* ``gpuN_util_pct``: percent of the last sample period in which a kernel ran on GPU N (NVML's
  utilisation rate, the ``GPU-Util`` column of nvidia-smi);
* ``gpuN_mem_used_gib``: device memory in use on GPU N by every process (NVML);
* ``gpuN_power_w``: board power draw in watts (NVML);
* ``gpuN_mem_reserved_gib``: memory held by this process's PyTorch caching allocator, for the GPU this
  process trains on only (PyTorch cannot see other processes' reservations: no column rather than a 0).

N is the CUDA index as the training process sees it (``CUDA_VISIBLE_DEVICES`` order). Without NVML (the
``nvidia-ml-py`` package, extra ``dsft[gpu]``), a driver, or a GPU, there are no such columns at all.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

import torch

log = logging.getLogger(__name__)
GIB = 2**30
GPU_KEY = re.compile(r"^gpu\d+_")


def _visible_nvml_ids(count: int) -> list[str | int]:
    """NVML device ids (indices or UUIDs) in CUDA order, following ``CUDA_VISIBLE_DEVICES``."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return list(range(count))
    ids: list[str | int] = []
    for item in (v.strip() for v in visible.split(",")):
        if not item:
            continue
        if item.isdigit():
            if int(item) >= count:
                break  # CUDA stops at the first invalid index too
            ids.append(int(item))
        elif item.startswith(("GPU-", "MIG-")):
            ids.append(item)
        else:
            break
    return ids


class GpuTelemetry:
    """Samples every visible GPU through an initialised NVML module (``pynvml``)."""

    def __init__(self, nvml: Any, own_device: int | None = None) -> None:
        self.nvml = nvml
        self.own_device = own_device
        self.handles = []
        for device_id in _visible_nvml_ids(nvml.nvmlDeviceGetCount()):
            if isinstance(device_id, int):
                self.handles.append(nvml.nvmlDeviceGetHandleByIndex(device_id))
            else:
                self.handles.append(nvml.nvmlDeviceGetHandleByUUID(device_id))

    @classmethod
    def open(cls) -> GpuTelemetry | None:
        """Telemetry for this machine, or None when there is no NVML, driver or visible GPU."""
        try:
            import pynvml  # optional dependency (nvidia-ml-py): imported only where telemetry is wanted
        except ImportError:
            if torch.cuda.is_available():
                log.info("GPU telemetry off: install nvidia-ml-py (pip install 'dsft[gpu]') to log it")
            return None
        try:
            pynvml.nvmlInit()
            own = torch.cuda.current_device() if torch.cuda.is_available() else None
            telemetry = cls(pynvml, own)
        except Exception as exc:  # NVMLError and its many subclasses: no driver, no permission, no library
            log.info("GPU telemetry off: NVML unavailable (%s)", exc)
            return None
        if not telemetry.handles:
            telemetry.close()
            return None
        return telemetry

    def sample(self) -> dict[str, float]:
        """One reading of every visible GPU; a quantity NVML cannot read on a GPU is left out, never zeroed."""
        row: dict[str, float] = {}
        for index, handle in enumerate(self.handles):
            readings = {
                "util_pct": lambda h: float(self.nvml.nvmlDeviceGetUtilizationRates(h).gpu),
                "mem_used_gib": lambda h: self.nvml.nvmlDeviceGetMemoryInfo(h).used / GIB,
                "power_w": lambda h: self.nvml.nvmlDeviceGetPowerUsage(h) / 1000.0,  # NVML reports milliwatts
            }
            for name, read in readings.items():
                try:
                    row[f"gpu{index}_{name}"] = round(read(handle), 3)
                except Exception:  # NVMLError_NotSupported (e.g. power on some boards): no column
                    continue
            if index == self.own_device:
                row[f"gpu{index}_mem_reserved_gib"] = round(torch.cuda.memory_reserved(index) / GIB, 3)
        return row

    def close(self) -> None:
        try:
            self.nvml.nvmlShutdown()
        except Exception:  # already shut down, or the driver went away: nothing to release
            pass


def gpu_columns(rows: list[dict[str, Any]]) -> list[str]:
    """The telemetry keys present in metrics rows, in GPU then quantity order."""
    return sorted({k for r in rows for k in r if GPU_KEY.match(k)})


def plot_gpu(rows: list[dict[str, Any]], out: Any) -> Any:
    """``gpu.png``: utilisation, memory and power per GPU against the step; None when no row has telemetry."""
    columns = gpu_columns(rows)
    if not columns:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("util_pct", "utilisation (%)"), ("mem_used_gib", "memory (GiB)"), ("power_w", "power (W)")]
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 7), dpi=110, sharex=True)
    for ax, (quantity, label) in zip(axes, panels):
        for key in columns:
            if key.endswith("_" + quantity) or (quantity == "mem_used_gib" and key.endswith("_mem_reserved_gib")):
                points = [(r["step"], r[key]) for r in rows if key in r]
                style = "--" if key.endswith("reserved_gib") else "-"
                name = key.split("_", 1)[0]
                if quantity == "mem_used_gib":  # two series per GPU on this panel
                    name += " reserved (PyTorch)" if key.endswith("reserved_gib") else " used (NVML)"
                ax.plot(*zip(*points), style, label=name, linewidth=1.2)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    axes[-1].set_xlabel("optimizer step")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out
