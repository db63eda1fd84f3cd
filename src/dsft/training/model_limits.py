"""Sizes the model's own config bounds, checked before anything loads: the LoRA rank against the widths of the
matrices it adapts, the row length and the generation length against the positions the model can place, and the
LoRA scale.

A value past these bounds cannot be meant: ``lora.r=99999999999`` died inside torch allocating 25 TB for the first
adapter matrix, after the data was prepared and the model loaded; ``train.max_seq_len=1e11`` sized the packer's
table by it. The model's config comes from :func:`dsft.models.resolve.peek_model_config` (a tiny preset, a local
``config.json``, a real-model preset's hub id; no weights, no torch); a model whose config cannot be known here (an
unknown hub id, a GGUF file) is checked where it loads, as before.

This module stays light to import (no torch): it is on the path of ``dsft config show``.
"""

from __future__ import annotations

import math
from typing import Any

from dsft.config import DsftConfig
from dsft.models.resolve import peek_model_config

# lora.alpha / r (alpha / sqrt(r) with rslora) above this multiplies each adapter update so much that training
# diverges at its first steps; usual scales are 0.5 to 4.
MAX_LORA_SCALE = 1000
# Rope scalings that extend the context without a stated bound: the row length is not checked against them.
_OPEN_ENDED_ROPE = ("dynamic",)


def _text_config(values: dict[str, Any]) -> dict[str, Any]:
    """The language model's part of a config (a multimodal config nests it under ``text_config``)."""
    nested = values.get("text_config")
    return nested if isinstance(nested, dict) else values


def largest_useful_rank(values: dict[str, Any]) -> int | None:
    """The largest LoRA rank that can add capacity to a model with these ``config.json`` values: its hidden size.

    A rank-r adapter on an (in x out) matrix adds a matrix of rank min(r, in, out), so a rank above the smaller
    side adds parameters and nothing else. Every matrix LoRA adapts in a decoder layer (the attention and MLP
    projections, the experts) reads or writes the hidden state, or sits between two narrower ones (MLA's
    ``q_b_proj`` / ``kv_b_proj`` after their low-rank ``*_a_proj``), so none has a smaller side above the hidden
    size. None when the config does not say it.

    >>> largest_useful_rank({"hidden_size": 64})
    64
    >>> largest_useful_rank({"text_config": {"hidden_size": 32}})
    32
    """
    hidden = _text_config(values).get("hidden_size")
    return hidden if isinstance(hidden, int) and hidden > 0 else None


def context_length(values: dict[str, Any]) -> int | None:
    """The positions a model with these ``config.json`` values places: ``max_position_embeddings``, or what a
    rope scaling with a stated factor extends it to (factor x ``original_max_position_embeddings``); None when
    the config does not say it, or its rope scaling has no stated bound (dynamic NTK).

    >>> context_length({"max_position_embeddings": 4096})
    4096
    >>> context_length({"max_position_embeddings": 32768, "rope_scaling": {"rope_type": "yarn", "factor": 4.0,
    ...                 "original_max_position_embeddings": 32768}})
    131072
    """
    text = _text_config(values)
    positions = text.get("max_position_embeddings")
    if not isinstance(positions, int) or positions <= 0:
        return None
    rope = text.get("rope_scaling") or text.get("rope_parameters") or {}
    if not isinstance(rope, dict):
        return positions
    if (rope.get("rope_type") or rope.get("type")) in _OPEN_ENDED_ROPE:
        return None
    factor, original = rope.get("factor"), rope.get("original_max_position_embeddings")
    if isinstance(factor, (int, float)) and isinstance(original, int) and factor > 1:
        return max(positions, int(factor * original))
    return positions


def lora_scale_problem(cfg: DsftConfig) -> str | None:
    """``lora.alpha`` against ``lora.r``: a scale above :data:`MAX_LORA_SCALE` cannot be meant (it needs no model)."""
    lora = cfg.lora
    scale = lora.alpha / (math.sqrt(lora.r) if lora.use_rslora else lora.r)
    if cfg.train.method == "full" or scale <= MAX_LORA_SCALE:
        return None
    ratio = "alpha / sqrt(r)" if lora.use_rslora else "alpha / r"
    most = math.floor(MAX_LORA_SCALE * (math.sqrt(lora.r) if lora.use_rslora else lora.r))
    return (f"lora.alpha={lora.alpha}: scales each adapter update by {ratio} = {scale:.3g}, which diverges at the first "
            f"steps; the usual scale is 0.5 to 4 (alpha = r to 2r): set lora.alpha to at most {most} for lora.r={lora.r}")


def new_tokens_problem(setting: str, positions: int, model: str) -> str:
    """A generation length (``setting``: ``KEY=VALUE`` or ``--FLAG VALUE`` as the user wrote it) beyond the ``positions`` the model places: the prompt and
    the answer share them. A model that never emits EOS (a barely trained one) generated ``eval.max_new_tokens=2**63``
    tokens for ever, deaf to Ctrl-C (between steps only)."""
    return (f"{setting}: above the {positions} positions {model} places (max_position_embeddings and rope "
            f"scaling in its config), which the prompt and the answer share: set it to at most {positions}")


def model_size_problems(cfg: DsftConfig) -> list[str]:
    """``lora.r``, ``eval.max_new_tokens`` and ``train.max_seq_len`` against the model's config, and ``lora.alpha``
    against ``lora.r``; one line each naming its key. Nothing of the model is checked when its config cannot be known
    here."""
    problems = [problem for problem in (lora_scale_problem(cfg),) if problem]
    values = peek_model_config(cfg.model.name_or_path)
    if values is None:
        return problems
    model = cfg.model.name_or_path
    rank = largest_useful_rank(values)
    if cfg.train.method != "full" and rank is not None and cfg.lora.r > rank:
        problems.append(f"lora.r={cfg.lora.r}: above the hidden size of {model} ({rank}, hidden_size in its config); "
                        f"no matrix LoRA adapts there has a smaller side above {rank}, so a higher rank adds "
                        f"parameters and no capacity: set lora.r to at most {rank}")
    positions = context_length(values)
    if positions is not None and cfg.eval.max_new_tokens > positions:
        problems.append(new_tokens_problem(f"eval.max_new_tokens={cfg.eval.max_new_tokens}", positions, model))
    if positions is not None and cfg.train.max_seq_len > positions:
        problems.append(f"train.max_seq_len={cfg.train.max_seq_len}: above the {positions} positions {model} places "
                        "(max_position_embeddings and rope scaling in its config; dsft does not extend them), and "
                        "examples up to train.max_seq_len tokens are kept: set train.max_seq_len to at most "
                        f"{positions}")
    return problems
