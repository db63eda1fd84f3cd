"""Run directories for export tests: a tiny preset base + a LoRA adapter whose B matrices are non-zero.

A freshly initialised LoRA has B = 0, so merging it would change nothing and a broken merge would
pass; here B is random, so the adapter visibly moves the logits and every parity check has teeth.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

PRESET_TEMPLATES = {"tiny-deepseek-v3": "deepseek-r1", "tiny-r1-distill-qwen": "deepseek-r1",
                    "tiny-deepseek-llm": "deepseek-llm"}


def write_lora_run(base_dir: Path, run_dir: Path, template: str, include_experts: bool = True,
                   seed: int = 0, b_std: float = 0.1) -> Path:
    """Write ``run_dir`` (run.json + final/ adapter + tokenizer) for a random-B LoRA on ``base_dir``."""
    import torch
    from peft import LoraConfig, get_peft_model

    from dsft.models.loading import load_model, load_tokenizer
    from dsft.models.lora import discover_lora_targets, native_v5_targets
    from dsft.templates import get_template

    model = load_model(base_dir, dtype="float32", device="cpu")
    targets = discover_lora_targets(model, include_experts=include_experts)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=targets.modules,
                        target_parameters=targets.parameters or None, task_type="CAUSAL_LM")
    torch.manual_seed(seed)  # peft draws the A matrices from the global generator
    with native_v5_targets():
        peft_model = get_peft_model(model, config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * b_std)
    final = run_dir / "final"
    peft_model.save_pretrained(str(final))
    tokenizer = load_tokenizer(base_dir)
    tokenizer.chat_template = get_template(template).chat_template
    tokenizer.save_pretrained(str(final))
    (run_dir / "run.json").write_text(json.dumps(
        {"template": template, "base_model": str(base_dir), "method": "lora", "dsft_version": "test"}))
    return run_dir


def write_biased_v3_base(preset_dir: Path, out_dir: Path, seed: int = 1) -> Path:
    """The tiny V3 preset with a non-zero router bias (``e_score_correction_bias``), as a trained V3 has.

    A zero bias would let a GGUF export that drops or misplaces ``exp_probs_b`` pass unnoticed.
    """
    import shutil

    import torch

    from dsft.models.loading import load_model

    model = load_model(preset_dir, dtype="float32", device="cpu")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                buffer.copy_(torch.rand(buffer.shape, generator=generator) * 0.5)
    model.save_pretrained(str(out_dir))
    for path in preset_dir.iterdir():
        if path.name.startswith("tokenizer") or path.name == "generation_config.json":
            shutil.copy2(path, out_dir / path.name)
    return out_dir


@pytest.fixture(scope="session")
def lora_run(tiny_model_dir: Callable[[str], Path],
             tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``lora_run(preset, include_experts=True) -> run_dir``, written once per session and argument set."""
    cache: dict[tuple[str, bool], Path] = {}

    def get(preset: str, include_experts: bool = True) -> Path:
        key = (preset, include_experts)
        if key not in cache:
            base = tiny_model_dir(preset)
            if preset == "tiny-deepseek-v3":
                base = write_biased_v3_base(base, tmp_path_factory.mktemp("v3-biased-base"))
            run_dir = tmp_path_factory.mktemp(f"run-{preset}")
            cache[key] = write_lora_run(base, run_dir, PRESET_TEMPLATES[preset], include_experts)
        return cache[key]

    return get


@pytest.fixture
def run_cli(run_cli: Callable[[list[str]], tuple[int, str, str]]) -> Callable[[list[str]], tuple[int, str]]:
    """The shared ``run_cli`` with both streams joined: ``run_cli(args) -> (exit code, stdout + stderr)``.

    It overrides the root fixture of the same name (and calls it): export tests look for a message in
    either stream.
    """

    def run(args: list[str]) -> tuple[int, str]:
        code, out, err = run_cli(args)
        return code, out + err

    return run
