"""How dsft spells a weight dtype, and the other spellings users type for one: the one table of dtype names.

dsft names a dtype as torch does (``float32``, ``float16``, ``bfloat16``): ``model.dtype``, ``export.dtype`` and
the ``--dtype`` of ``export``, ``serve`` and ``models random``. ``train.precision`` and ``train.loss_dtype`` name a
compute precision as transformers' Trainer flags do (``fp32``, ``bf16``, ``fp16``). A ``--dtype`` flag takes either
spelling, and llama.cpp's (``f32``, ``f16``) and torch's ``half``, in any case (README.md, "Flag values"). Values
in a YAML config stay exact: the config is the run's record. This module imports nothing from dsft, so any layer
may read it.
"""

from __future__ import annotations

from typing import TypeVar

Value = TypeVar("Value", str, None)

WEIGHT_DTYPES = ("float32", "float16", "bfloat16")
# train.precision's names (transformers' fp16/bf16 flags) and the weight dtype each computes in.
PRECISION_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
# Other spellings of a weight dtype: the precision names, llama.cpp's file types, torch's alias.
DTYPE_ALIASES = {**PRECISION_DTYPES, "f32": "float32", "f16": "float16", "half": "float16"}


def dtype_name(value: Value) -> Value:
    """``value`` as dsft's name of the dtype it spells another way (in any case); anything else as it is, so a
    check that refuses it names it as the user typed it.

    >>> dtype_name("fp16"), dtype_name("BF16"), dtype_name("f32"), dtype_name("bfloat16"), dtype_name("fp8")
    ('float16', 'bfloat16', 'float32', 'bfloat16', 'fp8')
    """
    if value is None:
        return value
    return DTYPE_ALIASES.get(value.casefold(), value)
