"""What `dsft train` prints at the end: a run stopped by Ctrl-C / SIGTERM says so and how to continue (it
printed 'done 11 steps', as if the 400 asked for had run), and exits 128 + the signal (it exited 0, so
`dsft train ... && dsft export ...` exported a half-trained model and a scheduler read the run as finished)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

import dsft.training.run
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


def _train(tmp_path: Path, run_cli, monkeypatch, result) -> tuple[int, str, str]:  # noqa: ANN001
    """``dsft train`` on one conversation, with run_training returning ``result``: the training itself is
    tests/training/test_stop_signal.py's; here, what the command makes of its result."""
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "Q?"},
                                             {"role": "assistant", "content": "A."}]}) + "\n", encoding="utf-8")
    monkeypatch.setattr(dsft.training.run, "run_training", lambda *a, **kw: result)
    return run_cli(["train", "/dev/null", "--out", str(tmp_path / "run"), "--set",
                    "model.name_or_path=tiny-deepseek-v3", "--set", f"data.train=[{data}]"])


@pytest.mark.parametrize(("signum", "status", "name"), [(signal.SIGINT, 130, "Ctrl-C"), (signal.SIGTERM, 143, "SIGTERM")])
def test_a_stopped_run_exits_128_plus_the_signal_after_its_summary(tmp_path: Path, run_cli, monkeypatch,
                                                                   signum: int, status: int, name: str) -> None:
    code, out, err = _train(tmp_path, run_cli, monkeypatch, _result(signum))
    assert code == status, err
    assert f"stopped ({name}) after 11 steps" in out and "--resume auto" in out
    assert "Traceback" not in out + err and "error" not in err


def test_a_finished_run_exits_0(tmp_path: Path, run_cli, monkeypatch) -> None:
    code, out, err = _train(tmp_path, run_cli, monkeypatch, _result(None))
    assert code == 0, err
    assert "done 11 steps" in out
