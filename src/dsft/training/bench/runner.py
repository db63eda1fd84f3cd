"""``dsft bench train``: the same data, model and number of optimizer steps through dsft, TRL (configured
for speed, and with its defaults) and the seeds' recipe, each in a fresh process, run one after another (never in parallel).

Definitions (the JSON repeats them under ``definitions``):

* **supervised tokens**: next-token targets under dsft's assistant-only mask (reasoning, answer, EOS),
  counted the same way for every system. A system that also trains on prompt or padding tokens gets
  no credit for them.
* **tokens** (``tokens_per_s``): real (non-padding) tokens fed to the model; ``padded_tokens_per_s``
  also counts padding positions.
* **MFU**: the time the useful matmul FLOPs (body weights on real tokens, lm_head on supervised tokens;
  see ``systems.useful_flops``) would take at the machine's measured matmul peak of the dtype each runs
  in, over the time they took. On CPU the body runs in fp32 (or bf16 under ``--precision bf16``, every
  system) and the lm_head in the body's dtype, or in bf16 for dsft under ``train.loss_dtype`` bf16: both peaks
  (2,048-square matmuls) are measured in the same run. On GPU everything is bf16 (an 8,192-square bf16 matmul).
* Timing covers every optimizer step after the first (warm-up).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from dsft.config.schema import TrainConfig
from dsft.errors import DsftError
from dsft.models.loading import load_tokenizer
from dsft.models.resolve import resolve_model
from dsft.onednn_caches import environment_without_bounds
from dsft.training.bench.held_out import HELD_OUT_CONVERSATIONS, HELD_OUT_SEED_OFFSET
from dsft.training.bench.settings import check_bench_settings, conversation_count
from dsft.training.bench.synthetic import make_examples
from dsft.training.bench.systems import bench_precision
from dsft.training.environment import cpu_multiplies_bf16

DEFINITIONS = {
    "supervised_tokens": "next-token targets under dsft's assistant-only mask, the same for every system",
    "tokens_per_s": "real (non-padding) input tokens per second",
    "padded_tokens_per_s": "input positions per second, padding included",
    "mfu": "(body FLOPs / measured matmul peak of the body's dtype + lm_head FLOPs / peak of the lm_head "
           "matmuls' dtype) / seconds; FLOPs = 4 or 6 x active body params x real tokens, 4 or 6 x lm_head "
           "params x supervised tokens; mfu_cpu: the same per second of process CPU time, against peaks "
           "measured per CPU-second (CPU)",
    "timing": "optimizer steps after the first (warm-up)",
    "losses": "the logged training loss of every optimizer step, the warm-up step first; each system packs "
              "and orders the conversations its own way, so the same step holds different conversations",
    "held_out_loss": f"mean loss on the supervised targets of {HELD_OUT_CONVERSATIONS} conversations none of the "
                     "systems trained on (drawn with another seed), measured the same way for every system after "
                     "its steps (one forward per conversation, fp32 lm_head and loss): equal values, equal learning",
    "peak_memory_bytes": "peak RSS of the process on CPU; torch.cuda.max_memory_allocated on GPU",
}


def measure_matmul_peak(threads: int, device: str, dtype: torch.dtype | None = None,
                        cpu_time: bool = False) -> float:
    """Best observed FLOP/s of a large square matmul: fp32 on CPU, bf16 on GPU, unless ``dtype`` says.

    ``cpu_time``: per second of process CPU time instead of wall clock (CPU only; what a shared machine's
    other jobs distort least, the counterpart of the systems' ``cpu_seconds``).
    """
    clock = time.process_time if cpu_time else time.perf_counter
    torch.set_num_threads(threads)
    n = 2048 if device == "cpu" else 8192
    dtype = dtype or (torch.float32 if device == "cpu" else torch.bfloat16)
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    best = 0.0
    for _ in range(6):
        if device != "cpu":
            torch.cuda.synchronize()
        start = clock()
        a @ b
        if device != "cpu":
            torch.cuda.synchronize()
        best = max(best, 2 * n**3 / max(clock() - start, 1e-9))
    return best


def machine_info(threads: int, device: str) -> dict[str, Any]:
    cpu = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu, "cpu_count": os.cpu_count(), "threads": threads, "device": device,
        "gpu": torch.cuda.get_device_name(0) if device != "cpu" else None,
        "load_average_at_start": list(os.getloadavg()), "torch": torch.__version__, "python": platform.python_version(),
    }


def _run_worker(spec: dict[str, Any], work: Path) -> dict[str, Any]:
    spec_path, result_path = work / f"{spec['system']}.spec.json", work / f"{spec['system']}.result.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    command = [sys.executable, "-m", "dsft.training.bench.worker", str(spec_path), str(result_path)]
    # A peer runs as it runs by itself: without the oneDNN cache bounds dsft sets for its own processes.
    environment = None if spec["system"] == "dsft" else environment_without_bounds()
    done = subprocess.run(command, capture_output=True, text=True, env=environment)
    if done.returncode != 0 or not result_path.exists():
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        why = " (killed: out of memory?)" if done.returncode == -9 else ""
        raise DsftError(f"bench system {spec['system']!r} failed (exit {done.returncode}{why}):\n{tail}")
    return json.loads(result_path.read_text(encoding="utf-8"))


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def run_bench(
    model: str = "tiny-deepseek-v3", steps: int = 8, seq_len: int = 2048, compare: tuple[str, ...] = ("trl-expert", "trl", "seed"),
    examples_per_step: int = 8, method: str = "lora", seed: int = 0, threads: int | None = None,
    lr: float = 2e-4, length_scale: float = 1.0, loss_chunk_size: int | str | None = None, progress: Any = None,
    dsft_options: tuple[str, ...] = (), lengths: str = "short", loss_dtype: str = "auto",
    profile_dir: str | None = None, micro_batch_size: int = 1, precision: str = "auto",
) -> dict[str, Any]:
    """Run dsft and each system in ``compare`` in turn; return the report (see module docstring)."""
    check_bench_settings(steps=steps, seq_len=seq_len, examples_per_step=examples_per_step,
                         micro_batch_size=micro_batch_size, compare=compare, dsft_options=dsft_options,
                         lengths=lengths, loss_dtype=loss_dtype, precision=precision)
    threads = threads or torch.get_num_threads()
    if profile_dir is not None:
        try:
            Path(profile_dir).mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise DsftError(f"bench --profile {profile_dir}: cannot create that directory ({error.strerror})") from None
    if "liger" in dsft_options and not torch.cuda.is_available():
        raise DsftError("bench --dsft-option liger: Liger's kernels are Triton kernels for CUDA; this machine has no GPU")
    loss_chunk_size = loss_chunk_size or TrainConfig().loss_chunk_size
    device = "cuda" if torch.cuda.is_available() else "cpu"
    precision = bench_precision(precision, device)
    if precision == "bf16" and device == "cpu" and not cpu_multiplies_bf16():
        raise DsftError("bench --precision bf16: this CPU has no bf16 matrix instructions (AVX512-BF16 or AMX); "
                        "use fp32")
    model_dir = resolve_model(model)
    tokenizer = load_tokenizer(model_dir)
    count = conversation_count(steps, examples_per_step, micro_batch_size)
    examples = make_examples(tokenizer, count, seed, length_scale, mix=lengths)
    held_out = [e for e in make_examples(tokenizer, HELD_OUT_CONVERSATIONS * 4, seed + HELD_OUT_SEED_OFFSET,
                                         length_scale, mix=lengths)
                if len(e.input_ids) <= seq_len][:HELD_OUT_CONVERSATIONS]
    # Peak FLOP/s by dtype name, as the systems report the dtypes their body and lm_head run in.
    peaks = {name: measure_matmul_peak(threads, device, dtype)
             for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    # CPU: the same peaks per second of process CPU time, for the MFU per CPU-second (``mfu_cpu``).
    cpu_peaks = ({name: measure_matmul_peak(threads, device, dtype, cpu_time=True)
                  for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))} if device == "cpu" else {})
    report: dict[str, Any] = {
        "machine": machine_info(threads, device) | {"matmul_peak_flops": peaks["fp32" if device == "cpu" else "bf16"],
                                                    "matmul_peak_flops_by_dtype": peaks,
                                                    "matmul_peak_flops_per_cpu_s_by_dtype": cpu_peaks},
        "settings": {"model": model, "model_dir": str(model_dir), "steps": steps, "seq_len": seq_len,
                     "examples_per_step": examples_per_step, "method": method, "seed": seed, "lr": lr,
                     "examples": count, "lengths": lengths, "length_scale": length_scale,
                     "loss_chunk_size": loss_chunk_size, "loss_dtype": loss_dtype,
                     "dsft_options": sorted(dsft_options), "profile_dir": profile_dir,
                     "micro_batch_size": micro_batch_size, "precision": precision},
        "definitions": DEFINITIONS, "systems": {},
    }
    with tempfile.TemporaryDirectory(prefix="dsft-bench-") as tmp:
        work = Path(tmp)
        data = work / "examples.jsonl"
        data.write_text("".join(json.dumps({"messages": e.messages, "input_ids": e.input_ids,
                                            "labels": e.labels}) + "\n" for e in examples), encoding="utf-8")
        held_out_data = work / "held_out.jsonl"
        held_out_data.write_text("".join(json.dumps({"input_ids": e.input_ids, "labels": e.labels}) + "\n"
                                         for e in held_out), encoding="utf-8")
        for system in ("dsft", *compare):
            if progress:
                progress(f"running {system} ...")
            spec = {"system": system, "model_dir": str(model_dir), "data": str(data),
                    "held_out": str(held_out_data) if held_out else None, "steps": steps,
                    "seq_len": seq_len, "examples_per_step": examples_per_step, "method": method, "seed": seed,
                    "lr": lr, "threads": threads, "work_dir": str(work / system),
                    "loss_chunk_size": loss_chunk_size, "loss_dtype": loss_dtype,
                    "dsft_options": sorted(dsft_options), "profile_dir": profile_dir,
                    "micro_batch_size": micro_batch_size, "precision": precision}
            load_before = list(os.getloadavg())
            try:
                result = _run_worker(spec, work)
            except DsftError as failure:
                if system == "dsft":
                    raise
                # A peer that fails (e.g. killed for memory) is a result too; the others' figures stay.
                report["systems"][system] = {"failed": str(failure)}
                continue
            result["load_average_before_after"] = [load_before, list(os.getloadavg())]
            result["mfu"] = mfu(result, peaks)
            if cpu_peaks:
                result["mfu_cpu"] = mfu(result, cpu_peaks, seconds_key="cpu_seconds")
            report["systems"][system] = result
    return add_ratios(report)


def mfu(result: dict[str, Any], peaks: dict[str, float], seconds_key: str = "seconds") -> float:
    """Seconds the useful FLOPs take at the peak of the dtype each part ran in, over the seconds they took
    (``seconds_key="cpu_seconds"`` with peaks per CPU-second: the MFU per CPU-second)."""
    ideal = (result["body_flops"] / peaks[result["body_dtype"]]
             + result["lm_head_flops"] / peaks[result["lm_head_dtype"]])
    return ideal / result[seconds_key] if result[seconds_key] > 0 else float("nan")


def add_ratios(report: dict[str, Any]) -> dict[str, Any]:
    """``ratios.vs_X``: dsft / X supervised tokens per second; ``memory_ratios.vs_X``: dsft / X peak memory."""
    systems = report["systems"]
    ours = systems["dsft"]
    report["ratios"], report["memory_ratios"] = {}, {}
    for name, other in systems.items():
        if name == "dsft" or "failed" in other:
            continue
        report["ratios"][f"vs_{name}"] = _ratio(ours["supervised_tokens_per_s"], other["supervised_tokens_per_s"])
        report["memory_ratios"][f"vs_{name}"] = _ratio(ours["peak_memory_bytes"], other["peak_memory_bytes"])
        if "supervised_tokens_per_cpu_s" in ours:
            report.setdefault("cpu_time_ratios", {})[f"vs_{name}"] = _ratio(
                ours["supervised_tokens_per_cpu_s"], other["supervised_tokens_per_cpu_s"])
    return report
