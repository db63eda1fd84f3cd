"""Guide 000: LoRA (r 32, q/k/v/o) on numeric reservoir QA in `conversations` form, DeepSpeed ZeRO-3 offload on
two GPUs, numeric accuracy, Ollama. The whole path on the tiny R1-distill preset, then ZeRO-3 on 2 processes."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from jsonl_files import read_jsonl
from safetensors.torch import load_file
from scenarios_helpers import (
    FEW_STEPS,
    assert_every_record_accounted,
    guide,
    serve_once,
    supervised_text,
)
from torchrun_helpers import train_in_processes

GUIDE = guide("000")
CONFIG = GUIDE / "config.yaml"


@pytest.mark.slow
def test_guide_000_prepare_train_eval_export_serve(at_repo_root: Path, dsft, tmp_path: Path, caplog) -> None:
    from dsft.data.prepared_folder import load_prepared
    from dsft.models.gguf_source import read_gguf_info
    from dsft.models.loading import load_tokenizer
    from dsft.models.resolve import resolve_model
    from dsft.templates import get_template

    # prepare: every record of train.jsonl and val.jsonl accounted for, the explicit val file kept as val
    prepared = tmp_path / "prepared"
    dsft("data", "prepare", "--config", CONFIG, "--out", prepared)
    report = json.loads((prepared / "data_report.json").read_text())
    assert_every_record_accounted(report)
    lines = {name: len(read_jsonl(GUIDE / "data" / f"{name}.jsonl")) for name in ("train", "val")}
    assert report["read"] == lines["train"] + lines["val"] and report["rejected"] == 0
    assert report["splits"]["val"] == lines["val"]

    # inspect: rendered with the model's own template (no "<|user|>" tokens), both answers of a multi-turn
    # record supervised with their EOS, no user text supervised
    assert "template: deepseek-r1" in dsft("data", "inspect", prepared)
    tokenizer = load_tokenizer(resolve_model("tiny-r1-distill-qwen"))
    multi = next(c for c in load_prepared(prepared).splits["train"] if len(c.messages) == 4)
    target = supervised_text(get_template("deepseek-r1").render_train(multi, tokenizer), tokenizer)
    assert target.count(tokenizer.eos_token) == 2 and "<|user|>" not in target
    for message in multi.messages:
        assert (message.content in target) == (message.role == "assistant"), message

    # train a few steps: the guide's adapter (r 32, alpha 64, q/k/v/o only), validation loss and perplexity
    run = tmp_path / "run"
    with caplog.at_level(logging.WARNING, logger="dsft.training.run"):  # one plain line, no UserWarning
        dsft("train", CONFIG, "--out", run, *FEW_STEPS, "--set", "train.distributed=auto",
             "--set", "train.micro_batch_size=2",
             "--set", "train.grad_accum=1", "--set", "eval.steps=3", "--set", "train.save_steps=3",
             "--set", "eval.generation_steps=3", "--set", "eval.generation_samples=2", "--set", "eval.max_new_tokens=8",
             # one process: the guide's selection by numeric accuracy (the config's two-GPU run keeps eval_loss)
             "--set", "eval.metric=numeric_accuracy")
    assert "train.zero_stage=3, train.offload=optimizer+param: not applied" in caplog.text
    assert json.loads((run / "run.json").read_text())["template"] == "deepseek-r1"
    adapter = json.loads((run / "final" / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"]) == (32, 64)
    assert set(adapter["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj"}
    weights = load_file(str(run / "final" / "adapter_model.safetensors"))
    assert any(name.endswith("lora_B.weight") and tensor.abs().sum() > 0 for name, tensor in weights.items())
    rows = read_jsonl(run / "metrics.jsonl")
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3]
    last = rows[-1]
    assert last["step"] == 3 and last["eval_perplexity"] == pytest.approx(2.718281828 ** last["eval_loss"], rel=1e-6)
    # the best checkpoint is chosen by numeric accuracy on generated answers, measured at every evaluation
    args = torch.load(run / "checkpoints" / "checkpoint-3" / "training_args.bin", weights_only=False)
    assert (args.metric_for_best_model, args.greater_is_better) == ("eval_numeric_accuracy", True)
    generated = read_jsonl(run / "generation_eval.jsonl")
    assert [g["step"] for g in generated] == [0, 3] and all("numeric_accuracy" in g["metrics"] for g in generated)
    # the guide's monitor, `jq 'select(.eval_num_acc != null) | {step, eval_loss, eval_num_acc}'`, on metrics.jsonl
    assert [(r["step"], r["eval_numeric_accuracy"]) for r in rows if "eval_numeric_accuracy" in r] == [
        (g["step"], g["metrics"]["numeric_accuracy"]) for g in generated]

    # eval: numeric accuracy (the guide's metric) scored on generated answers
    dsft("eval", run, "--data", GUIDE / "data" / "val.jsonl", "--out", tmp_path / "eval", "--max-new-tokens", "8",
         "--limit", "4", "-m", "numeric_accuracy,exact_match")
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["count"] == 4 and metrics["evaluated"]["template"] == "deepseek-r1"
    assert {"numeric_accuracy", "exact_match"} <= set(metrics)

    # export for Ollama (the config's q8_0): a GGUF whose header reads back, a Modelfile with the training
    # template. The llama.cpp logit check is tests/export's; on a busy 2-core machine its threads alone
    # can take minutes, so the scenario reads the file instead.
    dsft("export", run, "--format", "ollama", "--out", tmp_path / "ollama", "--no-verify")
    modelfile = (tmp_path / "ollama" / "Modelfile").read_text()
    assert modelfile.startswith("FROM ./model.gguf") and "<｜Assistant｜><think>" in modelfile
    info = read_gguf_info(tmp_path / "ollama" / "model.gguf")
    assert (info.architecture, info.has_chat_template) == ("qwen2", True) and "Q8_0" in info.tensor_types

    # serve one OpenAI request with the run (base + adapter)
    answer = serve_once(run, "/v1/chat/completions", {"model": "guide", "max_tokens": 8,
                                                        "messages": [{"role": "user", "content": "青石岭水库的总库容是多少？"}]})
    assert answer["usage"]["completion_tokens"] <= 8 and answer["choices"][0]["message"]["role"] == "assistant"


@pytest.mark.slow
def test_guide_000_zero3_on_two_processes(at_repo_root: Path, dsft, tmp_path: Path) -> None:
    """The guide's two-GPU DeepSpeed ZeRO-3 run as two CPU processes (gloo; offload needs CUDA's cpu_adam)."""
    launch = tmp_path / "launch"
    dsft("launch", CONFIG, "--nodes", "1", "--gpus-per-node", "2", "--launcher", "deepspeed", "--out", launch)
    # One node: no hostfile (the deepspeed launcher would ssh-check its node0 line), the GPU count alone.
    assert "exec deepspeed --num_gpus 2 " in (launch / "deepspeed_launch.sh").read_text()
    assert not (launch / "hostfile").exists()

    run = tmp_path / "run"
    train_in_processes(
        [str(CONFIG), "--out", str(run), *FEW_STEPS, "--set", "train.max_steps=2", "--set", "train.micro_batch_size=2",
         "--set", "train.grad_accum=1", "--set", "train.distributed=deepspeed", "--set", "train.offload=none",
         "--set", "train.max_seq_len=128",
         # No evaluation: ZeRO-3 training is what is checked (generation eval is single-process).
         "--set", "data.val=[]", "--set", "data.val_ratio=0", "--set", "eval.metric=eval_loss",
         "--set", "eval.generation_steps=0"],
        2, at_repo_root)
    ds = json.loads((run / "deepspeed.json").read_text())
    assert "gradient_checkpointing: true" in (run / "config.yaml").read_text()  # the guide's recipe, as written
    assert ds["zero_optimization"]["stage"] == 3 and ds["train_batch_size"] == 2 * 1 * 2
    assert [r["step"] for r in read_jsonl(run / "metrics.jsonl") if "loss" in r] == [1, 2]
    assert (run / "final" / "adapter_model.safetensors").is_file()


@pytest.mark.slow
def test_guide_000_user_trains_from_the_model_ollama_holds(tiny_model_dir, tmp_path: Path, monkeypatch) -> None:
    """The guide's user runs DeepSeek through Ollama and holds only its GGUF blob: ``ollama:NAME:TAG`` resolves
    through the store, converts, and trains with the R1 template and exactly the original tokens and mask."""
    import hashlib

    from dsft.data.conversation import Conversation, Message
    from dsft.export.api import export
    from dsft.models.loading import load_tokenizer
    from dsft.models.resolve import resolve_model
    from dsft.templates import get_template
    from dsft.templates.detect import detect_template

    original = tiny_model_dir("tiny-r1-distill-qwen")
    export(original, "gguf", tmp_path / "gguf", dtype="q8_0", verify=False, echo=lambda _: None)
    blob = (tmp_path / "gguf" / "model.gguf").read_bytes()
    digest = hashlib.sha256(blob).hexdigest()
    store = tmp_path / "ollama-models"  # laid out as `ollama pull deepseek-r1:tiny` leaves it
    (store / "blobs").mkdir(parents=True)
    (store / "blobs" / f"sha256-{digest}").write_bytes(blob)
    manifest = store / "manifests" / "registry.ollama.ai" / "library" / "deepseek-r1" / "tiny"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"schemaVersion": 2, "layers": [
        {"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{digest}", "size": len(blob)}]}))
    monkeypatch.setenv("OLLAMA_MODELS", str(store))

    converted = resolve_model("ollama:deepseek-r1:tiny", cache_dir=tmp_path / "cache")
    assert detect_template(converted) == detect_template(original) == "deepseek-r1"
    conversation = Conversation([Message("user", "青石岭水库的总库容是多少？"),
                                 Message("assistant", "总库容为1.2亿立方米。", reasoning="查资料。")])
    tokenizers = [load_tokenizer(path) for path in (original, converted)]
    # transformers alone lost <｜User｜>/<｜Assistant｜> and appended BOS/EOS past the vocabulary (new ids)
    assert [(t.bos_token_id, t.eos_token_id) for t in tokenizers] == [(151646, 151643)] * 2
    assert len(tokenizers[1]) <= json.loads((converted / "config.json").read_text())["vocab_size"]  # no id past the embedding
    rendered = [get_template("deepseek-r1").render_train(conversation, t) for t in tokenizers]
    assert rendered[0].input_ids == rendered[1].input_ids and rendered[0].supervised == rendered[1].supervised
    assert json.loads((converted / "generation_config.json").read_text())["eos_token_id"] == 151643
