"""GPU telemetry through a fake NVML module: columns per visible GPU, none at all without NVML."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
import torch

from dsft.training import gpu_telemetry
from dsft.training.gpu_telemetry import GpuTelemetry, gpu_columns

from tiny_runs import make_cfg, write_data


class FakeNvmlError(Exception):
    pass


def fake_nvml(devices: int = 2, power_supported: bool = True) -> types.ModuleType:
    """A stand-in for ``pynvml`` with ``devices`` GPUs whose readings encode the device index."""
    module = types.ModuleType("pynvml")
    calls = {"init": 0, "shutdown": 0, "samples": 0}

    def utilization(handle: int):  # noqa: ANN202
        calls["samples"] += 1
        return types.SimpleNamespace(gpu=10 * (handle + 1), memory=5)

    def power(handle: int) -> int:
        if not power_supported:
            raise FakeNvmlError("Not Supported")
        return 150_000 + handle * 1000  # milliwatts

    module.NVMLError = FakeNvmlError
    module.nvmlInit = lambda: calls.__setitem__("init", calls["init"] + 1)
    module.nvmlShutdown = lambda: calls.__setitem__("shutdown", calls["shutdown"] + 1)
    module.nvmlDeviceGetCount = lambda: devices
    module.nvmlDeviceGetHandleByIndex = lambda index: index
    module.nvmlDeviceGetHandleByUUID = lambda uuid: int(uuid.rsplit("-", 1)[1])
    module.nvmlDeviceGetUtilizationRates = utilization
    module.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=(h + 1) * 2**30, total=80 * 2**30)
    module.nvmlDeviceGetPowerUsage = power
    module.calls = calls
    return module


def test_every_visible_gpu_is_sampled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(devices=4))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    telemetry = GpuTelemetry.open()
    assert telemetry is not None
    row = telemetry.sample()
    # CUDA device 0 is NVML device 2: its readings are device 2's.
    assert row == {"gpu0_util_pct": 30.0, "gpu0_mem_used_gib": 3.0, "gpu0_power_w": 152.0,
                   "gpu1_util_pct": 40.0, "gpu1_mem_used_gib": 4.0, "gpu1_power_w": 153.0}
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-aaaa-1")
    assert GpuTelemetry.open().sample()["gpu0_util_pct"] == 20.0


def test_unsupported_reading_is_absent_not_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    telemetry = GpuTelemetry(fake_nvml(devices=1, power_supported=False))
    assert telemetry.sample() == {"gpu0_util_pct": 10.0, "gpu0_mem_used_gib": 1.0}


def test_reserved_memory_only_for_the_processs_own_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda index: 3 * 2**29)
    row = GpuTelemetry(fake_nvml(devices=2), own_device=1).sample()
    assert row["gpu1_mem_reserved_gib"] == 1.5 and "gpu0_mem_reserved_gib" not in row


def test_no_nvml_means_no_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails as if nvidia-ml-py were absent
    assert GpuTelemetry.open() is None
    broken = fake_nvml()
    broken.nvmlInit = lambda: (_ for _ in ()).throw(FakeNvmlError("Driver Not Loaded"))
    monkeypatch.setitem(sys.modules, "pynvml", broken)
    assert GpuTelemetry.open() is None


@pytest.mark.parametrize("with_nvml", [True, False])
def test_training_run_logs_gpu_columns_only_with_nvml(tmp_path: Path, tiny_model_dir, monkeypatch, with_nvml) -> None:
    from dsft.training.run import run_training
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tiny_model_dir("tiny-deepseek-v3")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    nvml = fake_nvml(devices=2)
    monkeypatch.setitem(sys.modules, "pynvml", nvml if with_nvml else None)
    cfg = make_cfg(write_data(tmp_path / "d.jsonl", n=16), "tiny-deepseek-v3", "train.max_steps=3", "eval.steps=0",
                   "data.val_ratio=0")
    run = tmp_path / "run"
    run_training(cfg, run, progress=False)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    if not with_nvml:
        assert gpu_columns(rows) == [] and not (run / "gpu.png").exists()
        return
    train_rows = [r for r in rows if "loss" in r]
    assert all(r["gpu1_power_w"] == 151.0 and r["gpu0_util_pct"] == 10.0 for r in train_rows)
    assert (run / "gpu.png").stat().st_size > 1000
    events = EventAccumulator(str(run / "tb")).Reload()
    assert "gpu/gpu1_mem_used_gib" in events.Tags()["scalars"]
    assert nvml.calls["shutdown"] == 1


def test_gpu_telemetry_module_never_imports_nvml_at_import_time() -> None:
    assert "pynvml" not in vars(gpu_telemetry)
