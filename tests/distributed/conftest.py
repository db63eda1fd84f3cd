"""Shared by the multi-process tests: run `dsft train` in one process or under torchrun."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

TrainFn = Callable[[list[str], int, Path], None]


def train_in_processes(args: list[str], processes: int, cwd: Path) -> None:
    """``dsft train ARGS`` in one process, or under ``torchrun --nproc_per_node PROCESSES`` (CPU, gloo)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    if processes == 1:
        command = [sys.executable, "-m", "dsft", "train", *args]
    else:
        torchrun = shutil.which("torchrun") or f"{Path(sys.executable).parent}/torchrun"
        command = [torchrun, "--standalone", f"--nproc_per_node={processes}", "-m", "dsft", "train", *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=cwd)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]


@pytest.fixture(scope="session")
def train_run() -> TrainFn:
    """``train_run(args, processes, cwd)``: see :func:`train_in_processes`."""
    return train_in_processes
