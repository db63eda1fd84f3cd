"""``data.mix`` in a training run: recorded in run.json, checked before anything loads, held by resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from dsft.config import load_config
from dsft.errors import DataError, DsftError
from dsft.training.run import run_training

MODEL = "tiny-r1-distill-qwen"


def write_rows(path: Path, n: int, question: str, answer: str) -> Path:
    rows = [{"messages": [{"role": "user", "content": question.format(i=i)},
                          {"role": "assistant", "content": answer.format(i=i)}]} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def make_cfg(task: Path, general: Path, ratio: float = 0.25, *extra: str) -> Any:
    return load_config(None, [
        f"model.name_or_path={MODEL}", f"data.train=[{task}]", f"data.mix=[{{path: {general}, ratio: {ratio}}}]",
        "data.val_ratio=0", "train.max_steps=2", "train.save_steps=1", "train.micro_batch_size=2",
        "train.max_seq_len=128", "train.warmup_ratio=0", "train.logging_steps=1", "train.report_to=[]",
        "eval.steps=0", "eval.load_best=false", "lora.r=4", *extra,
    ])


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir) -> Path:
    tiny_model_dir(MODEL)
    base = tmp_path_factory.mktemp("mixed")
    task = write_rows(base / "task.jsonl", 12, "Reservoir R{i} was completed in which year?", "In {i}1950.")
    general = write_rows(base / "general.jsonl", 30, "What is {i} plus one?", "{i} plus one is one more than {i}.")
    run_training(make_cfg(task, general), base / "run", progress=False)
    return base / "run"


def _resumable_copy(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    shutil.rmtree(copy / "final")  # as if killed during the final save: --resume auto continues it
    info = json.loads((copy / "run.json").read_text())
    (copy / "run.json").write_text(json.dumps({**info, "status": "running"}))
    return copy


def test_run_json_and_the_data_report_record_the_mix(mixed_run: Path) -> None:
    info = json.loads((mixed_run / "run.json").read_text())
    general = str(mixed_run.parent / "general.jsonl")
    assert info["data_mix"] == [{"path": general, "ratio": 0.25, "available": 30, "drawn": 4, "repeats": 0}]
    assert general in info["data_files"] and info["examples"]["train"] == 16  # 12 task / 0.75


def test_a_changed_ratio_is_refused_on_resume_and_a_moved_file_accepted(mixed_run: Path, tmp_path: Path) -> None:
    run = _resumable_copy(mixed_run, tmp_path)
    task, general = mixed_run.parent / "task.jsonl", mixed_run.parent / "general.jsonl"
    with pytest.raises(DsftError, match=r"data\.mix ratios: \[0\.25\] -> \[0\.2\]"):
        run_training(make_cfg(task, general, 0.2), run, resume="auto", progress=False)
    moved = shutil.copy(general, tmp_path / "moved-general.jsonl")
    assert run_training(make_cfg(task, Path(moved)), run, resume="auto", progress=False).global_step == 2


def test_a_mix_file_edited_in_place_is_refused_naming_it(mixed_run: Path, tmp_path: Path) -> None:
    run = _resumable_copy(mixed_run, tmp_path)
    general = write_rows(tmp_path / "general.jsonl", 30, "What is {i} plus two?", "{i} plus two.")
    with pytest.raises(DsftError, match="data differs") as refused:
        run_training(make_cfg(mixed_run.parent / "task.jsonl", general), run, resume="auto", progress=False)
    assert f"{general}: not an input when the run started" in str(refused.value)


def test_a_missing_mix_file_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    task = write_rows(tmp_path / "task.jsonl", 4, "Q{i}?", "A{i}.")
    with pytest.raises(DataError, match=r"data\.mix\.0\.path: .*nope\.jsonl: no such file"):
        run_training(make_cfg(task, tmp_path / "nope.jsonl"), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
