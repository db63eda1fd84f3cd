"""Every process of a launched job resolves --resume itself, before they meet. On a run directory that each node
keeps on its own disk, a node other than the main process's holds no checkpoint (only the main process renames
one into place): it would start from step 0 beside a resumed rank. Once the processes meet, the job stops on
every rank, naming each rank's choice, instead."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import json, os, sys
from pathlib import Path
import torch.distributed as dist
from dsft.errors import DsftError
from dsft.training.checkpointing import check_same_checkpoint

dist.init_process_group("gloo")
rank = dist.get_rank()
choices = json.loads(sys.argv[1])
try:
    check_same_checkpoint(Path(choices[rank]) if choices[rank] else None)
    outcome = {"refused": False}
except DsftError as exc:
    outcome = {"refused": True, "message": str(exc), "problems": exc.problems, "job_wide": exc.job_wide}
Path(sys.argv[2], f"rank{rank}.json").write_text(json.dumps(outcome))
dist.destroy_process_group()
"""


def _check_in_two_processes(tmp_path: Path, choices: list[str | None]) -> list[dict]:
    script = tmp_path / "check.py"
    script.write_text(SCRIPT, encoding="utf-8")
    torchrun = shutil.which("torchrun") or f"{Path(sys.executable).parent}/torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", str(script), json.dumps(choices),
                           str(tmp_path)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]


@pytest.mark.slow
def test_ranks_that_would_resume_from_different_checkpoints_stop_naming_each(tmp_path: Path) -> None:
    outcomes = _check_in_two_processes(tmp_path, ["/runs/a/checkpoints/checkpoint-10", None])
    assert all(o["refused"] and o["job_wide"] for o in outcomes), outcomes
    assert outcomes[0]["problems"] == ["rank 0: /runs/a/checkpoints/checkpoint-10", "rank 1: none (step 0)"]
    assert "filesystem every node shares" in outcomes[0]["message"]


@pytest.mark.slow
def test_ranks_that_chose_the_same_checkpoint_go_on(tmp_path: Path) -> None:
    same = "/runs/a/checkpoints/checkpoint-10"
    assert _check_in_two_processes(tmp_path, [same, same]) == [{"refused": False}] * 2
