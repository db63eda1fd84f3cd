"""A run directory moved to another place (or machine) still evaluates, exports and serves.

The run is trained for real (so run.json is what the trainer writes), then its project folder (run +
local base model) is copied elsewhere and the original deleted: nothing may still point at the old path.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from jsonl_files import write_reservoir_chats
from live_server import run_live

from dsft.config import load_config
from dsft.errors import DsftError
from dsft.training.rundir import RunDir

pytestmark = pytest.mark.slow  # one real training run (about 30 s on a shared CPU) feeds every test here

PRESET = "tiny-r1-distill-qwen"
QUESTION = [{"role": "user", "content": "Which reservoir is R1?"}]


@pytest.fixture(scope="module")
def moved_run(tiny_model_dir, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(run, data)``: a LoRA run trained on a local base in ``old/``, copied to ``new/``, ``old/`` deleted."""
    from dsft.training.run import run_training

    root = tmp_path_factory.mktemp("moved")
    old = root / "old"
    shutil.copytree(tiny_model_dir(PRESET), old / "base")
    data = write_reservoir_chats(root / "data.jsonl")
    cfg = load_config(None, [f"model.name_or_path={old / 'base'}", f"data.train=[{data}]", "data.val_ratio=0",
                             "train.max_steps=2", "train.save_steps=2", "train.micro_batch_size=2",
                             "train.max_seq_len=64", "train.lr=1e-2", "lora.r=4"])
    run_training(cfg, old / "run", progress=False)
    shutil.copytree(old, root / "new")
    shutil.rmtree(old)
    return root / "new" / "run", data


def test_moved_run_finds_its_base_relative_to_itself(moved_run) -> None:
    run_path, _ = moved_run
    run = RunDir(run_path)
    assert run.status == "finished" and run.method == "lora"
    assert not Path(run.info["base_model"]).exists()  # the recorded absolute path is gone
    assert run.base_model() == (run_path.parent / "base").resolve()
    assert run.final == run_path / "final" and [p.name for p in run.checkpoints()] == ["checkpoint-2"]
    assert run.config.train.max_steps == 2


def test_moved_run_evaluates(moved_run, tmp_path) -> None:
    from dsft.eval.evaluate import evaluate_model

    run_path, data = moved_run
    metrics = evaluate_model(run_path, data, tmp_path / "eval", max_new_tokens=4, limit=2, progress=False)
    assert metrics["count"] == 2 and metrics["evaluated"]["adapter"] is True


def test_moved_run_exports_hf_verified(moved_run, tmp_path) -> None:
    from dsft.export.api import export

    run_path, _ = moved_run
    result = export(run_path, "hf", tmp_path / "hf", echo=lambda line: None)
    assert result.comparison is not None  # verified: export raises above the tolerance
    assert (tmp_path / "hf" / "config.json").is_file()


def test_moved_run_serves(moved_run) -> None:
    from dsft.serve.server import build_engine
    from dsft.serve.settings import ServeSettings

    run_path, _ = moved_run
    settings = ServeSettings(served_model_name="moved")
    with run_live(build_engine(str(run_path), [], settings), settings) as server:
        answer = server.client().chat.completions.create(model="moved", messages=QUESTION, max_tokens=4,
                                                         temperature=0)
    assert answer.usage.completion_tokens > 0


def test_base_model_not_found_names_the_flag_and_the_flag_works(moved_run, tmp_path, tiny_model_dir,
                                                                run_cli) -> None:
    run_path, _ = moved_run
    lone = tmp_path / "lone-run"
    shutil.copytree(run_path, lone)  # without its base beside it
    with pytest.raises(DsftError, match="was not found on this machine") as refused:
        RunDir(lone).base_model()
    assert "--base-model" not in str(refused.value)  # the library's words; the command line names its flag
    code, out, err = run_cli(["export", str(lone), "--format", "adapter", "--out", str(tmp_path / "a")])
    assert code == 2 and "--base-model" in out + err and "Traceback" not in out + err
    code, out, err = run_cli(["export", str(lone), "--format", "adapter", "--out", str(tmp_path / "b"),
                              "--base-model", str(tiny_model_dir(PRESET))])
    assert code == 0, out + err
    assert (tmp_path / "b" / "adapter_config.json").is_file()


def test_base_recorded_by_preset_name_resolves_on_a_fresh_cache(tmp_path, monkeypatch) -> None:
    """A base given as a tiny preset (or hub id) is found again by name where the recorded path is gone."""
    run = RunDir(tmp_path / "run")
    (tmp_path / "run").mkdir()
    run.write_info(template="deepseek-r1", method="lora", base_model=str(tmp_path / "gone" / PRESET),
                   base_model_relative="../gone/" + PRESET, model_name_or_path=PRESET, model_revision=None)
    monkeypatch.setenv("DSFT_CACHE", str(tmp_path / "fresh-cache"))
    assert run.base_model() == tmp_path / "fresh-cache" / "tiny" / PRESET
