"""Pipeline smoke tests: real tiny models, real tokenizers, the real `run_training` recipe on CPU."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dsft.config import load_config
from dsft.errors import DsftError
from dsft.training.resume_layout import UNIVERSAL_DIR
from dsft.training.run import run_training

from tiny_runs import CHECKPOINT_FILES, make_cfg, trainable_snapshot, write_data


@pytest.mark.parametrize("model", ["tiny-deepseek-v3", "tiny-r1-distill-qwen"])
def test_lora_run(tmp_path: Path, tiny_model_dir, model: str) -> None:
    tiny_model_dir(model)
    cfg = make_cfg(write_data(tmp_path / "d.jsonl"), model)
    result = run_training(cfg, tmp_path / "run", progress=False)
    run = tmp_path / "run"
    assert result.global_step == 8
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert losses[-1] < losses[0], losses
    assert result.last_eval_loss < result.first_eval_loss
    for key in ("step", "epoch", "loss", "lr", "grad_norm", "tokens", "tokens_per_s", "elapsed_s"):
        assert key in rows[1], key
    assert any("eval_loss" in r for r in rows)
    for step in (4, 8):
        files = {p.name for p in (run / "checkpoints" / f"checkpoint-{step}").iterdir()}
        assert CHECKPOINT_FILES | {"adapter_model.safetensors", "adapter_config.json"} <= files
    assert (run / "loss.png").stat().st_size > 1000
    assert list((run / "tb").glob("events.out.tfevents.*"))
    assert load_config(run / "config.yaml") == cfg
    info = json.loads((run / "run.json").read_text())
    assert info["template"] == "deepseek-r1" and info["method"] == "lora" and info["status"] == "finished"
    # LoRA B matrices start at zero: any non-zero B means the adapter was trained.
    weights = trainable_snapshot(result.final_dir)
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in weights.items())
    assert (result.final_dir / "tokenizer_config.json").is_file()


def test_full_run_changes_base_weights(tmp_path: Path, tiny_model_dir) -> None:
    base = tiny_model_dir("tiny-deepseek-llm")
    cfg = make_cfg(write_data(tmp_path / "d.jsonl"), "tiny-deepseek-llm", "train.method=full", "train.lr=1e-3")
    result = run_training(cfg, tmp_path / "run", progress=False)
    before = load_file(str(base / "model.safetensors"))
    after = trainable_snapshot(result.final_dir)
    changed = [k for k in before if k in after and not torch.equal(before[k], after[k])]
    assert len(changed) > len(before) // 2
    assert result.last_eval_loss < result.first_eval_loss


@pytest.mark.parametrize("method", ["lora", "full"])
def test_stop_and_resume_equals_uninterrupted(tmp_path: Path, tiny_model_dir, method: str) -> None:
    """Full fine-tuning of the MoE model included: its fused experts must survive the checkpoint."""
    tiny_model_dir("tiny-deepseek-v3")
    data = write_data(tmp_path / "d.jsonl")
    cfg = make_cfg(data, "tiny-deepseek-v3", "train.max_steps=8", "eval.steps=0", "train.save_steps=4",
                   f"train.method={method}", *(["train.lr=1e-3"] if method == "full" else []))
    straight = run_training(cfg, tmp_path / "straight", progress=False)

    stopped = run_training(cfg, tmp_path / "resumed", progress=False, should_stop=lambda step: step >= 5)
    assert stopped.global_step == 5
    with pytest.raises(DsftError, match="--resume auto"):
        run_training(cfg, tmp_path / "resumed", progress=False)
    # A conversion an earlier resume (stopped before it ended) left beside the checkpoints, mirroring checkpoint-4:
    # this resume reads none, so it goes, and the checkpoint it links to stays whole.
    leftover = tmp_path / "resumed" / "checkpoints" / UNIVERSAL_DIR / "checkpoint-4"
    leftover.mkdir(parents=True)
    (leftover / "trainer_state.json").symlink_to(leftover.parents[1] / "checkpoint-4" / "trainer_state.json")
    (leftover / "global_step4_universal").mkdir()
    resumed = run_training(cfg, tmp_path / "resumed", resume="auto", progress=False)
    assert resumed.global_step == 8
    assert not leftover.parent.exists() and (leftover.parents[1] / "checkpoint-4" / "trainer_state.json").is_file()
    info = json.loads((tmp_path / "resumed" / "run.json").read_text())
    assert info["resumed_from"].endswith("checkpoint-4")
    a, b = trainable_snapshot(straight.final_dir), trainable_snapshot(resumed.final_dir)
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst <= 1e-6, worst
    steps = [json.loads(line)["step"] for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)), "metrics.jsonl must not repeat steps after a resume"
    rows = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    for key in ("tokens", "supervised_tokens"):
        counts = [r[key] for r in rows if key in r]
        assert counts == sorted(counts) and len(set(counts)) == len(counts), f"{key} continues across the resume"


def test_nan_guard_stops_and_keeps_last_good_checkpoint(tmp_path: Path, tiny_model_dir) -> None:
    tiny_model_dir("tiny-deepseek-v3")
    cfg = make_cfg(write_data(tmp_path / "d.jsonl"), "tiny-deepseek-v3", "eval.steps=0", "train.save_steps=2")
    from transformers import TrainerCallback

    class PoisonAfterStep3(TrainerCallback):
        """Sets every trainable weight to NaN after step 3, as a diverging run would."""

        def on_step_end(self, args, state, control, model=None, **kw):
            if state.global_step == 3:
                with torch.no_grad():
                    for p in model.parameters():
                        if p.requires_grad:
                            p.fill_(math.nan)

    with pytest.raises(DsftError, match="loss became nan at optimizer step 4"):
        run_training(cfg, tmp_path / "run", progress=False, extra_callbacks=[PoisonAfterStep3()])
    checkpoints = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("checkpoint-*"))
    assert checkpoints == ["checkpoint-2"]
    good = load_file(str(tmp_path / "run" / "checkpoints" / "checkpoint-2" / "adapter_model.safetensors"))
    assert all(torch.isfinite(v).all() for v in good.values())
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "failed"


def test_run_dir_holding_another_run_is_refused(tmp_path: Path, tiny_model_dir) -> None:
    tiny_model_dir("tiny-deepseek-v3")
    data = write_data(tmp_path / "d.jsonl", n=16)
    cfg = make_cfg(data, "tiny-deepseek-v3", "train.max_steps=2", "eval.steps=0")
    run_training(cfg, tmp_path / "run", progress=False)
    other = make_cfg(data, "tiny-deepseek-v3", "train.max_steps=2", "eval.steps=0", "lora.r=4")
    with pytest.raises(DsftError, match="already holds a different run .*lora.r"):
        run_training(other, tmp_path / "run", progress=False)
    # A run that failed during setup (no run.json yet) gives way to a corrected config, keeping the old one.
    from dsft.training.rundir import prepare_run_dir

    prepare_run_dir(tmp_path / "setup-failed", cfg, resuming=False)
    prepare_run_dir(tmp_path / "setup-failed", other, resuming=False)
    assert len(list((tmp_path / "setup-failed").glob("config.before-*.yaml"))) == 1
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file.txt").write_text("x")
    with pytest.raises(DsftError, match="holds no dsft run"):
        run_training(cfg, tmp_path / "junk", progress=False)


def test_qlora_refused_without_cuda(tmp_path: Path, tiny_model_dir) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the refusal is for machines without it")
    tiny_model_dir("tiny-deepseek-v3")
    cfg = make_cfg(write_data(tmp_path / "d.jsonl", n=8), "tiny-deepseek-v3", "train.method=qlora")
    with pytest.raises(DsftError, match="qlora needs a CUDA GPU"):
        run_training(cfg, tmp_path / "run", progress=False)
