"""`dsft train` in one process or under torchrun, for the multi-process tests of every directory."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path


def train_in_processes(args: list[str], processes: int, cwd: Path, torchrun: bool = False) -> None:
    """``dsft train ARGS`` in one process, or under ``torchrun --nproc_per_node PROCESSES`` (CPU, gloo; one process
    too with ``torchrun``, as DeepSpeed needs)."""
    code, stdout, stderr = dsft_in_processes(["train", *args], processes, cwd, torchrun)
    assert code == 0, stdout[-3000:] + stderr[-6000:]


def dsft_in_processes(args: list[str], processes: int, cwd: Path, torchrun: bool = False) -> tuple[int, str, str]:
    """``dsft ARGS`` in one process, or under ``torchrun --nproc_per_node PROCESSES`` (CPU, gloo):
    ``(exit code, stdout, stderr)``, every process's output together."""
    return python_in_processes(["-m", "dsft", *args], processes, cwd, torchrun)


def python_in_processes(argv: list[str], processes: int, cwd: Path, torchrun: bool = False) -> tuple[int, str, str]:
    """``python ARGV`` (``-m MODULE ...`` or ``SCRIPT ...``) in one process, or under ``torchrun
    --nproc_per_node PROCESSES`` (CPU, gloo): ``(exit code, stdout, stderr)``, every process's output together."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    if processes == 1 and not torchrun:
        command = [sys.executable, *argv]
    else:
        launcher = shutil.which("torchrun") or f"{Path(sys.executable).parent}/torchrun"
        command = [launcher, "--standalone", f"--nproc_per_node={processes}", *argv]
    # Its own process group, so a timeout ends torchrun's ranks too instead of leaving them running.
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=cwd, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    return process.returncode, stdout, stderr


def write_plus_two_data(root: Path) -> Path:
    """Sixteen one-turn conversations ('What is i plus 2?') as ``root/data.jsonl``: the small data the
    multi-process probes train on."""
    data = root / "data.jsonl"
    data.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": f"What is {i} plus 2?"},
        {"role": "assistant", "content": f"{i} plus 2 is {i + 2}."},
    ]}) + "\n" for i in range(16)), encoding="utf-8")
    return data
