"""RMSNorm as one fused kernel on CUDA instead of eight element-wise ones, saving half the activations.

transformers' RMSNorm (Llama, Mistral, Qwen2/3, DeepSeek V2/V3: the same forward) upcasts the input to fp32,
squares it, takes the mean, adds epsilon, takes the reciprocal square root, multiplies, casts back and
multiplies by the weight: eight kernels forward and about ten backward, each a full pass over the hidden
states, and autograd keeps an fp32 copy of the input (twice the bf16 size) for backward. A 7B-shaped model
has 57 of these norms. On the H200 profile of a 7B-shaped LoRA step (docs/performance.md) they were, with
the bf16 adds, most of the kernel time that is not a matmul, and the step was partly launch-bound.

Since PyTorch 2.9, ``torch.nn.functional.rms_norm`` runs a fused CUDA kernel (``aten::_fused_rms_norm``, and
one kernel for both gradients in backward) that accumulates in fp32 and saves the input and its inverse
RMS. :func:`lean_rms_norm_forward` calls it with the module's weight and epsilon, autocast off, where the
input and the weight have the same dtype (bf16 weights under bf16 training; fp32 throughout in fp32). The
stock forward rounds the normalized states to the input dtype and then rounds again after the weight
multiply; the fused kernel multiplies in fp32 and rounds once, so the result is at least as close to the
exact norm, not bit-identical (tests/training/test_lean_rmsnorm.py checks both against an fp64 reference).

Elsewhere it runs the stock forward: on a CPU ``rms_norm`` is a composite of the same element-wise ops
(nothing to gain), and a weight in another dtype than the input (QLoRA's fp32 norms under bf16 inputs)
promotes the output to fp32, which the fused kernel would not.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch import nn

from dsft.training.lean_blocks import note_installed, note_ran

# Norm classes whose forward is ``weight * (x.float() * rsqrt(mean(x.float()**2) + eps)).to(x.dtype)``.
RMS_NORM_CLASSES = frozenset({"LlamaRMSNorm", "MistralRMSNorm", "Qwen2RMSNorm", "Qwen3RMSNorm",
                              "DeepseekV2RMSNorm", "DeepseekV3RMSNorm"})
BLOCK = "rms_norm_cuda"  # the name reports give it (dsft.training.lean_blocks)


def has_fused_rms_norm(x: torch.Tensor) -> bool:
    """Whether torch has a fused RMSNorm kernel for ``x``'s device (CUDA; elsewhere it is a composite)."""
    return x.is_cuda


def lean_rms_norm_forward(norm: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """``norm(x)`` on the fused kernel, or None when this input is outside what it reproduces."""
    weight = norm.weight
    if not has_fused_rms_norm(x) or weight.dtype != x.dtype:
        return None
    with torch.autocast(x.device.type, enabled=False):  # the inputs are already in the dtype to compute in
        return F.rms_norm(x, weight.shape, weight, norm.variance_epsilon)


def _lean_norm_forward(self: nn.Module, hidden_states: torch.Tensor) -> torch.Tensor:
    out = lean_rms_norm_forward(self, hidden_states)
    if out is None:
        return type(self).forward(self, hidden_states)
    note_ran(self, BLOCK)
    return out


def use_lean_rms_norm(model: nn.Module) -> int:
    """Install :func:`lean_rms_norm_forward` on every RMSNorm of ``model`` whose class it reproduces; returns
    how many."""
    count = 0
    for module in model.modules():
        if type(module).__name__ in RMS_NORM_CLASSES and "forward" not in vars(module):
            module.forward = types.MethodType(_lean_norm_forward, module)  # bound: deep copies call their own
            note_installed(module, BLOCK)
            count += 1
    return count

