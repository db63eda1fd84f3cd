"""Eval fixtures: a small mixed eval set and a LoRA run directory built by hand (a test fixture, not a trained run)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

EVAL_RECORDS = [
    {"messages": [{"role": "user", "content": "1+1等于几？"}, {"role": "assistant", "content": "2"}]},
    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "<b>Capital</b> of France?"},
                  {"role": "assistant", "content": "Paris", "reasoning_content": "France's capital is Paris."}]},
    {"instruction": "把这句话翻译成英文", "input": "我爱北京", "output": "I love Beijing"},
    {"Question": "哪个是水果？A. 苹果 B. 汽车", "Response": "A", "choices": ["苹果", "汽车"]},
]


@pytest.fixture()
def eval_data(tmp_path: Path) -> Path:
    """Four usable records in three formats plus one unusable record and one malformed line."""
    lines = [json.dumps(r, ensure_ascii=False) for r in EVAL_RECORDS]
    lines += [json.dumps({"messages": [{"role": "user", "content": "no answer"}]}), "{oops"]
    path = tmp_path / "eval.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def lora_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Callable[[str], Path]) -> Path:
    """A run directory shaped like training's: run.json, metrics.jsonl and final/ holding a LoRA adapter.

    The adapter is the one training builds for tiny-deepseek-v3 (MLA projections, dense and shared MLPs,
    fused routed experts), with its B matrices filled with seeded noise instead of zeros so that it changes
    the model's outputs. The metrics.jsonl rows are made-up fixture values.
    """
    import torch

    from dsft.config.schema import LoraConfig
    from dsft.models.loading import load_model, load_tokenizer
    from dsft.models.lora import apply_lora

    base = tiny_model_dir("tiny-deepseek-v3")
    run = tmp_path_factory.mktemp("run")
    model = apply_lora(load_model(base), LoraConfig(r=4, alpha=8))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)
    model.save_pretrained(str(run / "final"))
    load_tokenizer(base).save_pretrained(str(run / "final"))
    (run / "run.json").write_text(json.dumps({
        "template": "deepseek-r1", "base_model": str(base), "model_name_or_path": "tiny-deepseek-v3",
        "method": "lora", "thinking": True, "final": "final", "status": "finished",
    }))
    rows = [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.5, "eval_loss": 2.8}, {"step": 3, "loss": 2.0},
            {"step": 4, "loss": 1.75, "eval_loss": 2.25}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run
