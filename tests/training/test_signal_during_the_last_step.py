"""A stop signal that lands during a run's very last optimizer step: the run still completes every step, so it is
finished (`dsft train` printed 'stopped ... --resume auto' and exited 130 over a run.json saying `finished`, and
--resume auto then had nothing to do); a sweep or the demo still goes no further than the run in flight."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest
from transformers import TrainerCallback

import dsft.eval.callbacks
import dsft.eval.compare
import dsft.training.run
from dsft.sweep import runner
from dsft.training.rundir import RunDir

from tiny_sweep_config import write_config


class SignalDuringTheLastStep(TrainerCallback):
    """Sends this process ``signum`` as the run's last optimizer step begins (a Ctrl-C landing mid-step)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum

    def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if state.global_step == state.max_steps - 1:
            signal.raise_signal(self.signum)


@pytest.fixture(autouse=True)
def terminal_signals():
    """Python's handlers of a terminal's foreground process (a test run started in the background by a
    non-interactive shell inherits SIGINT ignored, and training leaves an ignored signal ignored)."""
    before = {signum: signal.signal(signum, handler)
              for signum, handler in ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, signal.SIG_DFL))}
    yield
    for signum, handler in before.items():
        signal.signal(signum, handler)


def _data(tmp_path: Path) -> Path:
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": f"Reservoir R{i} was completed in which year?"},
        {"role": "assistant", "content": f"R{i} was completed in {1950 + i}."}]}) + "\n" for i in range(8)))
    return data


def test_dsft_train_with_ctrl_c_during_the_last_step_is_done_and_exits_0(tmp_path: Path, tiny_model_dir, run_cli,
                                                                          monkeypatch) -> None:
    model = tiny_model_dir("tiny-deepseek-llm")
    monkeypatch.setattr(dsft.eval.callbacks, "training_eval_callbacks",
                        lambda cfg, out: [SignalDuringTheLastStep(signal.SIGINT)])
    run = tmp_path / "run"
    code, out, err = run_cli([
        "train", "/dev/null", "--out", str(run), "--set", f"model.name_or_path={model}",
        "--set", f"data.train=[{_data(tmp_path)}]", "--set", "data.val_ratio=0", "--set", "eval.steps=0",
        "--set", "train.max_steps=2", "--set", "train.save_steps=100", "--set", "train.micro_batch_size=2",
        "--set", "train.max_seq_len=128", "--set", "train.report_to=[]", "--set", "lora.r=4"])
    info = RunDir(run).info
    assert info["status"] == "finished" and info["global_step"] == 2
    assert code == 0, out + err
    assert "done 2 steps" in out and "stopped" not in out and "--resume auto" not in out, out
    assert (run / "final").is_dir()


def _signal_in_trial_zero(monkeypatch, signum: int) -> None:
    train = runner.run_training

    def run_training(cfg: Any, run_dir: Path, **kw: Any) -> Any:
        if Path(run_dir).name == "trial-000":
            kw["extra_callbacks"] = [*kw.get("extra_callbacks", []), SignalDuringTheLastStep(signum)]
        return train(cfg, run_dir, **kw)

    monkeypatch.setattr(runner, "run_training", run_training)


def test_a_sweep_starts_no_next_trial_after_a_signal_in_the_last_step_of_a_trial(tmp_path: Path, tiny_model_dir,
                                                                                 run_cli, monkeypatch) -> None:
    tiny_model_dir("tiny-deepseek-llm")
    _signal_in_trial_zero(monkeypatch, signal.SIGTERM)
    out = tmp_path / "sweep"
    code, stdout, stderr = run_cli(["sweep", str(write_config(tmp_path)), "--grid", "train.lr=1e-4,3e-4",
                                    "--out", str(out)])
    assert code == 143 and stderr.strip().splitlines()[-1] == "stopped (SIGTERM)", stdout + stderr
    trials = json.loads((out / "sweep.json").read_text(encoding="utf-8"))["trials"]
    assert [t["status"] for t in trials] == ["finished"], trials  # it ran every step; the sweep went no further
    assert RunDir(out / "trial-000").info["status"] == "finished"
    assert not (out / "trial-001").exists()


def test_a_sweep_whose_last_trial_a_signal_let_finish_is_complete(tmp_path: Path, tiny_model_dir, run_cli,
                                                                  monkeypatch) -> None:
    tiny_model_dir("tiny-deepseek-llm")
    _signal_in_trial_zero(monkeypatch, signal.SIGTERM)
    out = tmp_path / "sweep"
    code, stdout, stderr = run_cli(["sweep", str(write_config(tmp_path)), "--grid", "train.lr=1e-4", "--out", str(out)])
    assert code == 0, stdout + stderr
    report = json.loads((out / "sweep.json").read_text(encoding="utf-8"))
    assert [t["status"] for t in report["trials"]] == ["finished"] and report["best"] == 0
    assert "best: trial-000" in stdout


@pytest.mark.parametrize("compare", [True, False], ids=["compare", "no-compare"])
def test_the_demo_compares_nothing_after_a_signal_in_its_last_training_step(tmp_path: Path, run_cli, monkeypatch,
                                                                            compare: bool) -> None:
    train = dsft.training.run.run_training
    monkeypatch.setattr(dsft.training.run, "run_training", lambda cfg, run_dir, **kw: train(
        cfg, run_dir, **kw, extra_callbacks=[SignalDuringTheLastStep(signal.SIGINT)]))
    compared: list[object] = []
    monkeypatch.setattr(dsft.eval.compare, "compare_models", lambda **kw: compared.append(kw))
    out = tmp_path / "demo"
    code, stdout, stderr = run_cli([
        "demo", "--out", str(out), "--set", "train.max_steps=2", "--set", "train.max_seq_len=128",
        "--set", "eval.steps=2", "--set", "train.save_steps=2", *([] if compare else ["--no-compare"])])
    assert RunDir(out / "run").info["status"] == "finished"
    assert not compared
    if compare:  # the comparison would have started after the signal: the demo ends there, as stopped
        assert code == 130 and stderr.strip().splitlines()[-1] == "stopped (Ctrl-C)", stdout + stderr
    else:  # nothing was left to do
        assert code == 0 and "trained 2 steps" in stdout, stdout + stderr
