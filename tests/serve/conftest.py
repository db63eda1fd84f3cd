"""Fixtures for the serving tests: the tiny model, a LoRA run directory and adapters."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

# The fastest tiny preset (Qwen2 body, R1-Distill tokenizer and template): keeps live tests quick.
SERVE_PRESET = "tiny-r1-distill-qwen"


@pytest.fixture(scope="session")
def serve_model_dir(tiny_model_dir: Callable[[str], Path]) -> Path:
    return tiny_model_dir(SERVE_PRESET)


def write_lora_adapter(model_dir: Path, out_dir: Path, rank: int, seed: int) -> Path:
    """A PEFT LoRA adapter on ``model_dir`` with random (non-zero) B matrices, so it changes the output."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["q_proj", "v_proj", "o_proj"],
                        init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(str(out_dir))
    return out_dir


@pytest.fixture(scope="session")
def lora_run_dir(serve_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA run directory as training leaves it: run.json + final/ (adapter and tokenizer)."""
    from dsft.models.loading import load_tokenizer

    run = tmp_path_factory.mktemp("lora-run")
    write_lora_adapter(serve_model_dir, run / "final", rank=24, seed=1)
    load_tokenizer(serve_model_dir).save_pretrained(str(run / "final"))
    (run / "run.json").write_text(json.dumps(
        {"template": "deepseek-r1", "base_model": str(serve_model_dir), "method": "lora"}), encoding="utf-8")
    return run


@pytest.fixture(scope="session")
def extra_adapter_dir(serve_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_lora_adapter(serve_model_dir, tmp_path_factory.mktemp("adapter-sql"), rank=8, seed=2)
