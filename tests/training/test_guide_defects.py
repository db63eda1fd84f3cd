"""Training defects a new user hit on the guides: warmup rounding, bf16 on CPU, metrics lines, progress bar."""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from rich.console import Console

from dsft.config import load_config
from dsft.training import environment
from dsft.training.monitoring import RichProgressCallback, TokenCounter, rebuild_metrics
from dsft.training.objectives import trl_arguments
from dsft.training.setup import build_training_arguments, environment_problems


def test_warmup_ratio_rounds_down_so_a_short_run_starts_learning_at_step_one(tmp_path: Path) -> None:
    """transformers rounds 0.03 x 3 steps up to one warmup step, whose lr is 0."""
    args = build_training_arguments(load_config(None, ["train.warmup_ratio=0.03"]), tmp_path, has_eval=False,
                                    model=None)
    assert args.get_warmup_steps(3) == 0
    assert args.get_warmup_steps(100) == 3


@pytest.mark.parametrize("objective", ["dpo", "kto", "orpo", "grpo"])
def test_preference_and_grpo_runs_round_warmup_down_too(tmp_path: Path, objective: str) -> None:
    """TRL's configs are TrainingArguments of their own: built from dsft's, they rounded 0.03 x 3 steps up to one
    warmup step, so every short DPO/KTO/ORPO/GRPO run trained its first step at lr 0 (its step-2 loss was
    step 1's, ln 2 for DPO)."""
    own = ["grpo.num_generations=2"] if objective == "grpo" else []
    cfg = load_config(None, ["train.warmup_ratio=0.03", f"train.objective={objective}", "train.micro_batch_size=2", *own])
    args = trl_arguments(cfg, tmp_path, has_eval=False, model=None)
    assert args.get_warmup_steps(3) == 0
    assert args.get_warmup_steps(100) == 3
    torch.save(args, tmp_path / "training_args.bin")  # what every checkpoint holds
    saved = torch.load(tmp_path / "training_args.bin", weights_only=False)
    assert type(saved) is type(args).__mro__[2] and saved.to_dict() == args.to_dict()  # TRL's own class


def test_bf16_on_a_cpu_without_bf16_instructions_is_refused_before_anything_loads(monkeypatch) -> None:
    cfg = load_config(None, ["train.precision=bf16"])
    monkeypatch.setattr(environment, "cpu_multiplies_bf16", lambda: False)
    [problem] = environment_problems(cfg, cuda=False, installed=lambda package: True)
    assert problem.startswith("train.precision=bf16: needs a CUDA GPU or a CPU with bf16 matrix instructions")
    assert environment_problems(cfg, cuda=True, installed=lambda package: True) == []
    monkeypatch.setattr(environment, "cpu_multiplies_bf16", lambda: True)
    assert environment_problems(cfg, cuda=False, installed=lambda package: True) == []
    fp16 = load_config(None, ["train.precision=fp16"])
    [problem] = environment_problems(fp16, cuda=False, installed=lambda package: True)
    assert problem.startswith("train.precision=fp16: fp16 mixed precision (loss scaling) needs a CUDA GPU")


def test_cpu_bf16_instructions_are_read_from_the_cpu_flags(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16 avx512_vnni\n")
    assert environment.cpu_multiplies_bf16(cpuinfo)
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse amx_tile amx_bf16\n")
    assert environment.cpu_multiplies_bf16(cpuinfo)
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f\n")  # bf16 would be emulated
    assert not environment.cpu_multiplies_bf16(cpuinfo)
    assert not environment.cpu_multiplies_bf16(tmp_path / "absent")  # not Linux: unknown, so no


def test_fresh_start_in_a_crashed_run_dir_does_not_repeat_step_zero(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"step": 0, "eval_loss": 9.0}) + "\n" + json.dumps({"step": 1, "loss": 8.0}) + "\n")
    assert rebuild_metrics(path, [], 0) == [] and path.read_text() == ""
    path.write_text(json.dumps({"step": 0}) + "\n" + json.dumps({"step": 5}) + "\n" + json.dumps({"step": 7}) + "\n")
    assert [row["step"] for row in rebuild_metrics(path, [], 5)] == [0, 5]  # resuming from checkpoint-5


def test_progress_bar_shows_the_eval_loss_logged_after_the_last_step() -> None:
    bar = RichProgressCallback(TokenCounter(), console=Console(file=io.StringIO(), force_terminal=True))
    state = SimpleNamespace(is_world_process_zero=True, max_steps=2, global_step=0)
    bar.on_train_begin(None, state, None)
    try:
        state.global_step = 2
        bar.on_log(None, state, None, logs={"loss": 1.5, "learning_rate": 1e-4})
        bar.on_step_end(None, state, None)
        bar.on_log(None, state, None, logs={"eval_loss": 0.25})  # the Trainer evaluates after on_step_end
        assert "eval 0.2500" in bar.progress.tasks[0].fields["stats"]
    finally:
        bar.close()


def test_progress_in_a_log_file_is_one_line_per_logged_step_as_the_run_goes() -> None:
    """Not a terminal (nohup, SLURM's --output): a bar would be drawn only when the run stops, leaving the log
    empty for the whole run."""
    out = io.StringIO()
    bar = RichProgressCallback(TokenCounter(), console=Console(file=out, force_terminal=False, width=200))
    state = SimpleNamespace(is_world_process_zero=True, max_steps=20, global_step=0)
    bar.on_train_begin(None, state, None)
    state.global_step = 10
    bar.on_log(None, state, None, logs={"loss": 1.5, "learning_rate": 1e-4, "grad_norm": 0.5})
    assert out.getvalue().startswith("step 10/20  loss 1.5000  lr 1.00e-04  0 tok/s")  # before the run ends
    bar.on_step_end(None, state, None)
    bar.on_log(None, state, None, logs={"eval_loss": 0.25})
    bar.on_train_end(None, state, None)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[1].startswith("step 10/20  eval 0.2500") and "━" not in out.getvalue()
