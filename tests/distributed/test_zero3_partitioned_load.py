"""Under DeepSpeed ZeRO-3 every rank builds only its partition of the model (LoRA and full fine-tunes).

Two CPU processes (gloo, DeepSpeed's CPU accelerator) run ``dsft train``'s run on the tiny DeepseekV3 and record,
when the Trainer is given the model (after the build, the LoRA wrap included, before DeepSpeed starts training),
what each rank holds (tests/zero3_partition_probe.py). Each must hold about half of the model's elements, every
base weight partitioned and not gathered. Before, dsft built the model before the Trainer's arguments registered
the ZeRO-3 config with transformers, so every rank loaded the whole model and DeepSpeed partitioned it only when
training started. That the partitioned build trains as one process does is
test_multiprocess_training's ZeRO-3 comparisons (LoRA and full).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from torchrun_helpers import python_in_processes, write_plus_two_data

PROBE = Path(__file__).resolve().parent.parent / "zero3_partition_probe.py"


def _write_inputs(root: Path, method: str) -> Path:
    data = write_plus_two_data(root)
    config = root / "zero3.yaml"
    config.write_text(
        "model:\n  name_or_path: tiny-deepseek-v3\n"
        f"data:\n  train: [{data}]\n  val_ratio: 0.0\n"
        f"train:\n  method: {method}\n  max_steps: 2\n  micro_batch_size: 2\n  max_seq_len: 64\n"
        "  distributed: deepspeed\n  zero_stage: 3\n  save_steps: 100\n"
        "eval:\n  load_best: false\n",
        encoding="utf-8",
    )
    return config


@pytest.mark.slow
@pytest.mark.parametrize("method", ["lora", "full"])
def test_zero3_ranks_build_only_their_partition(tmp_path: Path, tiny_model_dir, method: str) -> None:
    tiny_model_dir("tiny-deepseek-v3")  # materialised once, shared through DSFT_CACHE
    config = _write_inputs(tmp_path, method)
    code, stdout, stderr = python_in_processes([str(PROBE), str(config), str(tmp_path / "out")], 2, tmp_path)
    assert code == 0, stdout[-3000:] + stderr[-6000:]
    for rank in (0, 1):
        held = json.loads((tmp_path / "out" / f"partition-rank-{rank}.json").read_text(encoding="utf-8"))
        # The base weights are partitioned (LoRA's adapters, built after the load, are whole until DeepSpeed
        # starts): each rank holds half of them, padding aside.
        assert held["partitioned"] == held["not_available"] > 0, held
        assert held["held"] < 0.55 * held["elements"], held
        if method == "full":
            assert held["partitioned"] == held["parameters"], held
        else:
            assert held["frozen_partitioned"] == held["frozen"] == held["partitioned"], held
