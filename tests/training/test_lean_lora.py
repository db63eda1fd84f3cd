"""The fused LoRA forward: peft's sum, as close or closer to the exact one, and peft's own path elsewhere."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from dsft.config.schema import LoraConfig
from dsft.models.lora import apply_lora
from dsft.training.lean_lora import use_lean_lora

TOKENS = 24


def _lora_model(dtype: torch.dtype, dropout: float = 0.0) -> torch.nn.Module:
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=128, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    model = apply_lora(Qwen2ForCausalLM(config).to(dtype), LoraConfig(dropout=dropout))  # adapters stay fp32
    for name, parameter in model.named_parameters():
        if "lora_B" in name:  # nonzero B, so the adapters change the output and get input gradients
            torch.nn.init.normal_(parameter, std=0.1)
    return model


def _step(model: torch.nn.Module, autocast: bool = False) -> list[torch.Tensor]:
    """The body's output and every LoRA gradient, as fp64."""
    ids = torch.arange(TOKENS).remainder(128)[None]
    # A fixed random readout: well-conditioned gradients (the squared norm of an RMS-normed state is nearly
    # constant, and its gradient nearly cancels).
    readout = torch.randn(TOKENS, 32, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        hidden = model.base_model.model.model(input_ids=ids).last_hidden_state
        (hidden.double()[0] * readout).sum().backward()
    grads = [p.grad.double() for n, p in sorted(model.named_parameters()) if p.grad is not None]
    return [hidden.detach().double(), *grads]


def _error(values: list[torch.Tensor], reference: list[torch.Tensor]) -> float:
    return max(float((v - r).norm() / r.norm()) for v, r in zip(values, reference, strict=True))


def test_installs_on_every_lora_linear() -> None:
    assert use_lean_lora(_lora_model(torch.float32)) == (2 * 7, 2 * 7)  # q, k, v, o, gate, up, down per layer


def test_fp32_matches_peft_and_the_fp64_sum() -> None:
    stock = _lora_model(torch.float32)
    lean = copy.deepcopy(stock)
    use_lean_lora(lean)
    reference = _step(copy.deepcopy(stock).double())
    stock_values, lean_values = _step(stock), _step(lean)
    assert len(lean_values) == 1 + 2 * 14
    assert _error(lean_values, stock_values) < 1e-5
    assert _error(lean_values, reference) < 1e-5


def test_bf16_autocast_is_at_least_as_close_to_the_exact_sum_as_peft() -> None:
    """A bf16 body under autocast: the fused sum rounds once where peft rounds the LoRA term first."""
    stock = _lora_model(torch.bfloat16)
    lean = copy.deepcopy(stock)
    use_lean_lora(lean)
    reference = _step(copy.deepcopy(stock).double())
    stock_error = _error(_step(stock, autocast=True), reference)
    lean_error = _error(_step(lean, autocast=True), reference)
    assert 0 < lean_error <= 1.05 * stock_error and stock_error < 0.1


@pytest.mark.parametrize("case", ["dropout", "disabled", "merged", "cast"])
def test_other_configurations_run_peft_forward_bit_for_bit(case: str) -> None:
    stock = _lora_model(torch.bfloat16 if case == "cast" else torch.float32, dropout=0.1 if case == "dropout" else 0.0)
    stock.eval()  # dropout off: the outputs are deterministic, the layer still not the plain one
    lean = copy.deepcopy(stock)
    assert use_lean_lora(lean).fused_layers == 14
    ids = torch.arange(TOKENS).remainder(128)[None]

    def run(model: torch.nn.Module) -> torch.Tensor:
        if case == "disabled":
            with model.disable_adapter(), torch.no_grad():
                return model(input_ids=ids).logits
        with torch.no_grad():
            return model(input_ids=ids).logits

    if case == "merged":
        for model in (stock, lean):
            model.merge_adapter()
    assert torch.equal(run(stock), run(lean))  # "cast": bf16 input, fp32 adapters, no autocast: peft casts
