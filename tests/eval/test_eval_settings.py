"""The `eval:` keys drive generation eval during training and `dsft eval`: each changes what is done."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from dsft.config import load_config
from dsft.data.conversation import Conversation, Message
from dsft.eval.callbacks import GenerationEvalCallback
from dsft.eval.evaluate import generation_eval

CONVERSATIONS = [Conversation([Message("user", f"{i}+{i}?"), Message("assistant", str(2 * i))]) for i in range(3)]


def test_generation_eval_callback_takes_every_eval_key(tmp_path: Path) -> None:
    cfg = load_config(None, ["eval.generation_steps=3", "eval.batch_size=2", "eval.temperature=0.7",
                             "eval.top_p=0.9", "eval.metrics=[f1, rouge]", "eval.max_new_tokens=5",
                             "eval.metric=rougeL"])
    callback = GenerationEvalCallback.from_config(tmp_path, cfg)
    assert (callback.every, callback.batch_size, callback.temperature, callback.top_p, callback.max_new_tokens) == \
        (3, 2, 0.7, 0.9, 5)
    assert callback.metrics == ["f1", "rouge"] and callback.select_by == "rougeL"


def test_metrics_temperature_and_top_p_change_generation_eval(tiny_model_dir: Callable[[str], Path]) -> None:
    import torch

    from dsft.models.loading import load_model, load_tokenizer

    path = tiny_model_dir("tiny-r1-distill-qwen")
    model, tokenizer = load_model(path), load_tokenizer(path)
    only_f1, _ = generation_eval(model, tokenizer, "deepseek-r1", CONVERSATIONS, max_new_tokens=8, metrics=["f1"])
    assert "f1" in only_f1 and "exact_match" not in only_f1 and "bleu" not in only_f1
    runs = {}
    for name, temperature, top_p in (("greedy", 0.0, 1.0), ("again", 0.0, 1.0), ("sampled", 1.5, 1.0),
                                     ("nucleus", 1.5, 0.01)):
        torch.manual_seed(0)
        _, samples = generation_eval(model, tokenizer, "deepseek-r1", CONVERSATIONS, max_new_tokens=8,
                                     temperature=temperature, top_p=top_p)
        runs[name] = [(s["reasoning"], s["answer"]) for s in samples]  # R1 prompts open a think block
    assert runs["greedy"] == runs["again"]
    assert runs["sampled"] != runs["greedy"]  # temperature samples (a random tiny model: near-flat logits)
    assert runs["nucleus"] == runs["greedy"]  # top_p 0.01 keeps only the top token: greedy again


def test_dsft_eval_takes_its_defaults_from_the_eval_section(tmp_path: Path, eval_data: Path, run_cli,
                                                            tiny_model_dir: Callable[[str], Path]) -> None:
    model = str(tiny_model_dir("tiny-r1-distill-qwen"))
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps({"eval": {"max_new_tokens": 3, "batch_size": 3, "metrics": ["f1"]}}))
    code, out, err = run_cli(["eval", model, "--data", str(eval_data), "--out", str(tmp_path / "a"),
                              "--config", str(config)])
    assert code == 0, out + err
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert "f1" in metrics and "exact_match" not in metrics
    assert metrics["generation"]["max_new_tokens"] == 3 and metrics["generation"]["batch_size"] == 3
    # A flag given on the command line wins over the section.
    code, out, err = run_cli(["eval", model, "--data", str(eval_data), "--out", str(tmp_path / "b"),
                              "--config", str(config), "--max-new-tokens", "2", "--metrics", "exact_match"])
    assert code == 0, out + err
    metrics = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert "exact_match" in metrics and "f1" not in metrics and metrics["generation"]["max_new_tokens"] == 2
