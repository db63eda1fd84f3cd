"""Guide 004: a local DeepSeek-LLM trained with FSDP on 4 GPUs from `{"data": [{"input", "output"}]}` scraped
with HTML: three-stage cleaning, full fine-tuning with label smoothing and dropout, perplexity-based early
stopping, int8 serving behind /generate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from jsonl_files import read_jsonl
from scenarios_helpers import FEW_STEPS, assert_every_record_accounted, guide, serve_once

GUIDE = guide("004")
CONFIG = GUIDE / "config.yaml"
DATA = GUIDE / "data" / "train.json"
ON_CPU = ["--set", "train.distributed=auto"]


@pytest.mark.slow
def test_guide_004_clean_train_eval_serve_int8(at_repo_root: Path, dsft, run_cli, tmp_path: Path) -> None:
    from dsft.data.prepared_folder import load_prepared

    rows = json.loads(DATA.read_text(encoding="utf-8"))["data"]
    prepared = tmp_path / "prepared"
    dsft("data", "prepare", "--config", CONFIG, "--out", prepared)
    report = json.loads((prepared / "data_report.json").read_text())
    assert_every_record_accounted(report)
    assert report["read"] == len(rows)
    # the emptied row, the duplicate once its markup is gone, the two off-topic rows
    assert (report["removed"]["strip_html"], report["removed"]["exact_dedup"], report["removed"]["relevance"]) == (1, 1, 2)
    removed = {json.loads(line)["where"].rsplit(" ", 1)[-1] for line in (prepared / "removed.jsonl").open()}
    assert {"17", "18", "20"} <= removed  # 1-based items: the weather, the film, the empty row
    texts = [m.content for split in load_prepared(prepared).splits.values() for c in split for m in c.messages]
    assert texts and not any("<" in t or "&nbsp;" in t or "track(" in t or t != t.strip() for t in texts)

    # FSDP is a GPU strategy: on this CPU it is refused with the fix, before any step runs
    run = tmp_path / "run"
    code, _, err = run_cli(["train", str(CONFIG), "--out", str(run), *FEW_STEPS])
    assert code == 2 and "train.distributed=fsdp" in err and "Traceback" not in err
    assert "train.distributed=auto" in err  # the fix this README gives
    launch = tmp_path / "launch"
    dsft("launch", CONFIG, "--nodes", "1", "--gpus-per-node", "4", "--launcher", "torchrun", "--out", launch)
    assert "--nnodes 1 --nproc-per-node 4" in (launch / "torchrun_node.sh").read_text()

    # one process: full fine-tuning with label smoothing and attention dropout, eval loss + perplexity,
    # early stopping armed on eval_loss
    run = tmp_path / "run-cpu"
    dsft("train", CONFIG, "--out", run, *FEW_STEPS, *ON_CPU, "--set", "train.micro_batch_size=2",
         "--set", "train.grad_accum=1", "--set", "eval.steps=1", "--set", "train.save_steps=1")
    saved = json.loads((run / "final" / "config.json").read_text())
    assert saved["attention_dropout"] == 0.1
    rows_logged = read_jsonl(run / "metrics.jsonl")
    evals = [r for r in rows_logged if "eval_loss" in r]
    assert [r["step"] for r in evals] == [0, 1, 2, 3]
    assert all(r["eval_perplexity"] == pytest.approx(2.718281828 ** r["eval_loss"], rel=1e-6) for r in evals)
    # the guide's TensorBoard: training loss, learning rate and validation perplexity, step by step
    events = EventAccumulator(str(run / "tb"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3]
    assert [e.value for e in events.Scalars("train/lr")] == pytest.approx(
        [r["lr"] for r in rows_logged if "loss" in r], rel=1e-6)
    assert [e.step for e in events.Scalars("eval/perplexity")] == [0, 1, 2, 3]

    # the guide's torch_dtype=torch.float16 on a full fine-tune trains float16 weights with no fp32 master copy
    # (NaN within two steps): refused before anything loads, with the fix
    code, _, err = run_cli(["train", str(CONFIG), "--out", str(tmp_path / "fp16"), *ON_CPU,
                            "--set", "model.dtype=float16"])
    assert code == 2 and "model.dtype=float16 with train.method: full" in err and "model.dtype: auto" in err
    assert not (tmp_path / "fp16").exists()

    # eval on the raw HTML file: references are cleaned as the training targets were
    dsft("eval", run, "--data", DATA, "--out", tmp_path / "eval", "--max-new-tokens", "4", "--limit", "3",
         "-m", "bleu,rouge,f1")
    predictions = read_jsonl(tmp_path / "eval" / "predictions.jsonl")
    assert [p["reference"] for p in predictions][:2] == [
        "可通过混合精度训练、梯度累积和分布式数据并行等技术提升训练效率。",
        "自注意力机制通过计算查询向量、键向量和值向量的加权和，让每个位置关注序列中的其他位置。"]
    assert {"bleu", "rouge1", "rougeL", "f1"} <= set(json.loads((tmp_path / "eval" / "metrics.json").read_text()))

    # int8 dynamic quantization on CPU, the guide's /generate endpoint
    answer = serve_once(run, "/generate", {"prompt": "什么是早停？", "max_tokens": 6}, quantize="int8")
    assert isinstance(answer["text"], str) and answer["usage"]["completion_tokens"] <= 6
