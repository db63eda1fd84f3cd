"""Under DeepSpeed the NaN guard stops a run before the step with a non-finite loss changes any weight.

accelerate steps the DeepSpeed engine inside the backward of a step's last micro-batch, before the Trainer reads the
gradient norm, where the guard used to read the step's losses. DeepSpeed 0.19 skips a step whose gradients overflow
only where it checks for that (ZeRO-3, ZeRO-1/2 in bf16 or fp16): under ZeRO-0 in fp32 the NaN step was applied
and the run still said "the run stopped before that step changed any weight". Two CPU processes (gloo) run
``dsft train``'s run with a loss made NaN on rank 1 in the first of step 2's two micro-batches
(tests/nan_step_probe.py); both ranks must stop with the guard's message and hold the weights of before step 2.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchrun_helpers import python_in_processes, write_plus_two_data

PROBE = Path(__file__).resolve().parent.parent / "nan_step_probe.py"


def _write_inputs(root: Path) -> Path:
    data = write_plus_two_data(root)
    config = root / "zero0.yaml"
    config.write_text(
        "model:\n  name_or_path: tiny-r1-distill-qwen\n"
        f"data:\n  train: [{data}]\n  val_ratio: 0.0\n"
        "train:\n  max_steps: 3\n  micro_batch_size: 1\n  grad_accum: 2\n  max_seq_len: 64\n  lr: 0.01\n"
        "  precision: fp32\n  distributed: deepspeed\n  zero_stage: 0\n  save_steps: 100\n"
        "eval:\n  steps: 0\n  load_best: false\n",
        encoding="utf-8",
    )
    return config


@pytest.mark.slow
def test_a_nan_loss_under_deepspeed_zero0_fp32_stops_before_the_step_changes_a_weight(tmp_path: Path,
                                                                                     tiny_model_dir) -> None:
    tiny_model_dir("tiny-r1-distill-qwen")  # materialised once, shared through DSFT_CACHE
    config = _write_inputs(tmp_path)
    code, stdout, stderr = python_in_processes([str(PROBE), str(config), str(tmp_path / "out")], 2, tmp_path)
    assert code == 0, stdout[-3000:] + stderr[-6000:]
    message = ("stopped: training loss became nan on rank 1 at optimizer step 2; the run stopped before that step "
               "changed any weight")
    assert stdout.count(message) == 2, stdout[-3000:] + stderr[-6000:]
    for rank in (0, 1):
        before = torch.load(tmp_path / "out" / f"weights-rank-{rank}-before.pt")
        stopped = torch.load(tmp_path / "out" / f"weights-rank-{rank}-stopped.pt")
        assert before and before.keys() == stopped.keys()
        changed = [name for name in before if not torch.equal(before[name], stopped[name])]
        assert not changed, (rank, changed[:3])
