"""Early stopping, keeping and restoring the best checkpoint, and generation eval during training."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from dsft.training.run import run_training

from tiny_runs import make_cfg, write_data


def evals_by_step(run: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["eval_loss"] for r in rows if "eval_loss" in r}


def test_early_stopping_stops_after_patience(tmp_path: Path, tiny_model_dir) -> None:
    tiny_model_dir("tiny-deepseek-v3")
    # min_delta far above any real change: every evaluation after the first counts as "no improvement".
    cfg = make_cfg(write_data(tmp_path / "d.jsonl"), "tiny-deepseek-v3", "train.max_steps=20", "eval.steps=2",
                   "train.save_steps=2", "eval.early_stopping_patience=2", "eval.early_stopping_min_delta=100",
                   "eval.load_best=true")
    result = run_training(cfg, tmp_path / "run", progress=False)
    # The evaluation before training is logged but is not a candidate for "best" (no checkpoint exists at
    # step 0), so step 2 sets the reference; 4 and 6 bring no improvement -> patience 2 stops at step 6.
    assert result.global_step == 6
    assert sorted(evals_by_step(tmp_path / "run")) == [0, 2, 4, 6]


def test_best_checkpoint_kept_and_restored(tmp_path: Path, tiny_model_dir) -> None:
    tiny_model_dir("tiny-deepseek-v3")
    cfg = make_cfg(write_data(tmp_path / "d.jsonl"), "tiny-deepseek-v3", "train.max_steps=8", "eval.steps=2",
                   "train.save_steps=2", "train.save_total_limit=1", "train.lr=3e-2", "eval.load_best=true")
    result = run_training(cfg, tmp_path / "run", progress=False)
    evals = {s: v for s, v in evals_by_step(tmp_path / "run").items() if s > 0}
    best_step = min(evals, key=evals.get)
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["best_checkpoint"].endswith(f"checkpoint-{best_step}")
    assert abs(result.best_eval_loss - evals[best_step]) < 1e-6
    best = tmp_path / "run" / "checkpoints" / f"checkpoint-{best_step}"
    assert best.is_dir(), "the best checkpoint survives save_total_limit"
    final = load_file(str(result.final_dir / "adapter_model.safetensors"))
    kept = load_file(str(best / "adapter_model.safetensors"))
    assert all(torch.equal(final[k], kept[k]) for k in final), "final/ holds the best checkpoint's adapter"


def test_generation_eval_during_training(tmp_path: Path, tiny_model_dir) -> None:
    from dsft.eval.callbacks import GenerationEvalCallback

    tiny_model_dir("tiny-deepseek-v3")
    cfg = make_cfg(write_data(tmp_path / "d.jsonl"), "tiny-deepseek-v3", "train.max_steps=4", "eval.steps=0")
    run = tmp_path / "run"
    callback = GenerationEvalCallback(run, every=2, samples=3, max_new_tokens=6)
    run_training(cfg, run, progress=False, extra_callbacks=[callback])
    lines = [json.loads(line) for line in (run / "generation_eval.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [2, 4]
    assert lines[0]["metrics"]["count"] == 3
    assert lines[0]["samples"] and "answer" in lines[0]["samples"][0]


def test_per_epoch_evaluation_and_early_stopping_on_perplexity(tmp_path: Path, tiny_model_dir) -> None:
    """eval.steps 0 evaluates at every epoch end; patience counts epochs (guide 004: validation perplexity,
    3 epochs without gain; 2 here)."""
    tiny_model_dir("tiny-deepseek-v3")
    # min_delta far above any real change: every epoch after the first counts as "no improvement".
    cfg = make_cfg(write_data(tmp_path / "d.jsonl", n=24), "tiny-deepseek-v3", "train.max_steps=-1", "train.epochs=8",
                   "eval.steps=0", "eval.early_stopping_patience=2", "eval.early_stopping_min_delta=1e6",
                   "eval.metric=perplexity", "eval.load_best=true", "train.micro_batch_size=4")
    result = run_training(cfg, tmp_path / "run", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evaluated = [r for r in rows if "eval_loss" in r]
    # Before training, then epochs 1, 2, 3: epoch 1 sets the reference, 2 and 3 bring no gain -> stop.
    assert [r["epoch"] for r in evaluated] == [0, 1.0, 2.0, 3.0]
    steps_per_epoch = evaluated[1]["step"]
    assert result.global_step == 3 * steps_per_epoch < 8 * steps_per_epoch
    # The best checkpoint is the lowest validation perplexity among the epochs (min_delta only gates patience).
    best = min(evaluated[1:], key=lambda r: r["eval_perplexity"])
    assert (tmp_path / "run" / "checkpoints" / f"checkpoint-{best['step']}").is_dir()
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["best_checkpoint"].endswith(f"checkpoint-{best['step']}")
    assert info["best_metric"] == {"eval_perplexity": best["eval_perplexity"]}


def test_a_generation_metric_is_refused_with_several_processes(run_cli, tmp_path: Path) -> None:
    """Generation eval is single-process: with several ranks eval_<metric> would never be logged, and the
    best-checkpoint choice would fail at the first evaluation inside transformers."""
    from dsft.config import load_config
    from dsft.plan.preflight import preflight_problems
    from dsft.training.environment import Environment

    cfg = load_config(None, ["eval.metric=numeric_accuracy", "eval.generation_steps=2"])
    assert preflight_problems(cfg, Environment(world_size=1, cuda=False)) == []
    problems = preflight_problems(cfg, Environment.gpu_cluster(2))
    assert problems == ["eval.metric=numeric_accuracy: generation eval runs in single-process training only, and "
                        "this run has 2 processes; select by eval_loss or eval_perplexity here and score "
                        "generations afterwards with `dsft eval RUN --data VAL`"]
    config = tmp_path / "c.yaml"
    config.write_text("eval:\n  metric: numeric_accuracy\n  generation_steps: 2\n", encoding="utf-8")
    code, _, err = run_cli(["launch", str(config), "--nodes", "1", "--gpus-per-node", "2", "--out", str(tmp_path / "o")])
    assert code == 2 and "generation eval runs in single-process training only" in err
