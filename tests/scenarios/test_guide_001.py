"""Guide 001: medical context/question/answer records with domain and difficulty, the guide's three cleaning
rules, LoRA at its 7B row with cosine restarts, AdamW betas, early stopping, BLEU/ROUGE-L/F1/EM, base vs tuned,
and a two-replica Kubernetes deployment serving /generate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import yaml

from jsonl_files import read_jsonl
from scenarios_helpers import FEW_STEPS, assert_every_record_accounted, guide, serve_once

GUIDE = guide("001")
CONFIG = GUIDE / "config.yaml"
DATA = GUIDE / "data" / "medical_qa.jsonl"


@pytest.mark.slow
def test_guide_001_clean_train_compare_deploy(at_repo_root: Path, dsft, tmp_path: Path) -> None:
    from dsft.data.prepared_folder import load_prepared

    records = read_jsonl(DATA)
    prepared = tmp_path / "prepared"
    dsft("data", "prepare", "--config", CONFIG, "--out", prepared)
    report = json.loads((prepared / "data_report.json").read_text())
    assert_every_record_accounted(report)
    assert report["read"] == len(records)
    assert (report["removed"]["exact_dedup"], report["removed"]["near_dedup"]) == (1, 1)
    assert report["removed"]["balance"] > 0
    train = load_prepared(prepared).splits["train"]
    by_level = {level: sum(c.meta["difficulty"] == level for c in train) for level in ("basic", "intermediate", "advanced")}
    assert len(set(by_level.values())) == 1, by_level  # under-sampled to the smallest class
    assert all(c.meta["domain"] in {"medical", "pharmacy", "nutrition"} for c in train)
    first = train[0].messages
    assert [m.role for m in first] == ["user", "assistant"] and first[0].content  # context + question -> user

    run = tmp_path / "run"
    dsft("train", CONFIG, "--out", run, *FEW_STEPS, "--set", "train.micro_batch_size=4", "--set", "eval.steps=1",
         "--set", "train.save_steps=1", "--set", "train.max_steps=4")
    saved = yaml.safe_load((run / "config.yaml").read_text())["train"]
    assert saved["adam_betas"] == [0.9, 0.95] and saved["lr_scheduler"] == "cosine_with_restarts"
    rows = read_jsonl(run / "metrics.jsonl")
    assert max(r["lr"] for r in rows if "lr" in r) <= 3e-5
    # Early stopping (patience 3, delta 0.001): training ends at the third evaluation in a row that does
    # not beat the best by more than the delta, else after its 4 steps.
    evals = [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r]
    best, waited, expected_end = evals[0][1], 0, 4
    for step, loss in evals[1:]:
        best, waited = (loss, 0) if best - loss > 0.001 else (best, waited + 1)
        if waited == 3:
            expected_end = step
            break
    assert [step for step, _ in evals] == list(range(expected_end + 1))
    assert max(r["step"] for r in rows if "loss" in r) == expected_end
    adapter = json.loads((run / "final" / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_dropout"]) == (32, 0.1)

    # base vs tuned on the held-out split, with the guide's generation metrics
    dsft("compare", "--tuned", run, "--data", prepared / "val.jsonl", "--out", tmp_path / "cmp",
         "--max-new-tokens", "6", "-m", "bleu,rouge,f1,exact_match")
    compared = {p.name for p in (tmp_path / "cmp").iterdir()}
    assert {"report.md", "report.html"} <= compared
    tuned = json.loads((tmp_path / "cmp" / "tuned" / "metrics.json").read_text())
    assert {"bleu", "rougeL", "f1", "exact_match"} <= set(tuned)

    # merged export, two replicas with one GPU each, /generate answered by the merged model
    merged = tmp_path / "merged"
    dsft("export", run, "--format", "hf", "--out", merged)
    dsft("deploy", "k8s", merged, "--replicas", "2", "--gpus", "1", "--out", tmp_path / "k8s")
    deployment = yaml.safe_load((tmp_path / "k8s" / "deployment.yaml").read_text())
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    answer = serve_once(merged, "/generate", {"prompt": "患者主诉持续发热3天，可能病因有哪些?", "max_tokens": 6})
    assert answer["usage"]["completion_tokens"] <= 6 and answer["finish_reason"] in ("stop", "length")
