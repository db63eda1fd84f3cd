"""Lean activation blocks: the same outputs and parameter gradients as the stock modules, fewer saved bytes."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from transformers import (
    DeepseekV3Config,
    DeepseekV3ForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from dsft.config.schema import LoraConfig
from dsft.models.lora import apply_lora
from dsft.training.collators import PackedCollator, pack_row
from dsft.training.lean_activations import use_lean_activations
from dsft.training.lean_swiglu import lean_swiglu_forward
from dsft.training.loss import supervised_cross_entropy
from dsft.training import segment_attention
from dsft.training.segment_attention import SEGMENT_ATTENTION, SegmentFlashAttentionFunction
from dsft.training.trainer import forward_hidden_states

VOCAB = 256
MODEL_INPUTS = ("input_ids", "position_ids", "cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")


def _tiny(arch: str) -> torch.nn.Module:
    """Tiny seeded models of three real architectures, grouped-query attention where they have it."""
    torch.manual_seed(0)
    common = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                  num_attention_heads=4, max_position_embeddings=256, tie_word_embeddings=False)
    if arch == "llama":
        model = LlamaForCausalLM(LlamaConfig(num_key_value_heads=2, **common))
    elif arch == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(num_key_value_heads=1, **common))
    else:  # first layer dense, second MoE with a shared expert (a dense SwiGLU MLP too)
        model = DeepseekV3ForCausalLM(DeepseekV3Config(
            **common, num_key_value_heads=4, moe_intermediate_size=16, first_k_dense_replace=1,
            n_shared_experts=1, n_routed_experts=4, num_experts_per_tok=2, n_group=2, topk_group=1,
            q_lora_rank=24, kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=8,
        ))
    model.config._attn_implementation = SEGMENT_ATTENTION
    model.config.use_cache = False
    return model


def _packed_batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    examples = []
    for n in (11, 17, 6, 23):
        ids = torch.randint(3, VOCAB, (n,), generator=generator).tolist()
        examples.append({"input_ids": ids, "labels": [-100] * (n // 3) + ids[n // 3:]})
    return PackedCollator(pad_id=0, flatten=True)([pack_row(examples[:2]), pack_row(examples[2:])])


def _prepare(arch: str, method: str, lean: bool) -> torch.nn.Module:
    model = _tiny(arch)
    if method == "lora":
        model = apply_lora(model, LoraConfig())
        torch.manual_seed(2)
        for name, parameter in model.named_parameters():
            if "lora_B" in name:  # peft starts B at zero, which would zero every A gradient
                parameter.data.normal_(0, 0.1)
    if lean:
        assert use_lean_activations(model), "no block was switched"
    return model.train()


def _step(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Hidden states after one forward + dsft's loss + backward, and the bytes autograd saved."""
    inputs = {k: batch[k] for k in MODEL_INPUTS}
    storages: dict[int, int] = {}
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        hidden, _ = forward_hidden_states(model, inputs)
    head = model.get_output_embeddings().weight
    supervised_cross_entropy(hidden, head, batch["labels"], None, chunk_size=16).backward()
    return hidden.detach(), sum(storages.values())


@pytest.mark.parametrize("method", ["lora", "full"])
@pytest.mark.parametrize("arch", ["llama", "qwen2", "deepseek_v3"])
def test_lean_blocks_match_stock_outputs_and_every_gradient_on_packed_rows(arch: str, method: str) -> None:
    batch = _packed_batch()
    stock, lean = _prepare(arch, method, lean=False), _prepare(arch, method, lean=True)
    stock_hidden, stock_saved = _step(stock, batch)
    lean_hidden, lean_saved = _step(lean, batch)
    torch.testing.assert_close(lean_hidden, stock_hidden, rtol=1e-5, atol=1e-6)
    lean_grads = dict(lean.named_parameters())
    compared = 0
    for name, parameter in stock.named_parameters():
        if parameter.grad is None:
            assert lean_grads[name].grad is None, name
            continue
        got = lean_grads[name].grad
        scale = parameter.grad.abs().max().item()
        torch.testing.assert_close(got, parameter.grad, rtol=1e-5, atol=1e-5 * max(scale, 1e-12), msg=name)
        compared += 1
    assert compared >= (14 if method == "lora" else 20)
    assert lean_saved < stock_saved  # the point of the blocks


def test_lean_mlp_falls_back_to_the_module_where_it_cannot_reproduce_it() -> None:
    model = apply_lora(_tiny("llama"), LoraConfig(dropout=0.1))
    use_lean_activations(model)
    mlp = model.get_base_model().model.layers[0].mlp
    x = torch.randn(1, 5, 32)
    assert lean_swiglu_forward(mlp, x) is None  # LoRA dropout: the module's own forward runs
    mlp.eval()
    torch.testing.assert_close(mlp(x), type(mlp).forward(mlp, x))
    plain = apply_lora(_tiny("llama"), LoraConfig())
    assert lean_swiglu_forward(plain.get_base_model().model.layers[0].mlp, x.double()) is None  # dtype mismatch


def test_segment_flash_attention_equals_per_segment_sdpa_with_grouped_heads() -> None:
    torch.manual_seed(3)
    edges = (0, 7, 7, 20, 32)  # an empty segment included
    query = torch.randn(1, 6, 32, 16, requires_grad=True)
    key = torch.randn(1, 2, 32, 16, requires_grad=True)
    value = torch.randn(1, 2, 32, 16, requires_grad=True)
    out = SegmentFlashAttentionFunction.apply(query, key, value, edges, 0.3)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, (query, key, value), grad)
    parts = [F.scaled_dot_product_attention(query[:, :, a:b], key.repeat_interleave(3, 1)[:, :, a:b],
                                            value.repeat_interleave(3, 1)[:, :, a:b], is_causal=True, scale=0.3)
             for a, b in zip(edges[:-1], edges[1:]) if b > a]
    expected = torch.cat(parts, dim=2).transpose(1, 2)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    for g, e in zip(got, torch.autograd.grad(expected, (query, key, value), grad)):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-6)


def _autocast_step(model: torch.nn.Module, batch: dict[str, torch.Tensor], autocast: bool) -> tuple[list[torch.Tensor], int]:
    """:func:`_step` under bf16 autocast (or, for the fp64 reference, without): the hidden states and every
    gradient as fp64, and the bytes autograd saved."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        hidden, saved = _step(model, batch)
    grads = [p.grad.double() for _, p in sorted(model.named_parameters()) if p.grad is not None]
    return [hidden.double(), *grads], saved


@pytest.mark.parametrize("method", ["lora", "full"])
def test_lean_mlp_under_bf16_autocast_is_as_close_to_the_exact_step_as_the_modules(method: str) -> None:
    """bf16 training (autocast: every GPU run): the fused MLP runs, saving less than the modules (before
    2026-11-27 autocast sent every MLP to the modules), and its outputs and every gradient are as close to an
    fp64 step as the modules' are. LoRA: a bf16 base with fp32 adapters; full: fp32 master weights."""
    def prepared(lean: bool) -> torch.nn.Module:
        model = _tiny("llama")
        if method == "lora":
            model = apply_lora(model.to(torch.bfloat16), LoraConfig())  # peft keeps the adapters in fp32
            torch.manual_seed(2)
            for name, parameter in model.named_parameters():
                if "lora_B" in name:
                    parameter.data.normal_(0, 0.1)
        if lean:
            assert use_lean_activations(model)
        return model.train()

    batch = _packed_batch()
    stock, lean = prepared(lean=False), prepared(lean=True)
    reference, _ = _autocast_step(copy.deepcopy(stock).double(), batch, autocast=False)
    stock_values, stock_saved = _autocast_step(stock, batch, autocast=True)
    lean_values, lean_saved = _autocast_step(lean, batch, autocast=True)
    assert len(lean_values) == len(stock_values) == len(reference)

    def error(values: list[torch.Tensor]) -> float:
        return max(float((v - r).norm() / r.norm()) for v, r in zip(values, reference, strict=True))

    stock_error, lean_error = error(stock_values), error(lean_values)
    assert 0 < lean_error <= 1.05 * stock_error and stock_error < 0.1
    assert lean_saved < stock_saved


def test_short_bf16_segments_attend_in_fp32_on_a_cpu_without_amx(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bf16 segment under 512 tokens runs the fp32 flash kernel (faster on such a CPU), forward and backward,
    and comes back in bf16; a longer one stays on the bf16 kernel. Compared bit for bit with the kernels."""
    monkeypatch.setattr(segment_attention, "_cpu_has_amx_tiles", lambda: False)
    flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    flash_backward = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward
    torch.manual_seed(5)
    edges = (0, 40, 40 + segment_attention.FP32_SEGMENT_TOKENS)
    query = torch.randn(1, 4, edges[-1], 16).to(torch.bfloat16).requires_grad_()
    key, value = (torch.randn(1, 2, edges[-1], 16).to(torch.bfloat16).requires_grad_() for _ in range(2))
    out = SegmentFlashAttentionFunction.apply(query, key, value, edges, None)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, (query, key, value), grad)
    for (start, end), dtype in zip([(0, 40), (40, edges[-1])], [torch.float32, torch.bfloat16]):
        q, k, v = (t.detach()[:, :, start:end].to(dtype) for t in (query, key, value))
        part, lse = flash(q, k, v, 0.0, True)
        assert torch.equal(out[:, start:end], part.transpose(1, 2).to(torch.bfloat16))
        grad_part = grad[:, start:end].transpose(1, 2).to(dtype)
        # The backward reads the output as the forward returned it, in bf16.
        expected = flash_backward(grad_part, q, k, v, out.detach()[:, start:end].transpose(1, 2).to(dtype), lse,
                                  0.0, True)
        for g, e in zip(got, expected[:3]):
            assert torch.equal(g[:, :, start:end], e.to(torch.bfloat16))
    assert segment_attention.segment_compute_dtype(torch.bfloat16, 511) == torch.float32
    monkeypatch.setattr(segment_attention, "_cpu_has_amx_tiles", lambda: True)
    assert segment_attention.segment_compute_dtype(torch.bfloat16, 40) == torch.bfloat16
