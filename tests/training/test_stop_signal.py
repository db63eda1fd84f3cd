"""SIGTERM and Ctrl-C ask training to stop after the current step with a checkpoint; several ranks agree on
the step (SIGTERM end to end through the dashboard: tests/ui/test_ui_launch.py)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp
from transformers import TrainerControl

from dsft.training.rundir import RunDir
from dsft.training.stop import StopOnSignal


@pytest.fixture
def terminal_signals():
    """Python's handlers of a terminal's foreground process (a test run started in the background by a
    non-interactive shell inherits SIGINT ignored)."""
    before = {signum: signal.signal(signum, handler)
              for signum, handler in ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, signal.SIG_DFL))}
    yield
    for signum, handler in before.items():
        signal.signal(signum, handler)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_sets_save_and_stop_at_the_next_step_end_and_restores_the_handler(signum: int, terminal_signals) -> None:
    before = signal.getsignal(signum)
    stopper = StopOnSignal()
    stopper.install()
    try:
        control = stopper.on_step_end(None, None, TrainerControl())
        assert not control.should_save and not control.should_training_stop  # nothing asked yet
        signal.raise_signal(signum)  # the process survives: the handler only records it
        assert stopper.requested
        control = stopper.on_step_end(None, None, TrainerControl())
        assert control.should_save and control.should_training_stop
    finally:
        stopper.restore()
    assert signal.getsignal(signum) == before


def test_ctrl_c_twice_interrupts_at_once(terminal_signals) -> None:
    stopper = StopOnSignal()
    stopper.install()
    try:
        signal.raise_signal(signal.SIGINT)  # to this thread, handled before the next statement
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    finally:
        stopper.restore()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_the_process_ignores_stays_ignored(signum: int) -> None:
    """Started ignoring it (nohup, `dsft train ... &` in a script): training does not start answering it."""
    before = signal.signal(signum, signal.SIG_IGN)
    try:
        stopper = StopOnSignal()
        stopper.install()
        assert signal.getsignal(signum) == signal.SIG_IGN
        signal.raise_signal(signum)
        assert not stopper.requested
        stopper.restore()
        assert signal.getsignal(signum) == signal.SIG_IGN
    finally:
        signal.signal(signum, before)


def _rank(rank: int, port: int, seen: dict) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        stopper = StopOnSignal()
        stopper.requested = rank == 0  # only rank 0 got the signal before this step end
        seen[rank] = stopper.on_step_end(None, None, TrainerControl()).should_training_stop
    finally:
        dist.destroy_process_group()


def test_ranks_stop_after_the_same_step_when_one_was_asked() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with mp.Manager() as manager:
        seen = manager.dict()
        mp.spawn(_rank, args=(port, seen), nprocs=2, join=True)
        assert dict(seen) == {0: True, 1: True}


@pytest.mark.slow
def test_ctrl_c_during_dsft_train_ends_stopped_with_a_checkpoint(tmp_path: Path, tiny_model_dir) -> None:
    model = tiny_model_dir("tiny-deepseek-v3")
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": f"Reservoir R{i} was completed in which year?"},
        {"role": "assistant", "content": f"R{i} was completed in {1950 + i}."}]}) + "\n" for i in range(16)))
    run = tmp_path / "run"
    command = [sys.executable, "-m", "dsft", "train", "/dev/null", "--out", str(run),
               "--set", f"model.name_or_path={model}", "--set", f"data.train=[{data}]", "--set", "data.val_ratio=0",
               "--set", "train.max_steps=400", "--set", "train.save_steps=1000", "--set", "train.micro_batch_size=2",
               "--set", "train.max_seq_len=128", "--set", "train.logging_steps=1", "--set", "eval.steps=0",
               "--set", "train.report_to=[]"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    # As a terminal's foreground command (a test run started in the background would pass SIGINT ignored on).
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # noqa: PLW1509
    try:
        metrics = run / "metrics.jsonl"
        deadline = time.monotonic() + 300
        while not (metrics.is_file() and '"loss"' in metrics.read_text()):  # the first step is logged
            assert process.poll() is None, process.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "no step logged in 300 s"
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        stderr = process.communicate(timeout=300)[1]
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr[-3000:]  # 128 + SIGINT: not finished, `&& dsft export` stops there
    assert "Ctrl-C: stopping after this step" in stderr and "Traceback" not in stderr
    info = RunDir(run).info
    assert info["status"] == "stopped" and 0 < info["global_step"] < 400
    assert [c.name for c in RunDir(run).checkpoints()] == [f"checkpoint-{info['global_step']}"]
    assert (run / "final").is_dir()
