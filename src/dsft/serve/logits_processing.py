"""One row's logits transforms before a token is drawn: penalties, then min_p and top_k.

The order is vLLM's sampler's: the repetition, frequency and presence penalties on the raw logits (so
they steer greedy decoding too), then temperature (:mod:`dsft.serve.sampling`), then ``min_p``, then ``top_k``, then ``top_p``. A
neutral value (repetition penalty 1, other penalties 0, ``top_k`` 0, ``min_p`` 0) returns the logits untouched. Removed tokens get
``-inf``, so a softmax gives them probability 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def apply_repetition_penalty(logits: torch.Tensor, penalty: float, seen_ids: Sequence[int]) -> torch.Tensor:
    """Make every token of ``seen_ids`` (the prompt and the output so far) less likely, by CTRL's rule as vLLM
    and transformers apply it: a positive logit is divided by ``penalty``, a negative one multiplied.

    >>> apply_repetition_penalty(torch.tensor([2.0, -2.0, 1.0]), 2.0, [0, 1, 0]).tolist()
    [1.0, -4.0, 1.0]
    """
    if penalty == 1.0 or not seen_ids:
        return logits
    ids = torch.tensor(sorted(set(seen_ids)), dtype=torch.long)
    picked = logits[ids]
    out = logits.clone()
    out[ids] = torch.where(picked > 0, picked / penalty, picked * penalty)
    return out


def apply_occurrence_penalties(
    logits: torch.Tensor, presence: float, frequency: float, generated_ids: Sequence[int]
) -> torch.Tensor:
    """OpenAI's presence and frequency penalties over the tokens generated so far (the prompt not counted):
    each token's logit loses ``frequency`` times its count, and ``presence`` once if it occurs at all.

    >>> apply_occurrence_penalties(torch.tensor([1.0, 1.0, 1.0]), 0.5, 0.25, [0, 0, 1]).tolist()
    [0.0, 0.25, 1.0]
    """
    if (presence == 0.0 and frequency == 0.0) or not generated_ids:
        return logits
    counts = torch.bincount(torch.tensor(generated_ids, dtype=torch.long), minlength=logits.shape[-1])
    counts = counts[: logits.shape[-1]].to(logits.dtype)
    return logits - frequency * counts - presence * (counts > 0).to(logits.dtype)


def keep_min_p(logits: torch.Tensor, min_p: float) -> torch.Tensor:
    """Drop the tokens whose probability is below ``min_p`` times the most likely token's.

    >>> keep_min_p(torch.tensor([2.0, 1.0, -3.0]), 0.2).tolist()
    [2.0, 1.0, -inf]
    """
    if min_p <= 0.0:
        return logits
    probs = logits.softmax(dim=-1)
    return logits.masked_fill(probs < min_p * probs.max(), float("-inf"))


def keep_top_k(logits: torch.Tensor, top_k: int) -> torch.Tensor:
    """Drop every token below the ``top_k`` most likely (tokens tied with the k-th stay); ``top_k`` 0: keep all.

    >>> keep_top_k(torch.tensor([0.5, 3.0, 1.0, 2.0]), 2).tolist()
    [-inf, 3.0, -inf, 2.0]
    """
    if top_k <= 0 or top_k >= logits.shape[-1]:
        return logits
    kth = logits.topk(top_k).values[-1]
    return logits.masked_fill(logits < kth, float("-inf"))
