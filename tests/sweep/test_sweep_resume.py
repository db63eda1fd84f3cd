"""``dsft sweep --resume``: a stopped sweep continues where it stopped, as if it had never stopped.

The trials that ended are kept (not trained again), the stopped one continues from its checkpoint, and the rest
run; a random sweep's sampler draws the trials it would have drawn. Each sweep is compared with the same sweep run
through without a stop: the same trials, parameters and validation values.
"""

from __future__ import annotations

import dataclasses
import json
import math
import signal
from pathlib import Path
from typing import Any

import pytest

from dsft.sweep import runner
from dsft.sweep.report import Sweep, Trial
from dsft.sweep.request import SweepRequest, check_request, trial_name
from dsft.sweep.space import build_space

from tiny_sweep_config import write_config


def stop_trial(monkeypatch: pytest.MonkeyPatch, number: int, after_step: int) -> None:
    """Trial ``number`` of the next sweep stops after ``after_step`` as a SIGTERM stops it: the step finished and
    saved, the run recorded as stopped, the sweep ended after it (exit status 143)."""
    train = runner.run_training

    def stopping(cfg: Any, run_dir: Path, **kw: Any) -> Any:
        if Path(run_dir).name != trial_name(number):
            return train(cfg, run_dir, **kw)
        result = train(cfg, run_dir, should_stop=lambda step: step >= after_step, **kw)
        return dataclasses.replace(result, stopped_by_signal=signal.SIGTERM, signal_received=signal.SIGTERM)

    monkeypatch.setattr(runner, "run_training", stopping)


def trials(out: Path) -> list[dict[str, Any]]:
    return json.loads((out / "sweep.json").read_text(encoding="utf-8"))["trials"]


def stopped_and_resumed(tmp_path: Path, run_cli, monkeypatch: pytest.MonkeyPatch, args: list[str]) -> Path:
    """The sweep ``args`` run through into ``whole``, and into ``sweep`` stopped in trial 1 after step 1, then
    resumed; returns ``sweep``."""
    assert run_cli([*args, "--out", str(tmp_path / "whole")])[0] == 0
    out = tmp_path / "sweep"
    with monkeypatch.context() as patch:
        stop_trial(patch, 1, after_step=1)
        code, stdout, stderr = run_cli([*args, "--out", str(out)])
    assert code == 143, stdout + stderr
    assert [t["status"] for t in trials(out)] == ["finished", "stopped"]
    kept = (out / "trial-000" / "run.json").read_bytes()
    code, stdout, stderr = run_cli([*args, "--out", str(out), "--resume"])
    assert code == 0, stdout + stderr
    assert (out / "trial-000" / "run.json").read_bytes() == kept, "a trial that ended is not trained again"
    resumed = json.loads((out / "trial-001" / "run.json").read_text(encoding="utf-8"))
    assert resumed["status"] == "finished" and resumed["resumed_from"].endswith("checkpoint-1")
    return out


def assert_same_sweep(out: Path, whole: Path) -> None:
    done, expected = trials(out), trials(whole)
    assert [(t["number"], t["status"], t["params"]) for t in done] == \
        [(t["number"], t["status"], t["params"]) for t in expected]
    for a, b in zip(done, expected):
        assert math.isclose(a["value"], b["value"], rel_tol=1e-6), (a, b)
    best = [json.loads((sweep / "sweep.json").read_text())["best"] for sweep in (out, whole)]
    assert best[0] == best[1]


@pytest.mark.slow
def test_a_stopped_grid_sweep_resumes_its_stopped_trial_and_runs_the_rest(tmp_path: Path, tiny_model_dir, run_cli,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A stopped sweep could not be continued: the same command refused the directory ('already holds a sweep'),
    and the workaround was to resume the trial by hand and --collect, never running the trials after it."""
    tiny_model_dir("tiny-deepseek-llm")
    args = ["sweep", str(write_config(tmp_path)), "--grid", "train.lr=1e-4,3e-2,1e-3", "--set", "train.save_steps=1"]
    out = stopped_and_resumed(tmp_path, run_cli, monkeypatch, args)
    assert len(trials(out)) == 3
    assert_same_sweep(out, tmp_path / "whole")


@pytest.mark.slow
def test_a_stopped_random_sweep_draws_on_as_if_it_had_not_stopped(tmp_path: Path, tiny_model_dir, run_cli,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Optuna's study lives in the process: a resumed random/TPE sweep replays the ended trials (asked, reported and
    told again) so the seeded sampler draws the stopped trial and the ones after it as the whole sweep drew them."""
    pytest.importorskip("optuna")
    tiny_model_dir("tiny-deepseek-llm")
    args = ["sweep", str(write_config(tmp_path)), "--sampler", "random", "--trials", "3", "--seed", "7",
            "--range", "train.lr=log:1e-4:1e-1", "--grid", "lora.r=4,8", "--set", "train.save_steps=1"]
    out = stopped_and_resumed(tmp_path, run_cli, monkeypatch, args)
    assert_same_sweep(out, tmp_path / "whole")
    # A larger budget continues the same sweep with more trials.
    code, stdout, stderr = run_cli([*args[:5], "4", *args[6:], "--out", str(out), "--resume"])
    assert code == 0 and [t["number"] for t in trials(out)] == [0, 1, 2, 3], stdout + stderr


def _recorded_sweep(tmp_path: Path, *grid: str) -> SweepRequest:
    """A sweep directory whose sweep.json records the grid sweep ``grid`` (one trial ended) and a request for it."""
    request = SweepRequest(write_config(tmp_path), [], None, build_space(list(grid), []), tmp_path / "s")
    base = check_request(request)
    request.out.mkdir()
    sweep = Sweep("eval_loss", False, "grid", [Trial(0, {"train.lr": 1e-4}, str(request.out / "trial-000"),
                                                     "finished", 1.0)], request=request.record(base))
    (request.out / "sweep.json").write_text(json.dumps(sweep.to_json()))
    return request


def test_resume_refuses_a_sweep_that_asked_for_something_else(tmp_path: Path) -> None:
    request = _recorded_sweep(tmp_path, "train.lr=1e-4,3e-2")
    check_request(dataclasses.replace(request, resume=True))  # the same command: continued
    with pytest.raises(Exception, match="already holds a sweep; .* or --resume it if it stopped"):
        check_request(request)
    other = dataclasses.replace(request, space=build_space(["train.lr=1e-4,3e-3"], []), resume=True,
                                overrides=["train.max_steps=3"])
    with pytest.raises(Exception) as refused:
        check_request(other)
    said = str(refused.value)
    assert "holds a sweep asked for something else" in said, said
    assert "config train.max_steps: 2 -> 3" in said and "--grid: {'train.lr': [0.0001, 0.03]}" in said, said


def test_resume_refuses_a_directory_without_a_sweep_and_launched_sweeps(tmp_path: Path) -> None:
    request = SweepRequest(write_config(tmp_path), [], None, build_space(["train.lr=1e-4"], []), tmp_path / "s",
                           resume=True)
    with pytest.raises(Exception, match="--resume: --out .* holds no sweep"):
        check_request(request)
    with pytest.raises(Exception, match="launched trials are continued one by one"):
        check_request(dataclasses.replace(request, launch="script"))
    assert not request.out.exists()
