"""dsft's forward for peft's LoRA layers: the adapter's scaling and sum done by the second matmul, and under
mixed precision no fp32 copy of the input that autocast casts straight back. :func:`use_lean_lora` installs
both (DsftTrainer does, and the TRL objectives once TRL has wrapped the model).

**The fused sum.** peft computes ``result + lora_B(lora_A(x)) * scaling``: after the two matmuls, a multiply
and an add over the layer's whole output, forward, and the multiply again in backward.
:func:`lean_lora_forward` computes the same sum as one ``addmm`` (``result + scaling * (lora_A(x) @ B^T)``),
whose epilogue does the scaling and the add: three full-size element-wise passes fewer per adapted layer and
step (on a GPU profile of a 7B-shaped LoRA step these multiplies and adds were the largest non-matmul kernels
after peft's casts). Not bit-identical: peft rounds ``lora_B``'s output to the compute dtype before scaling
and adding, the fused matmul adds in its fp32 accumulator and rounds once, so the result is at least as close
to the exact sum (tests/training/test_lean_lora.py checks that against an fp64 reference, in fp32 and under
bf16 autocast, for outputs and every gradient). It runs only where it computes what peft computes: peft's
plain LoRA ``Linear`` with :func:`single_plain_adapter`, no extra arguments, the input in the adapter's dtype
or autocast on (autocast casts every operand to its dtype). Anything else calls peft's own forward, checked
at every call, so the switch is safe before a DPO reference pass disables the adapter or a merge.

**The casts.** peft keeps adapter weights in fp32 and, before each adapter's matmuls, casts the layer input
to the adapter's dtype (``x.to(float32)``). Under bf16/fp16 autocast the matmul then casts that fp32 copy
straight back: for every adapted layer a full-size copy of the activations to fp32 and one back, forward and
again in backward (on a 7B-shaped LoRA step on one H200, ``dsft bench train --profile``, about 1,800 copy
kernels per optimizer step and the largest block of non-matmul device time). :func:`skip_redundant_lora_casts`
makes each LoRA layer whose adapters are all vanilla skip that cast while autocast is on for the input's
device; it matters where the fused forward leaves a layer to peft (several active adapters, extra arguments,
other LoRA layer types). Exact: an upcast to fp32 is lossless, and autocast casts the input to the same
dtype either way, so the matmuls see bit-identical operands (tests/training/test_lora_casts.py). Without
autocast (fp32 training, evaluation outside the Trainer) peft's cast runs as before.
"""

from __future__ import annotations

import types
from typing import Any, NamedTuple

import torch
from torch import nn

from dsft.training.lean_blocks import note_installed, note_ran

try:  # peft is a core dependency; the class check keeps QLoRA's and other LoRA layer types on their own path
    from peft.tuners.lora.layer import Linear as PeftLoraLinear
except ImportError:  # pragma: no cover - peft is installed with dsft
    PeftLoraLinear = None


FUSED_BLOCK, CAST_SKIP_BLOCK = "lean_lora", "lora_cast_skips"  # the names reports give them (lean_blocks)


class LeanLora(NamedTuple):
    """What :func:`use_lean_lora` installed: layers on the fused forward, layers skipping the cast."""

    fused_layers: int
    cast_skips: int


def vanilla_adapter(layer: Any, name: str) -> bool:
    """Adapter ``name`` of a peft LoRA layer is plain LoRA: no DoRA or other variant (they use the input for
    more than the two matmuls) and no dropout (it draws random numbers and rounds in the input's dtype)."""
    return (getattr(layer, "lora_variant", {}).get(name) is None
            and isinstance(layer.lora_dropout[name], nn.Identity))


def plain_linear_weight(linear: Any) -> torch.Tensor | None:
    """The weight of a plain ``nn.Linear`` without bias and not partitioned by ZeRO-3, else None."""
    if type(linear) is not nn.Linear or linear.bias is not None or hasattr(linear.weight, "ds_id"):
        return None
    return linear.weight


def single_plain_adapter(layer: Any) -> str | None:
    """The name of the one adapter a fused LoRA computation can reproduce for ``layer`` as it is now: adapters
    enabled and not merged, exactly one active, vanilla (:func:`vanilla_adapter`), its A and B plain linears
    (:func:`plain_linear_weight`); else None. The base layer is the caller's to check."""
    if layer.disable_adapters or layer.merged:
        return None
    active = [name for name in layer.active_adapters if name in layer.lora_A]
    if len(active) != 1 or not vanilla_adapter(layer, active[0]):
        return None
    name = active[0]
    if plain_linear_weight(layer.lora_A[name]) is None or plain_linear_weight(layer.lora_B[name]) is None:
        return None
    return name


def lean_lora_forward(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    name = None if args or kwargs else single_plain_adapter(self)
    autocast = torch.is_autocast_enabled(x.device.type)
    if name is None or not (autocast or x.dtype == self.lora_A[name].weight.dtype):
        return type(self).forward(self, x, *args, **kwargs)
    result = self.base_layer(x)
    low = self.lora_A[name](x)
    note_ran(self, FUSED_BLOCK)
    # Under autocast addmm casts its operands (the fp32 B, and the result if it is not yet in the compute dtype).
    total = torch.addmm(result.reshape(-1, result.shape[-1]), low.reshape(-1, low.shape[-1]),
                        self.lora_B[name].weight.t(), alpha=self.scaling[name])
    return total.view(result.shape)


def _cast_unless_autocast(self: Any, x: Any, dtype: torch.dtype) -> Any:
    if isinstance(x, torch.Tensor) and torch.is_autocast_enabled(x.device.type):
        note_ran(self, CAST_SKIP_BLOCK)
        return x  # autocast casts it for the matmul anyway; the fp32 copy would be thrown away
    return type(self)._cast_input_dtype(self, x, dtype)


def skip_redundant_lora_casts(model: nn.Module) -> int:
    """Install the cast skip on every peft LoRA layer of ``model`` whose adapters are all vanilla (dropout on
    the fp32 copy would round differently); returns how many."""
    count = 0
    for module in model.modules():
        if (hasattr(module, "lora_A") and hasattr(module, "_cast_input_dtype")
                and "_cast_input_dtype" not in vars(module)
                and all(vanilla_adapter(module, name) for name in module.lora_A)):
            module._cast_input_dtype = types.MethodType(_cast_unless_autocast, module)
            note_installed(module, CAST_SKIP_BLOCK)
            count += 1
    return count


def use_lean_lora(model: nn.Module) -> LeanLora:
    """Install :func:`lean_lora_forward` on every peft LoRA ``Linear`` of ``model`` and the cast skip on every
    LoRA layer it applies to; returns how many of each."""
    fused = 0
    if PeftLoraLinear is not None:
        for module in model.modules():
            if type(module) is PeftLoraLinear and "forward" not in vars(module):
                module.forward = types.MethodType(lean_lora_forward, module)  # bound: deep copies call their own
                note_installed(module, FUSED_BLOCK)
                fused += 1
    return LeanLora(fused, skip_redundant_lora_casts(model))
