"""``dsft doctor``: what this machine can do for fine-tuning, and how to fix what is missing.

:func:`run_doctor` runs every check (never raising) and summarises the machine's capabilities in
plain words: which methods and features work here and which do not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dsft.doctor.checks import (
    Check,
    check_disk,
    check_libraries,
    check_python,
    check_torch,
    default_disk_paths,
)
from dsft.training.environment import cpu_multiplies_bf16

__all__ = ["Check", "DoctorReport", "run_doctor"]


@dataclass
class DoctorReport:
    """All checks plus what the machine can and cannot do."""

    checks: list[Check]
    can: list[str] = field(default_factory=list)
    cannot: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """False when any check failed (dsft cannot work until it is fixed)."""
        return all(check.verdict != "fail" for check in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [c.to_dict() for c in self.checks], "can": self.can, "cannot": self.cannot}


def _cuda_summary() -> tuple[int, bool]:
    """(number of CUDA GPUs, whether all of them support bf16); (0, False) without torch or CUDA."""
    try:
        import torch
    except ImportError:
        return 0, False
    if not torch.cuda.is_available():
        return 0, False
    count = torch.cuda.device_count()
    return count, all(torch.cuda.get_device_capability(i)[0] >= 8 for i in range(count))


def _capabilities(checks: list[Check], gpus: int, bf16: bool) -> tuple[list[str], list[str]]:
    verdicts = {c.name: c.verdict for c in checks}

    def usable(name: str) -> bool:
        return verdicts.get(name) == "ok"

    can: list[str] = []
    cannot: list[str] = []
    if "fail" in verdicts.values():
        cannot.append("train anything until the failed checks are fixed")
        return can, cannot
    if not usable("llama-cpp-python"):
        cannot.append("verified GGUF/Ollama export (llama-cpp-python does not load; --no-verify skips the check)")
    exports = "export (HF, GGUF, Ollama)" if usable("llama-cpp-python") else "export (HF; GGUF unverified)"
    if gpus == 0:
        cpu_bf16 = cpu_multiplies_bf16()
        can += ["LoRA and full fine-tuning of tiny presets and small models on CPU (fp32"
                + (", or bf16 with train.precision: bf16: this CPU has bf16 matrix instructions)" if cpu_bf16 else ")"),
                f"data preparation, template rendering, evaluation, {exports} and serving on CPU"]
        cannot += ["QLoRA (needs a CUDA GPU and bitsandbytes)", "flash-attention (CUDA only)",
                   "fp16 mixed precision (GPU only)" if cpu_bf16 else
                   "bf16/fp16 mixed precision (a GPU, or for bf16 a CPU with AVX512-BF16 or AMX)",
                   "multi-GPU training (DDP/FSDP/DeepSpeed)", "fine-tuning 7B+ models in reasonable time"]
        return can, cannot
    can.append(f"LoRA and full fine-tuning on {gpus} GPU(s) in {'bf16' if bf16 else 'fp16'}")
    (can if usable("bitsandbytes") else cannot).append("QLoRA (4-bit, bitsandbytes)")
    (can if usable("flash-attn") and bf16 else cannot).append("flash-attention 2")
    if gpus > 1:
        can.append("multi-GPU DDP/FSDP" + (" and DeepSpeed ZeRO" if usable("deepspeed") else ""))
    elif usable("deepspeed"):
        can.append("DeepSpeed ZeRO offload on one GPU")
    return can, cannot


def run_doctor(disk_paths: list[Path] | None = None) -> DoctorReport:
    """Run every check and summarise; never raises."""
    gpus, bf16 = _cuda_summary()
    checks = check_python() + check_torch() + check_libraries(has_cuda=gpus > 0)
    checks += check_disk(disk_paths if disk_paths is not None else default_disk_paths())
    can, cannot = _capabilities(checks, gpus, bf16)
    return DoctorReport(checks=checks, can=can, cannot=cannot)
