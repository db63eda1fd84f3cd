"""ORPO (reference-free) and KTO (labelled completions) runs on TRL's trainers with dsft's rendering."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsft.config import load_config
from dsft.data.preference import parse_preference
from dsft.models.loading import load_tokenizer
from dsft.templates import get_template
from dsft.training.objectives import _orpo_class
from dsft.training.preference_examples import render_pair
from dsft.training.run import run_training

from preference_pairs import pair_rows, write_pairs
from tiny_runs import trainable_snapshot

MODEL = "tiny-r1-distill-qwen"


def overrides(objective: str, data: Path, *extra: str) -> list[str]:
    return [
        f"model.name_or_path={MODEL}", f"train.objective={objective}", f"data.train=[{data}]", "data.val_ratio=0",
        "train.max_steps=6", "train.save_steps=100", "train.micro_batch_size=2", "train.max_seq_len=128",
        "train.lr=5e-3", "train.warmup_ratio=0", "train.lr_scheduler=constant", "lora.r=4", "eval.steps=0", *extra,
    ]


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_orpo_rows_are_the_rendered_pairs(tiny_model_dir) -> None:
    tokenizer = load_tokenizer(tiny_model_dir(MODEL))
    template = get_template("deepseek-r1")
    record = parse_preference(pair_rows(2)[1], "pair")
    row = _orpo_class().tokenize_row(None, render_pair(template, tokenizer, record, None))
    for side in ("chosen", "rejected"):
        rendered = template.render_train(record.conversation(getattr(record, side)), tokenizer, masking="last",
                                         thinking=True)
        assert row[f"{side}_input_ids"] == rendered.input_ids
        assert row[f"{side}_labels"] == rendered.labels()
    assert tokenizer.decode(row["prompt_input_ids"]).endswith("<｜Assistant｜><think>\n")


@pytest.mark.slow
def test_orpo_run_trains_without_a_reference(tmp_path: Path, tiny_model_dir) -> None:
    tiny_model_dir(MODEL)
    cfg = load_config(None, overrides("orpo", write_pairs(tmp_path / "pairs.jsonl", 8), "preference.beta=0.2",
                                      "train.max_steps=4"))
    result = run_training(cfg, tmp_path / "run", progress=False)
    rows = metrics(tmp_path / "run")
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert {"rewards/margins", "supervised_tokens"} <= rows[0].keys() and rows[0]["supervised_tokens"] > 0
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in trainable_snapshot(result.final_dir).items())


@pytest.mark.slow
def test_kto_run_on_pairs_read_as_labelled_completions(tmp_path: Path, tiny_model_dir) -> None:
    tiny_model_dir(MODEL)
    cfg = load_config(None, overrides("kto", write_pairs(tmp_path / "pairs.jsonl", 6)))
    result = run_training(cfg, tmp_path / "run", progress=False)
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert (info["objective"], info["examples"]["train"]) == ("kto", 12)  # 6 pairs -> 6 desirable + 6 undesirable
    rows = metrics(tmp_path / "run")
    assert len(rows) == 6 and all(r["supervised_tokens"] > 0 for r in rows)
    assert "kl" in rows[0]
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in trainable_snapshot(result.final_dir).items())
