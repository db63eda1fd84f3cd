"""Where a run will happen, as the checks see it, and the settings that depend on it (precision, QLoRA).

Light to import (torch is imported only when a check must look at the device): ``dsft config show``
runs these checks.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dsft.config import DsftConfig
from dsft.errors import UnsupportedError

# train.report_to -> the package transformers' integration imports
TRACKER_PACKAGES = {"wandb": "wandb", "mlflow": "mlflow", "swanlab": "swanlab"}


# Present on any machine where torch.cuda can see a device: NVIDIA's kernel driver, AMD's (ROCm) device node.
GPU_DRIVER_PATHS = ("/proc/driver/nvidia", "/dev/nvidiactl", "/dev/kfd")


def _detect_cuda() -> bool:
    """Whether torch sees a CUDA (or ROCm) device. Without any GPU driver the answer is no, known without
    importing torch (over a second); with one, torch is asked."""
    if not any(os.path.exists(path) for path in GPU_DRIVER_PATHS):
        return False
    import torch  # heavy: imported only where a GPU driver exists

    return bool(torch.cuda.is_available())


# /proc/cpuinfo flags of the x86 instructions that multiply bf16 natively (AVX512-BF16; AMX's tiles).
BF16_MATRIX_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_multiplies_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU has bf16 matrix instructions (AVX512-BF16 or AMX), where bf16 GEMMs run natively
    (oneDNN's kernels); without them torch emulates bf16 and it is slower than fp32. Read from the kernel's
    CPU flags, without torch; False where they cannot be read (not Linux)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return any(flag in flags for flag in BF16_MATRIX_FLAGS)


# The most processes one job can have: torch.distributed numbers them with 32-bit ints (c10d's rank and world size,
# NCCL's nranks).
MAX_WORLD_SIZE = 2**31 - 1


def job_size_problem(nodes: int, gpus_per_node: int) -> str | None:
    """``--nodes`` x ``--gpus-per-node`` beyond :data:`MAX_WORLD_SIZE` (``dsft plan`` sized a job of 10**400
    processes until a float overflowed, with a traceback; ``dsft launch`` wrote its scripts).

    >>> print(job_size_problem(10**12, 8))
    --nodes 1000000000000 x --gpus-per-node 8 = 8,000,000,000,000 processes: torch.distributed numbers a job's processes with 32-bit integers, so at most 2,147,483,647: set --nodes to at most 268,435,455
    """
    processes = nodes * gpus_per_node
    if processes <= MAX_WORLD_SIZE:
        return None
    fix = (f"set --nodes to at most {MAX_WORLD_SIZE // gpus_per_node:,}" if gpus_per_node <= MAX_WORLD_SIZE
           else f"set --gpus-per-node to at most {MAX_WORLD_SIZE:,}")
    return (f"--nodes {nodes} x --gpus-per-node {gpus_per_node} = {processes:,} processes: torch.distributed numbers "
            f"a job's processes with 32-bit integers, so at most {MAX_WORLD_SIZE:,}: {fix}")


@dataclass
class Environment:
    """Where the run will happen. ``None`` means unknown, and the checks that need it are skipped.

    ``world_size``: training processes; ``cuda``: CUDA GPUs present (``None`` = look on first use);
    ``inspect_packages``: whether installed packages can be checked (not for a cluster a launch script
    targets).
    """

    world_size: int | None = None
    cuda: bool | None = None
    inspect_packages: bool = True

    @classmethod
    def this_machine(cls, world_size: int | None = None) -> "Environment":
        """This machine; ``world_size`` defaults to ``$WORLD_SIZE`` (set by launchers), else unknown."""
        if world_size is None and os.environ.get("WORLD_SIZE"):
            world_size = int(os.environ["WORLD_SIZE"])
        return cls(world_size=world_size)

    @classmethod
    def gpu_cluster(cls, world_size: int) -> "Environment":
        """The GPU machines a launch script will run on (their packages cannot be checked from here)."""
        return cls(world_size=world_size, cuda=True, inspect_packages=False)

    def has_cuda(self) -> bool:
        if self.cuda is None:
            self.cuda = _detect_cuda()
        return self.cuda

    def lacks(self, module: str) -> bool:
        """True only when ``module`` is known to be missing."""
        return self.inspect_packages and importlib.util.find_spec(module) is None


def resolve_precision(precision: str, env: Environment | None = None) -> str:
    """auto -> bf16 on CUDA GPUs that support it, else fp32. bf16/fp16 need CUDA."""
    cuda = (env or Environment()).has_cuda()
    if precision == "auto":
        if not cuda:
            return "fp32"
        import torch  # heavy: only on a CUDA machine, to ask about bf16

        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    problem = precision_problem(precision, cuda)
    if problem:
        raise UnsupportedError(problem)
    return precision


def precision_problem(precision: str, cuda: bool) -> str | None:
    """What the device lacks for ``train.precision`` (``dsft doctor`` says the same), or None.

    fp16 (loss scaling) is a GPU feature. bf16 runs on CUDA GPUs, and on CPUs with bf16 matrix instructions
    (the frozen base in bf16, autocast for the rest); elsewhere it is refused, not emulated slower than fp32.
    """
    if cuda or precision not in ("bf16", "fp16"):
        return None
    if precision == "fp16":
        return ("train.precision=fp16: fp16 mixed precision (loss scaling) needs a CUDA GPU; use auto (bf16 on GPUs that "
                "support it, fp32 here) or fp32 on this machine")
    if cpu_multiplies_bf16():
        return None
    return ("train.precision=bf16: needs a CUDA GPU or a CPU with bf16 matrix instructions (AVX512-BF16, AMX), "
            "and this machine has neither; use auto (fp32 here) or fp32")


def check_qlora(env: Environment | None = None) -> None:
    """``train.method=qlora`` needs a CUDA GPU and bitsandbytes."""
    env = env or Environment()
    missing = []
    if not env.has_cuda():
        missing.append("a CUDA GPU (none found)")
    if env.lacks("bitsandbytes"):
        missing.append("bitsandbytes (pip install bitsandbytes)")
    if missing:
        raise UnsupportedError(
            "train.method=qlora needs " + " and ".join(missing) + "; on this machine use train.method=lora or full"
        )


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def environment_problems(cfg: DsftConfig, cuda: bool | None = None,
                         installed: Callable[[str], bool] = _installed) -> list[str]:
    """What this machine lacks for the config's optimizer and trackers, one line per key (empty = fine).

    ``cuda`` / ``installed(package)`` default to this machine (the device is probed only when the optimizer
    needs one); tests pass their own.
    """
    problems = []
    if cfg.train.precision in ("bf16", "fp16") or cfg.train.optimizer == "adamw_8bit":
        cuda = _detect_cuda() if cuda is None else cuda
    problem = precision_problem(cfg.train.precision, bool(cuda))
    if problem:
        problems.append(problem)
    if cfg.train.optimizer == "adamw_8bit":
        missing = ([] if cuda else ["a CUDA GPU (bitsandbytes' 8-bit optimizer states live in GPU kernels)"]) + (
            [] if installed("bitsandbytes") else ["bitsandbytes (pip install bitsandbytes)"])
        if missing:
            problems.append("train.optimizer: adamw_8bit needs " + " and ".join(missing)
                            + "; use adamw_torch or adafactor on this machine")
    for name in cfg.train.report_to:
        package = TRACKER_PACKAGES.get(name)
        if package and not installed(package):
            problems.append(f"train.report_to: {name} is not installed (pip install {package}), or remove it "
                            "from train.report_to")
    return problems
