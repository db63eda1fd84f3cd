"""Per-row sampling for a batch: each request keeps its own temperature, top_p, top_k, min_p, penalties and seed.

Rows of one batch may ask for different settings, so temperature and top_p are vectorised over the batch
with one value per row, and each row draws from its own ``torch.Generator`` (a seeded request gives the
same tokens whatever else shares its batch). A row that asks for ``top_k``, ``min_p`` or a repetition,
presence or frequency penalty has its logits shaped alone (:mod:`dsft.serve.logits_processing`, in vLLM's order).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from dsft.serve.logits_processing import (
    apply_occurrence_penalties, apply_repetition_penalty, keep_min_p, keep_top_k,
)

# Below this temperature a row is decoded greedily (dividing by ~0 would overflow).
GREEDY_TEMPERATURE = 1e-5
# Tokens examined before falling back to a full sort of the vocabulary (see _sample_row).
NUCLEUS_CANDIDATES = 1024


@dataclass
class SamplingParams:
    """How one request samples. ``max_tokens`` counts generated tokens, the EOS included.

    ``top_k`` 0 keeps every token; ``min_p`` 0, ``repetition_penalty`` 1 and the other penalties 0 change nothing.
    """

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    top_k: int = 0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logprobs: int | None = None  # alternatives to return per token with its logprob; None: no logprobs

    @property
    def greedy(self) -> bool:
        return self.temperature < GREEDY_TEMPERATURE

    @property
    def shapes_logits(self) -> bool:
        """Whether this row's logits need more than temperature and top_p."""
        return (self.top_k > 0 or self.min_p > 0.0 or self.repetition_penalty != 1.0
                or self.presence_penalty != 0.0 or self.frequency_penalty != 0.0)

    def make_generator(self) -> torch.Generator:
        """A CPU generator seeded from ``seed`` (or from fresh entropy when None)."""
        generator = torch.Generator()
        if self.seed is None:
            generator.seed()
        else:
            generator.manual_seed(self.seed)
        return generator


def nucleus(sorted_probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Zero the tail of descending ``sorted_probs`` outside the smallest prefix whose mass reaches ``top_p``.

    The result is unnormalised (``torch.multinomial`` normalises). The most likely token always survives.

    >>> nucleus(torch.tensor([0.5, 0.3, 0.2]), 0.7).tolist()
    [0.5, 0.30000001192092896, 0.0]
    >>> nucleus(torch.tensor([0.5, 0.3, 0.2]), 5e-324).tolist()
    [0.5, 0.0, 0.0]
    """
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
    outside = mass_before >= top_p
    # A top_p below float32's smallest step (5e-324) compares as 0 and would drop every token.
    outside[..., 0] = False
    return sorted_probs.masked_fill(outside, 0.0)


def _sample_row(
    scaled: torch.Tensor, candidates: tuple[torch.Tensor, torch.Tensor], top_p: float, generator: torch.Generator
) -> torch.Tensor:
    """Draw one token from one row of temperature-scaled logits [vocab] with nucleus ``top_p``.

    ``candidates`` are the row's top-k (probabilities, ids), already sorted. When they hold at least
    ``top_p`` of the mass the nucleus lies inside them and sampling among them is exact; only flat
    distributions need the full sort over the vocabulary.
    """
    top_probs, top_ids = candidates
    if top_p >= 1.0:  # no nucleus: no sort needed
        return torch.multinomial(scaled.softmax(dim=-1), 1, generator=generator)[0]
    if float(top_probs.sum()) >= top_p:
        choice = torch.multinomial(nucleus(top_probs, top_p), 1, generator=generator)
        return top_ids[choice[0]]
    sorted_logits, order = torch.sort(scaled, descending=True)
    choice = torch.multinomial(nucleus(sorted_logits.softmax(dim=-1), top_p), 1, generator=generator)
    return order[choice[0]]


def _sample_shaped_row(
    logits: torch.Tensor, params: SamplingParams, seen: Sequence[Sequence[int]], generator: torch.Generator
) -> torch.Tensor:
    """Draw one token from one row of raw logits [vocab] with its penalties, temperature, min_p, top_k and top_p.

    ``seen`` is the row's (prompt ids, generated ids).
    """
    prompt_ids, generated_ids = seen
    logits = apply_repetition_penalty(logits, params.repetition_penalty, [*prompt_ids, *generated_ids])
    logits = apply_occurrence_penalties(logits, params.presence_penalty, params.frequency_penalty, generated_ids)
    if params.greedy:
        return logits.argmax()
    # A penalty near 0 can push a logit to +inf; the largest float keeps the softmax defined (inf - inf is NaN).
    scaled = (logits / params.temperature).clamp(max=torch.finfo(logits.dtype).max)
    scaled = keep_top_k(keep_min_p(scaled, params.min_p), params.top_k)
    top_logits, top_ids = scaled.topk(min(NUCLEUS_CANDIDATES, scaled.shape[-1]))
    top_probs = (top_logits - scaled.logsumexp(dim=-1)).exp()
    return _sample_row(scaled, (top_probs, top_ids), params.top_p, generator)


def sample_next_tokens(
    logits: torch.Tensor, params: list[SamplingParams], generators: list[torch.Generator],
    on_row_error: Callable[[int, Exception], None] | None = None,
    seen: Sequence[Sequence[Sequence[int]]] | None = None,
) -> torch.Tensor:
    """Choose one token per row from last-position ``logits`` [batch, vocab]; returns [batch] ids.

    ``seen`` holds each row's (prompt ids, generated ids), which the penalties read (none: empty).
    With ``on_row_error`` a row whose sampling raises is reported there (and given its greedy token)
    instead of failing the whole batch; the other rows draw exactly as they would otherwise.
    """
    # Sample on the CPU: the per-row generators live there, and one row of logits is small.
    logits = logits.float().cpu()
    greedy_choice = logits.argmax(dim=-1)
    if all(p.greedy and not p.shapes_logits for p in params):
        return greedy_choice
    temperature = torch.tensor([max(p.temperature, GREEDY_TEMPERATURE) for p in params]).unsqueeze(-1)
    scaled = logits / temperature
    top_logits, top_ids = scaled.topk(min(NUCLEUS_CANDIDATES, scaled.shape[-1]), dim=-1)
    top_probs = (top_logits - scaled.logsumexp(dim=-1, keepdim=True)).exp()
    chosen = []
    for row, p in enumerate(params):
        if p.greedy and not p.shapes_logits:
            chosen.append(greedy_choice[row])
            continue
        try:
            if p.shapes_logits:
                chosen.append(_sample_shaped_row(logits[row], p, seen[row] if seen else ((), ()), generators[row]))
            else:
                chosen.append(_sample_row(scaled[row], (top_probs[row], top_ids[row]), p.top_p, generators[row]))
        except Exception as exc:  # noqa: BLE001 - handed to the caller, which fails this row alone
            if on_row_error is None:
                raise
            on_row_error(row, exc)
            chosen.append(greedy_choice[row])
    return torch.stack(chosen)
