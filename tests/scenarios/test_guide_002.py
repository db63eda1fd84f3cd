"""Guide 002: an R1 distill on medical-o1 records (Question / Complex_CoT / Response), LoRA r 16 on q/v,
batch 2 x 4, the loss curve, the adapter saved. The chain of thought must be trained inside <think>, in the
model's own template, with only the reasoning, the answer and the EOS supervised (the guide trains
labels = input_ids on a private prompt format padded to 512 with EOS)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jsonl_files import read_jsonl
from scenarios_helpers import FEW_STEPS, assert_every_record_accounted, guide, serve_once, supervised_text

GUIDE = guide("002")
CONFIG = GUIDE / "config.yaml"
DATA = GUIDE / "data" / "medical_o1_sample.json"


@pytest.mark.slow
def test_guide_002_cot_prepare_train_export_serve(at_repo_root: Path, dsft, tmp_path: Path) -> None:
    from dsft.data.prepared_folder import load_prepared
    from dsft.models.loading import load_tokenizer
    from dsft.models.resolve import resolve_model
    from dsft.templates import get_template

    records = json.loads(DATA.read_text(encoding="utf-8"))
    prepared = tmp_path / "prepared"
    dsft("data", "prepare", "--config", CONFIG, "--out", prepared)
    report = json.loads((prepared / "data_report.json").read_text())
    assert_every_record_accounted(report)
    assert report["read"] == report["kept"] == len(records)
    train = report["reasoning"]["splits"]["train"]
    assert train["with_reasoning"] == train["samples"] == report["splits"]["train"]  # every CoT kept

    # The target is reasoning in <think>, then the answer, then the model's own EOS; the question is context.
    inspected = dsft("data", "inspect", prepared)
    assert "template: deepseek-r1" in inspected
    tokenizer = load_tokenizer(resolve_model("tiny-r1-distill-qwen"))
    conversation = load_prepared(prepared).splits["train"][0]
    source = next(r for r in records if r["Question"] == conversation.messages[0].content)
    rendered = get_template("deepseek-r1").render_train(conversation, tokenizer)
    assert supervised_text(rendered, tokenizer) == (
        f"{source['Complex_CoT']}\n</think>\n\n{source['Response']}{tokenizer.eos_token}")
    prompt = tokenizer.decode(rendered.input_ids[:rendered.supervised.index(True)])
    assert prompt.endswith("<｜Assistant｜><think>\n") and "<|endoftext|>" not in rendered.text
    assert rendered.input_ids.count(tokenizer.pad_token_id) <= 1  # no padding to 512 (pad is the EOS here)

    # Train: the guide's adapter, the loss curve; one checkpoint at most (the guide saves none; dsft always
    # keeps the last step's, so a run can be resumed, and save_total_limit 1 keeps only that one)
    run = tmp_path / "run"
    dsft("train", CONFIG, "--out", run, *FEW_STEPS)
    adapter = json.loads((run / "final" / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"], set(adapter["target_modules"])) == (16, 32, {"q_proj", "v_proj"})
    assert adapter["lora_dropout"] == 0.05
    assert (run / "loss.png").stat().st_size > 0
    assert [p.name for p in (run / "checkpoints").glob("checkpoint-*")] == ["checkpoint-3"]
    assert [r["step"] for r in read_jsonl(run / "metrics.jsonl") if "loss" in r] == [1, 2, 3]

    # Before / after, as the guide opens: the held-out prompts to the base model and the tuned run alike, rendered
    # with the R1 template (the reply starts inside <think>), scored on the answer after </think> with eval.metrics
    cmp = tmp_path / "cmp"
    dsft("compare", "--tuned", run, "--data", prepared / "val.jsonl", "--out", cmp, "--max-new-tokens", "8")
    sides = {side: json.loads((cmp / side / "metrics.json").read_text()) for side in ("base", "tuned")}
    assert [sides[side]["evaluated"]["adapter"] for side in ("base", "tuned")] == [False, True]
    assert sides["base"]["count"] == sides["tuned"]["count"] == report["splits"]["val"] > 0
    assert all({"f1", "rougeL", "bleu"} <= set(metrics) for metrics in sides.values())
    predicted = {side: read_jsonl(cmp / side / "predictions.jsonl") for side in sides}
    assert [p["prompt"] for p in predicted["base"]] == [p["prompt"] for p in predicted["tuned"]]
    assert all(p["prompt"].endswith("<｜Assistant｜><think>\n") for p in predicted["tuned"])

    # The adapter alone (peft reload compared with the trained model), and one served answer that
    # starts inside the think block the prompt opened
    dsft("export", run, "--format", "adapter", "--out", tmp_path / "adapter")
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in (tmp_path / "adapter").iterdir()}
    answer = serve_once(run, "/v1/chat/completions", {"model": "guide", "max_tokens": 8,
                                                        "messages": [{"role": "user", "content": "发烧怎么办？"}]})
    message = answer["choices"][0]["message"]
    assert "reasoning_content" in message and answer["usage"]["completion_tokens"] <= 8
