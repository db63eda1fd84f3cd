"""What `dsft train` prints at the end: a run stopped by Ctrl-C / SIGTERM says so and how to continue (it
printed 'done 11 steps', as if the 400 asked for had run)."""

from __future__ import annotations

import signal
from pathlib import Path

from dsft.cli.train import summary_lines
from dsft.training.run import RunResult


def _result(stopped: int | None) -> RunResult:
    return RunResult(run_dir=Path("runs/001"), final_dir=Path("runs/001/final"), global_step=11, train_loss=1.0,
                     first_eval_loss=2.0, last_eval_loss=1.5, best_eval_loss=1.5, elapsed_s=10.1,
                     stopped_by_signal=stopped)


def test_a_stopped_run_says_stopped_and_how_to_continue() -> None:
    first = summary_lines(_result(signal.SIGINT))[0]
    assert "stopped[/] (Ctrl-C) after 11 steps" in first and "done" not in first
    assert "run the same command with --resume auto" in first
    assert "(SIGTERM) after 11 steps" in summary_lines(_result(signal.SIGTERM))[0]


def test_a_finished_run_says_done() -> None:
    lines = summary_lines(_result(None))
    assert lines[0].startswith("[bold green]done[/] 11 steps") and "validation loss 2.0000 -> 1.5000" in lines[1]
