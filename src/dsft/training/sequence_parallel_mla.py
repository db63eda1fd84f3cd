"""DeepSpeed-Ulysses sequence parallelism for multi-head latent attention (DeepSeek-V2/V3/R1).

Ulysses exchanges query, key and value heads between ranks with one all-to-all per tensor and checks
that all three have one head size, which it reads from the model config's ``head_dim``. MLA's queries and
keys are ``qk_nope_head_dim + qk_rope_head_dim`` wide (DeepSeek-V3: 192) and its values ``v_head_dim``
(128), and its config's ``head_dim`` is the rope part alone (64), so Ulysses refused every MLA model.

:func:`ulysses_for_mla` makes it work the way transformers' flash-attention path does for MLA:

* while accelerate registers Ulysses (inside ``Trainer._prepare_for_training``) the config's ``head_dim``
  reads the query/key width, and is put back right after (nothing built later reads it, and the checkpoints
  keep the model's own config);
* the attention function Ulysses registered is wrapped once more: values are zero-padded to the query/key
  width before Ulysses sees them, and the padded columns, which come out as zeros, are sliced off its output.
  That is exact, at the cost of exchanging 1.5x the value bytes (V3) in the all-to-all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS


def is_mla(config: Any) -> bool:
    """Whether ``config`` describes multi-head latent attention with values narrower than queries/keys."""
    return bool(getattr(config, "kv_lora_rank", None)) and _query_width(config) > int(config.v_head_dim)


def _query_width(config: Any) -> int:
    return int(config.qk_nope_head_dim) + int(config.qk_rope_head_dim)


def pad_values_around(attention: Callable[..., Any]) -> Callable[..., Any]:
    """``attention`` (transformers' attention-function signature) called with values zero-padded to the
    query/key width; its output, ``[batch, tokens, heads * width]`` from Ulysses or ``[batch, tokens, heads,
    width]`` from a core kernel, comes back as ``[batch, tokens, heads, value width]``."""

    def padded_value_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                               attention_mask: Any, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, Any]:
        width, value_width = query.shape[-1], value.shape[-1]
        if value_width >= width:
            return attention(module, query, key, value, attention_mask, *args, **kwargs)
        out, weights = attention(module, query, key, F.pad(value, (0, width - value_width)), attention_mask,
                                 *args, **kwargs)
        return out.view(*out.shape[:2], -1, width)[..., :value_width], weights

    padded_value_attention.dsft_pads_values = True  # type: ignore[attr-defined]
    return padded_value_attention


@contextmanager
def ulysses_for_mla(config: Any, sequence_parallel: int) -> Iterator[None]:
    """Around the call that registers DeepSpeed-Ulysses for a model with ``config``: a no-op unless the model
    is MLA and ``sequence_parallel`` > 1 (see the module docstring)."""
    if sequence_parallel <= 1 or not is_mla(config):
        yield
        return
    implementation = config._attn_implementation
    before = ALL_ATTENTION_FUNCTIONS.get(implementation)
    own_head_dim = config.head_dim
    config.head_dim = _query_width(config)
    try:
        yield
    finally:
        config.head_dim = own_head_dim
    registered = ALL_ATTENTION_FUNCTIONS.get(implementation)
    if registered is not before and not getattr(registered, "dsft_pads_values", False):
        ALL_ATTENTION_FUNCTIONS[implementation] = pad_values_around(registered)
