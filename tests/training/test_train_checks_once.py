"""`dsft train` checks its inputs once: the command before its other refusals, not run_training a second time; a
library caller of run_training, which no command checked for, is still checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsft.data import input_checks
from dsft.errors import DataError
from dsft.training import run as training_run
from dsft.training.run import run_training

from tiny_runs import make_cfg, write_data


def _count_input_checks(monkeypatch) -> list[int]:
    calls: list[int] = []
    check = input_checks.check_inputs

    def counted(*args, **kwargs):
        calls.append(1)
        return check(*args, **kwargs)

    monkeypatch.setattr(input_checks, "check_inputs", counted)  # the command imports it when it runs
    monkeypatch.setattr(training_run, "check_inputs", counted)  # run_training's own name for it
    return calls


def test_train_checks_its_inputs_once(run_cli, tmp_path: Path, tiny_model_dir, monkeypatch) -> None:
    tiny_model_dir("tiny-r1-distill-qwen")
    data = write_data(tmp_path / "train.jsonl", 8)
    config = tmp_path / "config.yaml"
    config.write_text("{}\n", encoding="utf-8")
    calls = _count_input_checks(monkeypatch)
    code, out, err = run_cli(["train", str(config), "--out", str(tmp_path / "run"), "--set", "train.max_steps=1",
                              "--set", "train.max_seq_len=128", "--set", "model.name_or_path=tiny-r1-distill-qwen",
                              "--set", f"data.train=[{data}]", "--set", "data.val_ratio=0"])
    assert code == 0, out + err
    assert (tmp_path / "run" / "final" / "adapter_model.safetensors").is_file()
    assert len(calls) == 1


def test_run_training_checks_the_inputs_of_a_library_caller(tmp_path: Path, monkeypatch) -> None:
    calls = _count_input_checks(monkeypatch)
    cfg = make_cfg(tmp_path / "absent.jsonl", "tiny-r1-distill-qwen")
    with pytest.raises(DataError, match="absent.jsonl"):
        run_training(cfg, tmp_path / "run")
    assert len(calls) == 1 and not (tmp_path / "run").exists()
