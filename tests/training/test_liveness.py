"""A run whose training process ended without recording it reads as interrupted, and a live run's
directory cannot be trained into by a second process."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from dsft.config import dump_config, load_config
from dsft.errors import DsftError
from dsft.training.liveness import another_live_process, process_alive, process_record
from dsft.training.rundir import INTERRUPTED, RunDir


def ended_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def live_child() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def write_running(run: Path, process: dict) -> None:
    run.mkdir(parents=True, exist_ok=True)
    (run / "run.json").write_text(json.dumps({"status": "running", "process": process}))


def test_this_process_is_alive_and_an_ended_one_is_not() -> None:
    assert process_alive(process_record()) is True
    assert process_alive({**process_record(), "pid": ended_pid()}) is False


def test_a_reused_pid_is_not_the_recorded_process() -> None:
    record = process_record()
    assert process_alive({**record, "start_ticks": record["start_ticks"] - 1}) is False


def test_another_host_cannot_be_told() -> None:
    assert process_alive({**process_record(), "host": socket.gethostname() + "-elsewhere"}) is None
    assert process_alive(None) is None


def test_status_reads_interrupted_once_the_process_has_ended(tmp_path: Path) -> None:
    write_running(tmp_path / "a", {**process_record(), "pid": ended_pid()})
    assert RunDir(tmp_path / "a").status == INTERRUPTED
    write_running(tmp_path / "b", process_record())
    assert RunDir(tmp_path / "b").status == "running"
    write_running(tmp_path / "c", {**process_record(), "host": "elsewhere"})
    assert RunDir(tmp_path / "c").status == "running"


def test_a_second_trainer_is_refused_while_the_first_runs(tmp_path: Path) -> None:
    cfg = load_config(None, ["model.name_or_path=tiny-deepseek-v3", f"data.train=[{tmp_path / 'd.jsonl'}]"])
    run = tmp_path / "run"
    child = live_child()
    try:
        write_running(run, {**process_record(), "pid": child.pid, "start_ticks": None})
        (run / "config.yaml").write_text(dump_config(cfg))
        second = load_config(None, ["model.name_or_path=tiny-deepseek-v3", f"data.train=[{tmp_path / 'd.jsonl'}]",
                                    "train.lr=1e-5"])
        with pytest.raises(DsftError, match=f"being trained right now by process {child.pid}"):
            RunDir(run).prepare(second, resuming=True)
        assert (run / "config.yaml").read_text() == dump_config(cfg)  # nothing touched
        assert sorted(p.name for p in run.iterdir()) == ["config.yaml", "run.json"]
    finally:
        child.kill()
        child.wait()
    RunDir(run).prepare(second, resuming=True)  # ended: the run may be resumed, with the new lr
    assert (run / "config.yaml").read_text() == dump_config(second)


def test_ranks_of_one_launch_do_not_refuse_each_other(monkeypatch: pytest.MonkeyPatch) -> None:
    child = live_child()
    try:
        for key, value in {"WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}.items():
            monkeypatch.setenv(key, value)
        sibling = {**process_record(), "pid": child.pid, "start_ticks": None}
        assert not another_live_process(sibling)
        monkeypatch.setenv("MASTER_PORT", "29501")
        assert another_live_process(sibling)
    finally:
        child.kill()
        child.wait()
