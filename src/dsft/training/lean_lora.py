"""peft's LoRA ``Linear`` forward with the adapter's scaling and sum done by the second matmul.

peft computes ``result + lora_B(lora_A(x)) * scaling``: after the two matmuls, a multiply and an add over
the layer's whole output, forward, and the multiply again in backward. :func:`lean_lora_forward` computes
the same sum as one ``addmm`` (``result + scaling * (lora_A(x) @ B^T)``), whose epilogue does the scaling
and the add: three full-size element-wise passes fewer per adapted layer and step (on a GPU profile of a
7B-shaped LoRA step these multiplies and adds were the largest non-matmul kernels after peft's casts).

Not bit-identical: peft rounds ``lora_B``'s output to the compute dtype before scaling and adding, the
fused matmul adds in its fp32 accumulator and rounds once, so the result is at least as close to the exact
sum (tests/training/test_lean_lora.py checks that against an fp64 reference, in fp32 and under bf16
autocast, for outputs and every gradient).

It runs only where it computes what peft computes: peft's plain LoRA ``Linear``, one active vanilla
adapter (no DoRA or other variant, no dropout, no LoRA bias), not merged, adapters enabled, no extra
arguments, weights not partitioned by ZeRO-3; the input in the adapter's dtype or autocast on (as
:mod:`dsft.training.lora_casts` explains, autocast casts every operand to its dtype). Anything else calls
peft's own forward, checked at every call, so the switch is safe before a DPO reference pass disables the
adapter or a merge.
"""

from __future__ import annotations

import types
from typing import Any

import torch
from torch import nn

try:  # peft is a core dependency; the class check keeps QLoRA's and other LoRA layer types on their own path
    from peft.tuners.lora.layer import Linear as PeftLoraLinear
except ImportError:  # pragma: no cover - peft is installed with dsft
    PeftLoraLinear = None


def _single_plain_adapter(layer: Any) -> str | None:
    """The one active adapter :func:`lean_lora_forward` can compute, or None."""
    if layer.disable_adapters or layer.merged:
        return None
    active = [name for name in layer.active_adapters if name in layer.lora_A]
    if len(active) != 1:
        return None
    name = active[0]
    if getattr(layer, "lora_variant", {}).get(name) is not None or not isinstance(layer.lora_dropout[name], nn.Identity):
        return None
    lora_a, lora_b = layer.lora_A[name], layer.lora_B[name]
    if (type(lora_a) is not nn.Linear or type(lora_b) is not nn.Linear or lora_a.bias is not None
            or lora_b.bias is not None or hasattr(lora_a.weight, "ds_id") or hasattr(lora_b.weight, "ds_id")):
        return None
    return name


def lean_lora_forward(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    name = None if args or kwargs else _single_plain_adapter(self)
    autocast = torch.is_autocast_enabled(x.device.type)
    if name is None or not (autocast or x.dtype == self.lora_A[name].weight.dtype):
        return type(self).forward(self, x, *args, **kwargs)
    result = self.base_layer(x)
    low = self.lora_A[name](x)
    # Under autocast addmm casts its operands (the fp32 B, and the result if it is not yet in the compute dtype).
    total = torch.addmm(result.reshape(-1, result.shape[-1]), low.reshape(-1, low.shape[-1]),
                        self.lora_B[name].weight.t(), alpha=self.scaling[name])
    return total.view(result.shape)


def use_lean_lora(model: nn.Module) -> int:
    """Install :func:`lean_lora_forward` on every peft LoRA ``Linear`` of ``model``; returns how many."""
    if PeftLoraLinear is None:  # pragma: no cover
        return 0
    count = 0
    for module in model.modules():
        if type(module) is PeftLoraLinear and "forward" not in vars(module):
            module.forward = types.MethodType(lean_lora_forward, module)  # bound: deep copies call their own
            count += 1
    return count
