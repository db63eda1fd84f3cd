"""Quantisation for serving: int8 dynamic on CPU (measured against float32), 4-bit refused without CUDA."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_int8_dynamic_quantisation_keeps_top1(tiny_model_dir) -> None:
    import torch

    from dsft.export.quantize import count_quantized_linears, quantize_dynamic_int8
    from dsft.export.verify import compare_logits, hf_logits
    from dsft.models.loading import load_model, load_tokenizer

    path = tiny_model_dir("tiny-r1-distill-qwen")
    tokenizer = load_tokenizer(path)
    prompts = [tokenizer.encode(text) for text in ("The capital of France is", "1 + 1 = 2, 2 + 2 =", "你好，世界")]
    model = load_model(path, dtype="float32", device="cpu")
    reference = hf_logits(model, prompts)
    quantized = quantize_dynamic_int8(model)
    comparison = compare_logits(reference, hf_logits(quantized, prompts))
    print(f"int8 dynamic vs float32: {comparison.summary()}")
    layers = quantized.config.num_hidden_layers
    assert count_quantized_linears(quantized) == 7 * layers  # q k v o gate up down per layer
    assert isinstance(quantized.lm_head, torch.nn.Linear)  # the output head stays float32
    assert 0 < comparison.relative_diff < 0.1  # int8 rounding: a few percent of the logit scale
    assert comparison.top1_agreement >= 0.8


def test_4bit_loading_needs_cuda() -> None:
    import torch

    from dsft.errors import UnsupportedError
    from dsft.models.loading import quantization_config

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: 4-bit loading is supported here")
    with pytest.raises(UnsupportedError, match="CUDA"):
        quantization_config("4bit", torch.bfloat16)


def test_int8_quantisation_says_nothing_of_torchs_deprecations() -> None:
    """`dsft serve/chat --quantize int8` printed torch's 'UserWarning: torch.quantize_per_tensor, ... are deprecated
    and will be removed ... (Triggered internally at .../Quantizer.cpp)' to every user. torch says it once per
    process, so a fresh interpreter looks."""
    script = ("import torch\nfrom dsft.export.quantize import quantize_dynamic_int8, count_quantized_linears\n"
              "model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8))\n"
              "print(count_quantized_linears(quantize_dynamic_int8(model)))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "2", done.stderr
    assert "Warning" not in done.stderr and "deprecated" not in done.stderr, done.stderr
