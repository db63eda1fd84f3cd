"""A run that fails before it trains is no run: a model that cannot be fetched leaves --out as it was (nothing is
created), and after a later setup failure (data that leaves nothing to train on) the same command runs again in
the same --out, in `dsft train`, `dsft demo` and `dsft sweep` alike. A user's files are never removed, and a
run that trained is never replaced."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

UNFETCHABLE = "model.name_or_path=no-such-org/no-such-model"  # this offline machine has no hub
NOTHING_TO_TRAIN = "train.max_seq_len=16"  # every shipped reservoir record is longer


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the hub is unreachable at once, not after retries


def _config(tmp: Path, records: list[dict]) -> Path:
    data = tmp / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    config = tmp / "c.yaml"
    config.write_text(f"model: {{name_or_path: tiny-r1-distill-qwen}}\ndata: {{train: [{data}], val_ratio: 0.5}}\n"
                      "train: {max_steps: 1}\n")
    return config


QA = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]} for i in range(4)]
NO_ANSWERS = [{"messages": [{"role": "user", "content": f"q{i}"}]} for i in range(4)]


def test_train_with_a_model_that_cannot_be_fetched_writes_nothing(tmp_path: Path, run_cli) -> None:
    config = _config(tmp_path, QA)
    for out in (tmp_path / "new", tmp_path / "empty"):
        if out.name == "empty":
            out.mkdir()
        for _ in range(2):  # and the retry meets the same error, not the first attempt's leftovers
            code, _, err = run_cli(["train", str(config), "--out", str(out), "--set", UNFETCHABLE])
            assert code == 2 and err.startswith("error: model 'no-such-org/no-such-model'"), err
        assert not out.exists() if out.name == "new" else list(out.iterdir()) == []


def test_demo_with_a_model_that_cannot_be_fetched_writes_nothing(tmp_path: Path, run_cli) -> None:
    out = tmp_path / "demo"
    for _ in range(2):
        code, _, err = run_cli(["demo", "--out", str(out), "--set", UNFETCHABLE])
        assert code == 2 and "error: model 'no-such-org/no-such-model'" in err, err
    assert not out.exists()
    mine = tmp_path / "mine"  # a directory of the user's, taken with --overwrite: only the demo's files go
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes\n")
    code, _, err = run_cli(["demo", "--out", str(mine), "--overwrite", "--set", UNFETCHABLE])
    assert code == 2, err
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_demo_runs_again_after_its_data_left_nothing_to_train_on(tmp_path: Path, run_cli) -> None:
    out = tmp_path / "demo"
    for _ in range(2):  # the second is not refused as "already holds a demo run"
        code, _, err = run_cli(["demo", "--out", str(out), "--set", NOTHING_TO_TRAIN])
        assert code == 2 and "error: no training examples left after preparation" in err, err
    assert (out / "run" / "data" / "data_report.json").is_file()  # what the error points at stays
    (out / "run" / "run.json").write_text("{}")  # a run that trained is never replaced
    code, _, err = run_cli(["demo", "--out", str(out), "--set", NOTHING_TO_TRAIN])
    assert code == 2 and "already holds a demo run" in err, err


def _sweep(config: Path, out: Path, *sets: str) -> list[str]:
    return ["sweep", str(config), "--out", str(out), "--grid", "train.lr=1e-3,2e-3",
            *(arg for s in sets for arg in ("--set", s))]


def test_sweep_with_a_model_that_cannot_be_fetched_writes_nothing(tmp_path: Path, run_cli) -> None:
    out = tmp_path / "sweep"
    for _ in range(2):
        code, _, err = run_cli(_sweep(_config(tmp_path, QA), out, UNFETCHABLE))
        assert code == 2 and "error: model 'no-such-org/no-such-model'" in err, err
    assert not out.exists()


def test_sweep_runs_again_after_its_data_left_nothing_to_train_on(tmp_path: Path, run_cli) -> None:
    out = tmp_path / "sweep"
    config = _config(tmp_path, NO_ANSWERS)
    for _ in range(2):  # the second is not refused as "exists, is not empty and holds no sweep"
        code, _, err = run_cli(_sweep(config, out))
        assert code == 2 and "error: no records left to train on" in err, err
    assert (out / "data" / "rejects.jsonl").is_file()  # what the error points at stays
    (out / "data" / "mine.jsonl").write_text("{}\n")  # a file no preparation writes: not a sweep's leftovers
    code, _, err = run_cli(_sweep(config, out))
    assert code == 2 and "exists, is not empty and holds no sweep" in err, err
