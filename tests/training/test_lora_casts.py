"""LoRA under autocast skips peft's fp32 copy of each layer input, with bit-identical outputs and gradients."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import Qwen2Config, Qwen2ForCausalLM

from dsft.config.schema import LoraConfig
from dsft.models.lora import apply_lora
from dsft.training.lean_lora import skip_redundant_lora_casts

TOKENS, HIDDEN = 24, 32


class FullSizeUpcasts(TorchDispatchMode):
    """Counts casts of an activation-sized bf16 tensor to fp32, forward and backward (peft's input casts;
    RMSNorm's upcasts are the rest; the lm_head is not run)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if (func is torch.ops.aten._to_copy.default and out.dtype == torch.float32
                and args[0].dtype == torch.bfloat16 and out.numel() >= TOKENS * HIDDEN):
            self.count += 1
        return out


def _bf16_lora_model(dropout: float = 0.0) -> torch.nn.Module:
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=128, hidden_size=HIDDEN, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model = apply_lora(model, LoraConfig(dropout=dropout))  # peft keeps the adapters in fp32
    for name, parameter in model.named_parameters():
        if "lora_B" in name:  # nonzero B, so the adapters change the output and get input gradients
            torch.nn.init.normal_(parameter, std=0.1)
    return model


def _step(model: torch.nn.Module, autocast: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
    ids = torch.arange(TOKENS).remainder(128)[None]
    counter = FullSizeUpcasts()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast), counter:
        hidden = model.base_model.model.model(input_ids=ids).last_hidden_state
        hidden.float().pow(2).mean().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return hidden.detach(), grads, counter.count


def test_under_autocast_no_input_is_upcast_and_everything_is_bit_identical() -> None:
    stock = _bf16_lora_model()
    lean = copy.deepcopy(stock)
    assert skip_redundant_lora_casts(lean) == 2 * 7  # q, k, v, o, gate, up, down in each of two layers
    out_stock, grads_stock, upcasts_stock = _step(stock, autocast=True)
    out_lean, grads_lean, upcasts_lean = _step(lean, autocast=True)
    assert upcasts_lean <= upcasts_stock - 14  # at least one per adapted layer gone
    assert torch.equal(out_stock, out_lean)
    assert grads_stock.keys() == grads_lean.keys() and len(grads_stock) == 2 * 14  # lora_A and lora_B
    for name, grad in grads_stock.items():
        assert torch.equal(grad, grads_lean[name]), name


def test_without_autocast_peft_still_casts() -> None:
    """bf16 inputs meeting fp32 adapters outside autocast would fail without the cast: it still happens."""
    stock = _bf16_lora_model()
    lean = copy.deepcopy(stock)
    skip_redundant_lora_casts(lean)
    out_stock, grads_stock, _ = _step(stock, autocast=False)
    out_lean, grads_lean, upcasts = _step(lean, autocast=False)
    assert upcasts == _step(copy.deepcopy(stock), autocast=False)[2]
    assert torch.equal(out_stock, out_lean)
    for name, grad in grads_stock.items():
        assert torch.equal(grad, grads_lean[name]), name


@pytest.mark.parametrize("dropout", [0.1])
def test_layers_with_dropout_keep_peft_cast(dropout: float) -> None:
    """Dropout on the fp32 copy rounds differently from dropout in bf16: those layers are left alone."""
    assert skip_redundant_lora_casts(_bf16_lora_model(dropout)) == 0
