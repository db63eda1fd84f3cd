"""LoRA under mixed precision without the two copies per adapter that peft makes and autocast undoes.

peft keeps adapter weights in fp32 and, before each adapter's matmuls, casts the layer input to the
adapter's dtype (``x.to(float32)``). Under bf16/fp16 autocast (mixed-precision training on a GPU) the
matmul then casts that fp32 copy straight back to the autocast dtype. For every adapted linear layer
that is a full-size copy of the activations to fp32 and one back, forward and again in backward: on a
7B-shaped LoRA step on one H200 (``dsft bench train --profile``), about 1,800 copy kernels per optimizer
step and the largest block of non-matmul device time.

:func:`skip_redundant_lora_casts` makes each vanilla LoRA layer skip that cast while autocast is on for the
input's device. Exact: an upcast to fp32 is lossless, and autocast casts the input to the same dtype
either way, so the matmuls see bit-identical operands (tests/training/test_lora_casts.py). Without
autocast (fp32 training, evaluation outside the Trainer) peft's cast runs as before.
"""

from __future__ import annotations

import types
from typing import Any

import torch
from torch import nn


def _cast_unless_autocast(self: Any, x: Any, dtype: torch.dtype) -> Any:
    if isinstance(x, torch.Tensor) and torch.is_autocast_enabled(x.device.type):
        return x  # autocast casts it for the matmul anyway; the fp32 copy would be thrown away
    return type(self)._cast_input_dtype(self, x, dtype)


def _vanilla(layer: nn.Module) -> bool:
    """One or more plain LoRA adapters: no DoRA or other variant (they use the input's dtype for more than
    the matmul) and no dropout (dropout on the fp32 copy would round differently)."""
    if getattr(layer, "lora_variant", None):
        return False
    dropouts = getattr(layer, "lora_dropout", {})
    return all(isinstance(dropout, nn.Identity) for dropout in dropouts.values())


def skip_redundant_lora_casts(model: nn.Module) -> int:
    """Install the cast skip on every vanilla peft LoRA layer of ``model``; returns how many."""
    count = 0
    for module in model.modules():
        if (hasattr(module, "lora_A") and hasattr(module, "_cast_input_dtype")
                and "_cast_input_dtype" not in vars(module) and _vanilla(module)):
            module._cast_input_dtype = types.MethodType(_cast_unless_autocast, module)
            count += 1
    return count
