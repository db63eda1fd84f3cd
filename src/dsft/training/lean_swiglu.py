"""The SwiGLU MLP ``down(silu(gate(x)) * up(x))`` with peft LoRA, saving only what its backward needs.

Run module by module, autograd keeps four intermediate-wide tensors per token for this block: ``gate(x)``
(for silu's backward), ``silu(gate(x))`` and ``up(x)`` (for the product's), and the product itself (the
input of ``down``, for its LoRA A gradient). Two suffice: :class:`LoraSwiGLUFunction` keeps ``gate(x)``
and ``up(x)`` and recomputes ``silu`` and the product in backward, an elementwise pass over what it kept
(no matmul is recomputed). Besides those it keeps ``x`` and the rank-``r`` LoRA intermediates, as the
modules do. On SmolLM2-135M's shape (intermediate 1,536) that is 12 KiB less per token per layer.

The forward computes what transformers' MLP and peft's LoRA layer compute (``base(x) + lora_B(lora_A(x)) *
scaling``, the LoRA term added in place, the product formed in place), and the backward the same gradients,
with fewer temporaries; outputs and gradients match the modules' to rounding
(tests/training/test_lean_activations.py checks 1e-5 relative on tiny real architectures).

The fused path covers what it can compute exactly: each projection a plain ``nn.Linear`` without bias
(frozen or trained: LoRA or full fine-tuning), or a peft LoRA ``Linear`` over one with a single active
vanilla adapter, no dropout, not merged; no ZeRO-3 partitioned weights. Without autocast every weight must be
in the input's dtype. Under autocast (bf16 training: always on a GPU) the weights are cast to autocast's dtype
once, before the function, and the input once, inside it, as autocast would cast them for each matmul (the fp32
LoRA adapters, a full fine-tune's fp32 master weights and residual stream), and the function runs with
autocast off: every matmul and elementwise op in the dtype autocast gives it, each cast's backward returning
the gradient in the weight's (or the input's) own dtype, as autocast's casts do. Before 2026-11-27 autocast sent every MLP to the module's own forward, so
no GPU run (and no ``--precision bf16`` run on CPU) had the saving. Anything else (QLoRA, DoRA, dropout, ...)
runs the module's own forward.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dsft.training.lean_lora import plain_linear_weight, single_plain_adapter

# MLP classes whose forward is ``down_proj(act_fn(gate_proj(x)) * up_proj(x))``.
SWIGLU_MLP_CLASSES = frozenset({"LlamaMLP", "MistralMLP", "Qwen2MLP", "Qwen3MLP", "DeepseekV3MLP"})
_SILU_CLASSES = frozenset({"SiLU", "SiLUActivation"})
# One projection: base weight and, with LoRA, (A weight, B weight, scaling).
Projection = tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, float]


def projection_of(module: Any) -> Projection | None:
    """``module`` as (weight, lora A, lora B, scaling), or None when the fused path cannot reproduce it."""
    weight = plain_linear_weight(module)
    if weight is not None:
        return weight, None, None, 0.0
    base = getattr(module, "base_layer", None)
    if base is None or not hasattr(module, "lora_A") or plain_linear_weight(base) is None:
        return None
    name = single_plain_adapter(module)
    if name is None:
        return None
    return base.weight, module.lora_A[name].weight, module.lora_B[name].weight, float(module.scaling[name])


def _project(x: torch.Tensor, p: Projection) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``base(x) + lora_B(lora_A(x)) * scaling`` for 2-D ``x`` (the LoRA term added in place); also the rank-r
    ``lora_A(x)``."""
    weight, lora_a, lora_b, scaling = p
    out = F.linear(x, weight)
    if lora_a is None:
        return out, None
    low = F.linear(x, lora_a)
    return out.addmm_(low, lora_b.t(), alpha=scaling), low


def _project_backward(grad: torch.Tensor, source: torch.Tensor, low: torch.Tensor | None, p: Projection,
                      needs: tuple[bool, bool, bool], into: torch.Tensor | None = None,
                      ) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
    """Gradient of :func:`_project` for its input (added into ``into`` when given) and (weight, A, B)."""
    weight, lora_a, lora_b, scaling = p
    grads: list[torch.Tensor | None] = [grad.t() @ source if needs[0] else None, None, None]
    grad_input = grad @ weight if into is None else into.addmm_(grad, weight)
    if lora_a is not None:
        grad_low = (grad @ lora_b).mul_(scaling)
        if needs[2]:
            grads[2] = (grad.t() @ low).mul_(scaling)
        if needs[1]:
            grads[1] = grad_low.t() @ source
        grad_input.addmm_(grad_low, lora_a)
    return grad_input, grads


class LoraSwiGLUFunction(torch.autograd.Function):
    """``down(silu(gate(x)) * up(x))``; arguments: ``x``, then (weight, A, B) for gate, up and down (A and
    B None without LoRA), then the three scalings. Saves x, gate(x), up(x) and the rank-r intermediates.

    Computes in the weights' dtype. An input in another dtype (under autocast, a full fine-tune's fp32 residual
    stream) is cast to it, and its gradient is summed in the input's dtype: each projection's part cast first,
    as autocast's per-matmul casts of the input do."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, *args: Any) -> torch.Tensor:
        tensors, scalings = args[:9], args[9:]
        gate_p, up_p, down_p = (tuple(tensors[i:i + 3]) + (scalings[i // 3],) for i in (0, 3, 6))
        ctx.input_dtype = x.dtype
        x2 = x.reshape(-1, x.shape[-1]).to(tensors[0].dtype)
        gate, gate_low = _project(x2, gate_p)
        up, up_low = _project(x2, up_p)
        out, down_low = _project(F.silu(gate).mul_(up), down_p)
        ctx.save_for_backward(x2, gate, up, gate_low, up_low, down_low, *tensors)
        ctx.scalings = scalings
        return out.reshape(*x.shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, gate, up, gate_low, up_low, down_low, *tensors = ctx.saved_tensors
        gate_p, up_p, down_p = (tuple(tensors[i:i + 3]) + (ctx.scalings[i // 3],) for i in (0, 3, 6))
        needs = ctx.needs_input_grad[1:10]
        activated = F.silu(gate)  # recomputed: elementwise, from what was kept
        grad_product, down_grads = _project_backward(grad_out.reshape(-1, grad_out.shape[-1]),
                                                     activated * up, down_low, down_p, needs[6:9])
        grad_up = grad_product * activated
        del activated
        grad_gate = torch.ops.aten.silu_backward(grad_product.mul_(up), gate)
        del grad_product
        if ctx.input_dtype == x.dtype:
            grad_x, gate_grads = _project_backward(grad_gate, x, gate_low, gate_p, needs[0:3])
            grad_x, up_grads = _project_backward(grad_up, x, up_low, up_p, needs[3:6], into=grad_x)
        else:
            grad_x, gate_grads = _project_backward(grad_gate, x, gate_low, gate_p, needs[0:3])
            grad_x = grad_x.to(ctx.input_dtype)
            grad_up_x, up_grads = _project_backward(grad_up, x, up_low, up_p, needs[3:6])
            grad_x.add_(grad_up_x.to(ctx.input_dtype))
            del grad_up_x
        grad_x = grad_x.reshape(*grad_out.shape[:-1], x.shape[-1]) if ctx.needs_input_grad[0] else None
        return (grad_x, *gate_grads, *up_grads, *down_grads, None, None, None)


def lean_swiglu_forward(mlp: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """The fused MLP for ``x``, or None when ``mlp`` (as it is now) is outside what it reproduces."""
    if type(mlp.act_fn).__name__ not in _SILU_CLASSES:
        return None
    projections = [projection_of(getattr(mlp, name)) for name in ("gate_proj", "up_proj", "down_proj")]
    if any(p is None for p in projections):
        return None
    tensors = [t for p in projections for t in p[:3]]  # type: ignore[index]
    scalings = [p[3] for p in projections]  # type: ignore[index]
    device = x.device.type
    if not torch.is_autocast_enabled(device):
        if any(t is not None and t.dtype != x.dtype for t in tensors):
            return None
        return LoraSwiGLUFunction.apply(x, *tensors, *scalings)
    dtype = torch.get_autocast_dtype(device)
    # The weight casts autocast would make for each matmul, made once (differentiable: their backward returns
    # each gradient in the weight's dtype); no-ops for what already is in that dtype (a LoRA run's frozen base).
    # The input is cast inside the function (see its docstring).
    cast = [None if t is None else t.to(dtype) for t in tensors]
    with torch.autocast(device, enabled=False):
        return LoraSwiGLUFunction.apply(x, *cast, *scalings)
