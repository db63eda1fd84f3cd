"""RMSNorm on torch's fused kernel: installed on every norm of the known classes, the stock forward where there
is no fused kernel (this CPU), and where it runs, as close or closer to the exact norm than the stock one.

torch's fused RMSNorm kernel exists on CUDA only; on a CPU ``F.rms_norm`` is a composite of the stock ops. The
tests that run the lean path here make ``has_fused_rms_norm`` say yes, so they check the wiring and the
semantics (weight, epsilon, dtypes, autocast, gradients) on the composite; the fused kernel's own speed and
rounding are measured on a GPU (``benchmarks/bench_lora_forward.py``).
"""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import DeepseekV3Config, DeepseekV3ForCausalLM, Qwen2Config, Qwen2ForCausalLM

from dsft.training import lean_rmsnorm
from dsft.training.lean_activations import use_lean_activations
from dsft.training.lean_rmsnorm import use_lean_rms_norm

HIDDEN = 64


def _norm(dtype: torch.dtype) -> torch.nn.Module:
    """A Qwen2 RMSNorm with a non-trivial weight, as a model in ``dtype`` has it."""
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=64, hidden_size=HIDDEN, intermediate_size=96,
                                         num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2))
    norm = model.model.norm
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 1.5, HIDDEN))
    return norm.to(dtype)


def _input(dtype: torch.dtype) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return (torch.randn(3, 40, HIDDEN, generator=generator, dtype=torch.float64) * 3).to(dtype)


def _run(norm: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The output and the gradients for the input and the weight, as fp64."""
    x = x.detach().clone().requires_grad_()
    norm.zero_grad()
    readout = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out = norm(x)
    (out.double() * readout).sum().backward()
    return [out.detach().double(), x.grad.double(), norm.weight.grad.double()]


def _error(values: list[torch.Tensor], reference: list[torch.Tensor]) -> float:
    return max(float((v - r).norm() / r.norm()) for v, r in zip(values, reference, strict=True))


@pytest.fixture
def fused_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the lean path on this CPU (torch's composite ``rms_norm``), as it runs on CUDA."""
    monkeypatch.setattr(lean_rmsnorm, "has_fused_rms_norm", lambda x: True)


def test_installs_on_every_norm_of_the_known_classes() -> None:
    qwen2 = Qwen2ForCausalLM(Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2))
    assert use_lean_rms_norm(qwen2) == 2 * 2 + 1  # two per layer, and the final norm
    assert use_lean_rms_norm(qwen2) == 0  # already installed
    v3 = DeepseekV3ForCausalLM(DeepseekV3Config(
        vocab_size=64, hidden_size=32, intermediate_size=48, moe_intermediate_size=16, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=4, n_routed_experts=4, num_experts_per_tok=2, n_group=2,
        topk_group=1, q_lora_rank=24, kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=8))
    assert use_lean_activations(v3)[-1] == "rms_norm_cuda x5"  # + the q_a and kv_a norms of MLA


def test_without_a_fused_kernel_the_stock_forward_runs() -> None:
    """On this CPU: bit-identical to the uninstalled module, outputs and gradients."""
    stock = _norm(torch.float32)
    lean = copy.deepcopy(stock)
    use_lean_rms_norm(lean)
    for value, expected in zip(_run(lean, _input(torch.float32)), _run(stock, _input(torch.float32))):
        assert torch.equal(value, expected)


@pytest.mark.usefixtures("fused_here")
def test_fp32_matches_the_stock_norm() -> None:
    stock = _norm(torch.float32)
    lean = copy.deepcopy(stock)
    use_lean_rms_norm(lean)
    exact = _run(copy.deepcopy(stock).double(), _input(torch.float64))
    assert _error(_run(lean, _input(torch.float32)), _run(stock, _input(torch.float32))) < 1e-6
    assert _error(_run(lean, _input(torch.float32)), exact) < 1e-6


@pytest.mark.usefixtures("fused_here")
@pytest.mark.parametrize("autocast", [False, True])
def test_bf16_is_as_close_to_the_exact_norm_and_stays_bf16(autocast: bool) -> None:
    """bf16 weights and input, with or without bf16 autocast: a bf16 output (no fp32 leaks downstream) at
    least as close to the fp64 norm as the stock forward's, outputs and both gradients (the bound: bf16's
    unit roundoff is 2^-9 = 2.0e-3)."""
    stock = _norm(torch.bfloat16)
    lean = copy.deepcopy(stock)
    use_lean_rms_norm(lean)
    exact = _run(copy.deepcopy(stock).double(), _input(torch.bfloat16).double())
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        assert lean(_input(torch.bfloat16)).dtype == torch.bfloat16
        lean_values, stock_values = _run(lean, _input(torch.bfloat16)), _run(stock, _input(torch.bfloat16))
    assert _error(lean_values, exact) <= _error(stock_values, exact) * 1.05
    assert _error(lean_values, exact) < 4e-3


@pytest.mark.usefixtures("fused_here")
def test_a_weight_in_another_dtype_keeps_the_stock_promotion() -> None:
    """QLoRA keeps norms in fp32 under bf16 inputs: the stock forward returns fp32 there, and so does this."""
    stock = _norm(torch.float32)
    lean = copy.deepcopy(stock)
    use_lean_rms_norm(lean)
    x = _input(torch.bfloat16)
    out = lean(x)
    assert out.dtype == torch.float32
    assert torch.equal(out, stock(x))
