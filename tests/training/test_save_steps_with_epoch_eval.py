"""`train.save_steps` writes checkpoints with the default evaluation at every epoch end (`eval.steps: 0`) and
`eval.load_best` too. The best-checkpoint bookkeeping makes transformers save per epoch there, and save_steps
was silently not applied: a one-epoch run of hours wrote no checkpoint until its end, so a crash or a
preemption lost all of it (the shipped examples/tiny-cpu.yaml asks for a checkpoint every 10 steps)."""

from __future__ import annotations

import json
from pathlib import Path

from dsft.training.checkpointing import list_checkpoints
from dsft.training.run import run_training
from dsft.training.rundir import RunDir
from tiny_runs import make_cfg, write_data


def test_save_steps_apply_within_an_epoch_when_evaluating_per_epoch(tmp_path: Path) -> None:
    data = write_data(tmp_path / "qa.jsonl")
    cfg = make_cfg(data, "tiny-deepseek-v3", "eval.steps=0", "eval.load_best=true", "train.max_seq_len=64",
                   "train.max_steps=4", "train.save_steps=2", "train.save_total_limit=5")
    run = tmp_path / "run"
    result = run_training(cfg, run, progress=False)
    epoch = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["epoch"]
    assert result.global_step == 4 and epoch < 1  # the run ends inside its first epoch
    assert [p.name for p in list_checkpoints(RunDir(run).checkpoint_root)] == ["checkpoint-2", "checkpoint-4"]
