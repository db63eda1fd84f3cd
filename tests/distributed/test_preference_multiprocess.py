"""Preference objectives under a launcher: DPO as a full fine-tune on two CPU processes under DeepSpeed ZeRO-3."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest


def _write_pairs(path: Path, n: int = 4) -> Path:
    rows = [{"messages": [{"role": "user", "content": f"What is {i} + {i}?"}],
             "chosen": {"role": "assistant", "content": f"It is {2 * i}."},
             "rejected": {"role": "assistant", "content": f"It is {2 * i + 1}."}} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.slow
def test_dpo_full_fine_tune_under_zero3_trains_from_its_first_step(tmp_path: Path, tiny_model_dir, train_run) -> None:
    """A full fine-tune's DPO reference is a frozen copy TRL loads once the training arguments exist, so under
    ZeRO-3's ``zero.Init``, whose config check read the world size from DeepSpeed's communication layer, left
    uninitialised on CPU: every such run stopped before its first step (``train_batch_size is not equal to
    micro_batch_per_gpu * gradient_acc_step * world_size 2 != 1 * 1 * 1``). And with the default
    ``train.warmup_ratio`` (0.03) TRL's config rounded a short run's warmup up to one step at lr 0, so step 2
    logged step 1's loss, ln 2 (policy still equal to the reference)."""
    tiny_model_dir("tiny-deepseek-v3")  # materialised once, shared through DSFT_CACHE
    data = _write_pairs(tmp_path / "pairs.jsonl")
    config = tmp_path / "dpo.yaml"
    config.write_text(
        "model:\n  name_or_path: tiny-deepseek-v3\n"
        f"data:\n  train: [{data}]\n  val_ratio: 0.0\n"
        "train:\n  objective: dpo\n  method: full\n  max_steps: 2\n  micro_batch_size: 1\n  max_seq_len: 64\n"
        "  lr: 1.0e-3\n  save_steps: 100\n  logging_steps: 1\n  distributed: deepspeed\n  zero_stage: 3\n"
        "eval:\n  load_best: false\n",
        encoding="utf-8",
    )
    train_run([str(config), "--out", str(tmp_path / "run")], 2, tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = {r["step"]: r["loss"] for r in rows if "loss" in r}
    assert sorted(losses) == [1, 2]
    assert losses[1] == pytest.approx(math.log(2), abs=1e-6)  # the policy starts as its reference
    assert abs(losses[2] - math.log(2)) > 1e-5  # step 1 trained: the policy left its reference
    assert json.loads((tmp_path / "run" / "deepspeed.json").read_text())["zero_optimization"]["stage"] == 3
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file()
