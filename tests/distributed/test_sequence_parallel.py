"""DeepSpeed-Ulysses sequence parallelism: `dsft train` with `train.sequence_parallel: 2` on two CPU
processes (gloo) equals a one-process run without it: a Qwen2 model on rows of one example, and a DeepSeek-V3
model (multi-head latent attention, whose values are narrower than its queries and keys) on packed rows
(dsft's segment attention, which finds the examples from the gathered position_ids).

Every prompt is longer than half a row, so each row's tokens are split over the two ranks, the supervised
tokens sit mostly in the second half, and the loss there is right only if attention reaches the keys on
the other rank (DeepSpeed's all-to-all) and the loss is normalised by the supervised tokens of the whole
global batch across both shards. Same global batch both ways (micro-batch 1, two accumulation steps; with
SP both ranks work on the same rows, so the data-parallel degree is 1). The six logged losses, gradient
norms and token counts must agree.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

STEPS = 6
TOLERANCE = 1e-4
WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()


def _write_data(path: Path, n: int = 40) -> Path:
    rows = []
    for i in range(n):
        prompt = " ".join(WORDS[(i + j) % len(WORDS)] for j in range(30)) + f" What is {i} plus {i % 7}?"
        rows.append({"messages": [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": f"{i} plus {i % 7} is {i + i % 7}.", "reasoning_content": f"Add {i % 7} to {i}."},
        ]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _write_config(path: Path, data: Path, sequence_parallel: bool, case: dict) -> Path:
    sp = (f"  distributed: deepspeed\n  zero_stage: {case.get('zero', 1)}\n  sequence_parallel: 2\n"
          if sequence_parallel else "")
    path.write_text(
        f"model:\n  name_or_path: {case['model']}\n  attn_implementation: {case['attn']}\n"
        f"data:\n  train: [{data}]\n  val_ratio: 0.0\n"
        f"train:\n  method: lora\n  max_steps: {STEPS}\n  micro_batch_size: 1\n  grad_accum: 2\n"
        f"  max_seq_len: {case['max_seq_len']}\n  packing: {case['packing']}\n  lr: 0.005\n  warmup_ratio: 0.0\n"
        "  lr_scheduler: constant\n"
        f"  save_steps: 100\n  logging_steps: 1\n  seed: 3\n{sp}"
        "eval:\n  load_best: false\n",
        encoding="utf-8",
    )
    return path


def _logged(run: Path) -> dict[int, dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r for r in rows if "loss" in r}


CASES = {
    "qwen2-rows": {"model": "tiny-r1-distill-qwen", "attn": "sdpa", "packing": "false", "max_seq_len": 96},
    "mla-packed": {"model": "tiny-deepseek-v3", "attn": "auto", "packing": "true", "max_seq_len": 192},
    # Guide 003's ZeRO-3: its reduce-scatter divided every gradient by the whole world, not world / sp, and the
    # gradient norms came out half the one-process run's (the losses agreed: Adam barely sees a scale)
    "mla-packed-zero3": {"model": "tiny-deepseek-v3", "attn": "auto", "packing": "true", "max_seq_len": 192, "zero": 3},
}


@pytest.mark.slow
@pytest.mark.parametrize("name", CASES)
def test_two_rank_sequence_parallel_equals_one_process(name: str, tmp_path: Path, tiny_model_dir, train_run) -> None:
    pytest.importorskip("deepspeed")
    case = CASES[name]
    tiny_model_dir(case["model"])  # materialised once, shared through DSFT_CACHE

    data = _write_data(tmp_path / "data.jsonl")
    train_run([str(_write_config(tmp_path / "one.yaml", data, False, case)), "--out", str(tmp_path / "one")], 1,
              tmp_path)
    train_run([str(_write_config(tmp_path / "sp.yaml", data, True, case)), "--out", str(tmp_path / "sp")], 2, tmp_path)
    one, sp = _logged(tmp_path / "one"), _logged(tmp_path / "sp")
    assert sorted(one) == sorted(sp) == list(range(1, STEPS + 1))
    for step in one:
        assert abs(one[step]["loss"] - sp[step]["loss"]) <= TOLERANCE, (step, one[step]["loss"], sp[step]["loss"])
        assert abs(one[step]["grad_norm"] - sp[step]["grad_norm"]) <= TOLERANCE * 10, step
        assert one[step]["supervised_tokens"] == sp[step]["supervised_tokens"]
        assert one[step]["tokens"] == sp[step]["tokens"]  # real tokens, summed over both shards of each row
    written = json.loads((tmp_path / "sp" / "deepspeed.json").read_text())
    assert written["train_batch_size"] == "auto" and written["gradient_accumulation_steps"] == 2
    # Rows really are longer than half of max_seq_len: two rows per step, each with tokens on both ranks. Packed,
    # every example is shorter than half a row, so a row that long holds several examples.
    half = case["max_seq_len"] // 2
    previous = 0
    for step in sorted(one):
        assert one[step]["tokens"] - previous > 2 * half
        previous = one[step]["tokens"]


@pytest.mark.slow
def test_a_sequence_parallel_run_resumes_mid_epoch(tmp_path: Path, tiny_model_dir, train_run) -> None:
    """A two-rank SP run resumed from its step-3 checkpoint trains steps 4-6 as the uninterrupted run did.
    One micro-batch per step, so the 3 trained micro-batches are one whole batch of the Ulysses adapter's own
    loader (2 rows, one per rank) plus one of its micro-batches. Resuming used to stop in accelerate's
    ``skip_first_batches`` ('UlyssesSPDataLoaderAdapter' object has no attribute 'dataset')."""
    pytest.importorskip("deepspeed")
    case = CASES["qwen2-rows"]
    tiny_model_dir(case["model"])
    data = _write_data(tmp_path / "data.jsonl")
    config = str(_write_config(tmp_path / "sp.yaml", data, True, case))
    settings = ["--set", "train.grad_accum=1", "--set", "train.save_steps=3"]
    train_run([config, "--out", str(tmp_path / "whole"), *settings], 2, tmp_path)
    checkpoint = tmp_path / "whole" / "checkpoints" / "checkpoint-3"
    train_run([config, "--out", str(tmp_path / "resumed"), "--resume", str(checkpoint), *settings], 2, tmp_path)
    whole, resumed = _logged(tmp_path / "whole"), _logged(tmp_path / "resumed")
    assert sorted(resumed) == list(range(1, STEPS + 1))
    for step in range(4, STEPS + 1):
        assert abs(whole[step]["loss"] - resumed[step]["loss"]) <= TOLERANCE, (step, whole[step], resumed[step])
        assert whole[step]["tokens"] == resumed[step]["tokens"]
    assert len({whole[step]["loss"] for step in range(4, STEPS + 1)}) == 3  # the steps saw different rows
