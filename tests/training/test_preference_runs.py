"""`dsft train` with preference objectives: from a data file to a run directory that export and serve use."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dsft.config import load_config
from dsft.errors import ConfigError, DsftError
from dsft.training.run import run_training

from preference_pairs import write_pairs
from tiny_runs import CHECKPOINT_FILES, trainable_snapshot

MODEL = "tiny-r1-distill-qwen"


def dpo_overrides(data: Path, *extra: str) -> list[str]:
    return [
        f"model.name_or_path={MODEL}", "train.objective=dpo", f"data.train=[{data}]", "data.val_ratio=0.25",
        "train.max_steps=4", "train.save_steps=2", "train.micro_batch_size=2", "train.max_seq_len=128",
        "train.lr=5e-3", "train.warmup_ratio=0", "train.lr_scheduler=constant", "lora.r=4", "eval.steps=2",
        "eval.load_best=false", *extra,
    ]


@pytest.mark.slow
def test_dpo_run_from_config_to_export_and_serving(tmp_path: Path, tiny_model_dir, run_cli) -> None:
    tiny_model_dir(MODEL)
    data = write_pairs(tmp_path / "pairs.jsonl", 8)
    config = tmp_path / "dpo.yaml"
    config.write_text("{}\n", encoding="utf-8")
    args = ["train", str(config), "--out", str(tmp_path / "run")]
    for override in dpo_overrides(data):
        args += ["--set", override]
    code, out, err = run_cli(args)
    assert code == 0, out + err
    run = tmp_path / "run"
    info = json.loads((run / "run.json").read_text())
    assert (info["objective"], info["template"], info["status"]) == ("dpo", "deepseek-r1", "finished")
    assert info["examples"] == {"train": 6, "val": 2} and info["tools_not_rendered"] == {}
    report = json.loads((run / "data_report.json").read_text())
    assert (report["read"], report["kept"], report["rejected"]) == (8, 8, 0)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    trained = [r for r in rows if "loss" in r]
    assert [r["step"] for r in trained] == [1, 2, 3, 4]
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen",
                "tokens", "supervised_tokens"):
        assert key in trained[0], key
    assert trained[-1]["rewards/margins"] > trained[0]["rewards/margins"]  # the policy moves towards chosen
    assert trained[-1]["supervised_tokens"] > trained[0]["supervised_tokens"] > 0
    assert any("eval_loss" in r and "eval_rewards/margins" in r for r in rows)
    for step in (2, 4):
        files = {p.name for p in (run / "checkpoints" / f"checkpoint-{step}").iterdir()}
        assert CHECKPOINT_FILES | {"adapter_model.safetensors"} <= files
    weights = trainable_snapshot(run / "final")
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in weights.items())

    # Export and serving read the run directory as they read an SFT run.
    code, out, err = run_cli(["export", str(run), "--format", "hf", "--out", str(tmp_path / "hf")])
    assert code == 0, out + err
    assert (tmp_path / "hf" / "model.safetensors").is_file()
    from dsft.serve.serving_model import load_serving_model

    serving = load_serving_model(str(run))
    assert serving.template_name == "deepseek-r1" and serving.default_adapter is not None


@pytest.mark.slow
def test_dpo_stop_and_resume_equals_uninterrupted(tmp_path: Path, tiny_model_dir) -> None:
    tiny_model_dir(MODEL)
    data = write_pairs(tmp_path / "pairs.jsonl", 8)
    cfg = load_config(None, dpo_overrides(data, "eval.steps=0", "data.val_ratio=0"))
    straight = run_training(cfg, tmp_path / "straight", progress=False)
    stopped = run_training(cfg, tmp_path / "resumed", progress=False, should_stop=lambda step: step >= 3)
    assert stopped.global_step == 3
    with pytest.raises(DsftError, match="--resume auto"):
        run_training(cfg, tmp_path / "resumed", progress=False)
    resumed = run_training(cfg, tmp_path / "resumed", resume="auto", progress=False)
    assert resumed.global_step == 4
    assert json.loads((tmp_path / "resumed" / "run.json").read_text())["resumed_from"].endswith("checkpoint-2")
    a, b = trainable_snapshot(straight.final_dir), trainable_snapshot(resumed.final_dir)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    rows = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    straight_rows = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert [r["loss"] for r in rows] == pytest.approx([r["loss"] for r in straight_rows], rel=1e-5)


def test_objective_config_problems_come_before_any_model_load(tmp_path: Path, tiny_model_dir) -> None:
    tiny_model_dir(MODEL)
    data = write_pairs(tmp_path / "pairs.jsonl", 4)
    cfg = load_config(None, dpo_overrides(data, "data.format=alpaca", "template.masking=all"))
    with pytest.raises(ConfigError) as info:
        run_training(cfg, tmp_path / "run", progress=False)
    text = str(info.value)
    assert "data.format=alpaca" in text and "template.masking=all" in text
    assert not (tmp_path / "run" / "data").exists()
