"""eval.metric selects the best checkpoint by any metric a run logs: perplexity, or a generation metric.

Both used to crash at the first evaluation with a KeyError inside transformers and leave run.json "running".
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsft.eval.callbacks import GenerationEvalCallback
from dsft.training.run import run_training

from tiny_runs import make_cfg, write_data

pytestmark = pytest.mark.slow  # two short training runs


def _rows(run: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (run / name).read_text().splitlines()]


def test_best_checkpoint_by_perplexity(tmp_path: Path, tiny_model_dir) -> None:
    tiny_model_dir("tiny-deepseek-llm")
    cfg = make_cfg(write_data(tmp_path / "d.jsonl", 24), "tiny-deepseek-llm", "train.max_steps=4", "eval.steps=2",
                   "train.save_steps=2", "eval.load_best=true", "eval.metric=perplexity")
    run_training(cfg, tmp_path / "run", progress=False)
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    evals = {r["step"]: r["eval_perplexity"] for r in _rows(tmp_path / "run", "metrics.jsonl")
             if "eval_perplexity" in r and r["step"] > 0}
    assert info["status"] == "finished"
    assert info["best_checkpoint"].endswith(f"checkpoint-{min(evals, key=evals.get)}")


def test_best_checkpoint_by_a_generation_metric(tmp_path: Path, tiny_model_dir) -> None:
    tiny_model_dir("tiny-deepseek-llm")
    cfg = make_cfg(write_data(tmp_path / "d.jsonl", 24), "tiny-deepseek-llm", "train.max_steps=4", "eval.steps=2",
                   "train.save_steps=2", "eval.load_best=true", "eval.metric=numeric_accuracy",
                   "eval.greater_is_better=true", "eval.generation_steps=2", "eval.generation_samples=2",
                   "eval.max_new_tokens=4", "eval.metrics=[numeric_accuracy]")
    run = tmp_path / "run"
    run_training(cfg, run, progress=False, extra_callbacks=[GenerationEvalCallback.from_config(run, cfg)])
    info = json.loads((run / "run.json").read_text())
    generations = _rows(run, "generation_eval.jsonl")
    assert info["status"] == "finished" and info["best_checkpoint"]
    assert [g["step"] for g in generations] == [0, 2, 4]  # at every evaluation, the one before training included
    assert set(generations[0]["metrics"]) >= {"numeric_accuracy"} and "f1" not in generations[0]["metrics"]


def test_the_generation_metric_selected_by_is_a_column_of_metrics_jsonl(tmp_path: Path, tiny_model_dir) -> None:
    """Guide 000 watches its accuracy per evaluation in the training log (`jq 'select(.eval_num_acc != null)'`).
    With eval.metric=exact_match the value that chose the best checkpoint was in run.json and generation_eval.jsonl
    but not in metrics.jsonl (nor TensorBoard): generation eval adds it after the evaluation was logged."""
    tiny_model_dir("tiny-deepseek-llm")
    cfg = make_cfg(write_data(tmp_path / "d.jsonl", 24), "tiny-deepseek-llm", "train.max_steps=2", "eval.steps=1",
                   "train.save_steps=1", "eval.metric=exact_match", "eval.generation_steps=1",
                   "eval.generation_samples=2", "eval.max_new_tokens=3", "eval.metrics=[exact_match]")
    run = tmp_path / "run"
    run_training(cfg, run, progress=False, extra_callbacks=[GenerationEvalCallback.from_config(run, cfg)])
    generated = {g["step"]: g["metrics"]["exact_match"] for g in _rows(run, "generation_eval.jsonl")}
    logged = {r["step"]: r["eval_exact_match"] for r in _rows(run, "metrics.jsonl") if "eval_loss" in r}
    assert sorted(generated) == [0, 1, 2] and logged == generated
