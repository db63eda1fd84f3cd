"""Switch a model's blocks to exact implementations that keep fewer activations for backward.

At seq 2,048 on a 30-layer model, the peak memory of a LoRA step is the tensors autograd saves in the
forward (``benchmarks/bench_activation_memory.py`` breaks them down). Each lean block computes the same
forward as the stock module and the same gradients to rounding, saving less:

* dense SwiGLU MLPs (:mod:`dsft.training.lean_swiglu`): two intermediate-wide tensors per token instead
  of four;
* RMSNorm on torch's fused kernel where it has one, CUDA (:mod:`dsft.training.lean_rmsnorm`): the bf16 input
  and its inverse RMS instead of an fp32 copy, one kernel instead of eight (not bit-identical: it rounds
  once where the stock norm rounds twice);
* attention within packed examples on CPU (:class:`dsft.training.segment_attention.SegmentFlashAttentionFunction`,
  used by the ``dsft_segments`` kernel itself): keys and values unrepeated, one output.

On CPU, ``DsftTrainer`` also keeps the saved tensors in a reusable pool and returns the heap's free pages
a few times per pass (:mod:`dsft.training.saved_activation_pool`, :mod:`dsft.training.heap_release`):
without them glibc's heap fragments around the saved tensors and the resident set stays near twice what
is in use.

Each block checks at every call that it can reproduce its module exactly as configured then (peft LoRA
with one vanilla adapter, no dropout, no autocast, ...; see each module) and otherwise runs the module's
own forward, so the switch is safe to make before or after wrapping the model with LoRA.
"""

from __future__ import annotations

import types
from typing import Any

import torch
from torch import nn

from dsft.training.lean_blocks import note_installed, note_ran
from dsft.training.lean_rmsnorm import BLOCK as RMS_NORM_BLOCK
from dsft.training.lean_rmsnorm import use_lean_rms_norm
from dsft.training.lean_swiglu import SWIGLU_MLP_CLASSES, lean_swiglu_forward


SWIGLU_BLOCK = "swiglu_mlp"  # the name reports give it (dsft.training.lean_blocks)


def _lean_mlp_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = lean_swiglu_forward(self, x)
    if out is None:
        return type(self).forward(self, x)
    note_ran(self, SWIGLU_BLOCK)
    return out


def use_lean_activations(model: Any) -> list[str]:
    """Install the lean blocks in ``model`` (a transformers model, possibly inside a peft wrapper); returns
    what was installed, e.g. ``["swiglu_mlp x30", "rms_norm_cuda x61"]`` (empty for an architecture none
    applies to). Installed is not used (``rms_norm_cuda`` runs only on CUDA): what ran, once the model has run,
    is :func:`dsft.training.lean_blocks.lean_blocks_used`'s."""
    mlps = 0
    for module in model.modules():
        if type(module).__name__ in SWIGLU_MLP_CLASSES and "forward" not in vars(module):
            # A bound method (not a closure) so deep copies (a reference model) call their own modules.
            module.forward = types.MethodType(_lean_mlp_forward, module)
            note_installed(module, SWIGLU_BLOCK)
            mlps += 1
    switched = [f"{SWIGLU_BLOCK} x{mlps}"] if mlps else []
    norms = use_lean_rms_norm(model)
    if norms:
        switched.append(f"{RMS_NORM_BLOCK} x{norms}")
    return switched
