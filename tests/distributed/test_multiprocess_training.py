"""`dsft train` under `torchrun --nproc_per_node 2` on CPU (gloo) equals a one-process run; so do runs
started with `accelerate launch` and the `deepspeed` launcher.

Same global batch both ways: one process with micro-batch 2 and 2 accumulation steps, two processes
with micro-batch 2 each and no accumulation. The loss is normalised by the supervised tokens of the
whole global batch (both accumulation steps and both ranks), so the ten logged losses agree to float
rounding (1e-4). A checkpoint the two-process run writes at step 5 is then resumed by one process, whose
steps 6-10 must reproduce the one-process run's.

The same comparison runs with DeepSpeed ZeRO-2 (here through the deepspeed launcher; under torchrun in
test_resume_world_size.py, whose two-process ZeRO-2 run serves its resume tests too) and ZeRO-3 (DeepSpeed's
CPU accelerator, gloo); under
ZeRO-3 the loss runs inside one call of the lm_head module so DeepSpeed gathers its partitioned weight (a full
fine-tune too, whose lm_head trains: its gradient must be accumulated once per backward). FSDP: accelerate 1.15 engages its FSDP plugin only for GPU-class
process groups (a CPU run silently trains with DDP), so dsft refuses fsdp on CPU and the FSDP
equivalence test is GPU-only.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

STEPS = 10
TOLERANCE = 1e-4


def _write_data(path: Path, n: int = 120) -> Path:
    rows = []
    for i in range(n):
        rows.append({"messages": [
            {"role": "user", "content": f"What is {i} plus {i % 7}?"},
            {"role": "assistant", "content": f"{i} plus {i % 7} is {i + i % 7}.",
             "reasoning_content": f"Add {i % 7} to {i}."},
        ]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _write_config(path: Path, data: Path, grad_accum: int, distributed: str = "ddp", method: str = "lora") -> Path:
    path.write_text(
        "model:\n  name_or_path: tiny-deepseek-v3\n"
        f"data:\n  train: [{data}]\n  val_ratio: 0.0\n"
        f"train:\n  method: {method}\n  max_steps: {STEPS}\n  micro_batch_size: 2\n  grad_accum: {grad_accum}\n"
        "  max_seq_len: 96\n  lr: 0.005\n  warmup_ratio: 0.0\n  lr_scheduler: constant\n  save_steps: 5\n"
        f"  logging_steps: 1\n  seed: 3\n  distributed: {distributed}\n"
        # fp32 lm_head: these runs are compared at 1e-4, and bf16 matmuls (the CPU default where the CPU has bf16
        # instructions) round differently as ZeRO-3 shards and gathers the weights (measured: up to 1.1e-4).
        "  loss_dtype: fp32\n"
        "eval:\n  load_best: false\n",
        encoding="utf-8",
    )
    return path


def _losses(run: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r and "step" in r}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir, train_run) -> dict[str, Path]:
    tiny_model_dir("tiny-deepseek-v3")  # materialised once, shared through DSFT_CACHE
    root = tmp_path_factory.mktemp("multiprocess")
    data = _write_data(root / "data.jsonl")
    one = _write_config(root / "one.yaml", data, grad_accum=2)
    two = _write_config(root / "two.yaml", data, grad_accum=1)
    train_run([str(one), "--out", str(root / "one")], 1, root)
    train_run([str(two), "--out", str(root / "two")], 2, root)
    checkpoint = root / "two" / "checkpoints" / "checkpoint-5"
    train_run([str(one), "--out", str(root / "resumed"), "--resume", str(checkpoint)], 1, root)
    return {"one": root / "one", "two": root / "two", "resumed": root / "resumed"}


@pytest.mark.slow
def test_two_process_ddp_loss_curve_equals_one_process(runs: dict[str, Path]) -> None:
    one, two = _losses(runs["one"]), _losses(runs["two"])
    assert sorted(one) == sorted(two) == list(range(1, STEPS + 1))
    for step in one:
        assert abs(one[step] - two[step]) <= TOLERANCE, (step, one[step], two[step])
    assert one[STEPS] < one[1]  # it trained


@pytest.mark.slow
def test_two_process_checkpoint_resumes_in_one_process(runs: dict[str, Path]) -> None:
    one, resumed = _losses(runs["one"]), _losses(runs["resumed"])
    # Steps 1-5 are the checkpoint's own history (its trainer state), 6-10 what the one process trained.
    assert sorted(resumed) == list(range(1, STEPS + 1))
    for step in resumed:
        assert abs(one[step] - resumed[step]) <= TOLERANCE, (step, one[step], resumed[step])


@pytest.mark.slow
def test_deepspeed_zero3_two_process_trains(runs: dict[str, Path], tmp_path: Path, train_run) -> None:
    data = runs["one"].parent / "data.jsonl"
    zero3 = _write_config(tmp_path / "zero3.yaml", data, grad_accum=1, distributed="deepspeed\n  zero_stage: 3")
    train_run([str(zero3), "--out", str(tmp_path / "zero3")], 2, tmp_path)
    one, three = _losses(runs["one"]), _losses(tmp_path / "zero3")
    assert all(abs(one[step] - three[step]) <= TOLERANCE for step in one)


@pytest.mark.slow
def test_deepspeed_zero3_full_fine_tune_two_process_equals_one_process(runs: dict[str, Path], tmp_path: Path,
                                                                        train_run) -> None:
    """Guide 003's setting: every weight trains under ZeRO-3, the lm_head and the MoE experts included. The loss
    used to accumulate the lm_head gradient once per chunk, and DeepSpeed stopped the first step
    (``assert len(set(p.ds_id for p in params_in_bucket)) == len(params_in_bucket)``)."""
    data = runs["one"].parent / "data.jsonl"
    one = _write_config(tmp_path / "one.yaml", data, grad_accum=2, method="full")
    zero3 = _write_config(tmp_path / "zero3.yaml", data, grad_accum=1, distributed="deepspeed\n  zero_stage: 3",
                          method="full")
    train_run([str(one), "--out", str(tmp_path / "one")], 1, tmp_path)
    train_run([str(zero3), "--out", str(tmp_path / "zero3")], 2, tmp_path)
    single, three = _losses(tmp_path / "one"), _losses(tmp_path / "zero3")
    assert sorted(three) == list(range(1, STEPS + 1))
    for step in single:
        assert abs(single[step] - three[step]) <= TOLERANCE, (step, single[step], three[step])
    assert single[STEPS] < single[1]  # it trained


def _launcher_command(launcher: str, args: list[str]) -> list[str]:
    """Two CPU processes through each launcher's own CLI, as a user would type it."""
    bin_dir = Path(sys.executable).parent
    if launcher == "accelerate":
        return [shutil.which("accelerate") or str(bin_dir / "accelerate"), "launch", "--multi_gpu",
                "--num_processes", "2", "--num_machines", "1", "--main_process_port", "29561",
                "-m", "dsft", "train", *args]
    return [shutil.which("deepspeed") or str(bin_dir / "deepspeed"), "--num_gpus", "2", "--master_port", "29562",
            "--no_local_rank", "--module", "dsft", "train", *args, "--set", "train.distributed=deepspeed"]


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["accelerate", "deepspeed"])
def test_train_runs_unchanged_under_accelerate_and_deepspeed_launchers(
    runs: dict[str, Path], tmp_path: Path, launcher: str
) -> None:
    """`accelerate launch` (DDP) and the `deepspeed` launcher (ZeRO-2) give the one-process losses too."""
    data = runs["one"].parent / "data.jsonl"
    config = _write_config(tmp_path / "two.yaml", data, grad_accum=1, distributed="auto\n  zero_stage: 2")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "DS_ACCELERATOR": "cpu"}
    command = _launcher_command(launcher, [str(config), "--out", str(tmp_path / "run")])
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    one, launched = _losses(runs["one"]), _losses(tmp_path / "run")
    assert sorted(launched) == list(range(1, STEPS + 1))
    assert all(abs(one[step] - launched[step]) <= TOLERANCE for step in one), (one, launched)
    assert (tmp_path / "run" / "deepspeed.json").is_file() == (launcher == "deepspeed")


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="accelerate runs FSDP on GPUs only; needs 2 CUDA GPUs")
def test_fsdp_two_process_equals_one_process(runs: dict[str, Path], tmp_path: Path, train_run) -> None:  # pragma: no cover
    data = runs["one"].parent / "data.jsonl"
    fsdp = _write_config(tmp_path / "fsdp.yaml", data, grad_accum=1, distributed="fsdp")
    train_run([str(fsdp), "--out", str(tmp_path / "fsdp")], 2, tmp_path)
    one, sharded = _losses(runs["one"]), _losses(tmp_path / "fsdp")
    assert all(abs(one[step] - sharded[step]) <= TOLERANCE for step in one)
