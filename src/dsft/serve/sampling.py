"""Per-row sampling for a batch: each request keeps its own temperature, top_p and seed.

Rows of one batch may ask for different settings, so the transforms are vectorised over the batch
with one value per row, and each row draws from its own ``torch.Generator`` (a seeded request gives the
same tokens whatever else shares its batch).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

# Below this temperature a row is decoded greedily (dividing by ~0 would overflow).
GREEDY_TEMPERATURE = 1e-5


@dataclass
class SamplingParams:
    """How one request samples. ``max_tokens`` counts generated tokens, the EOS included."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature < GREEDY_TEMPERATURE

    def make_generator(self) -> torch.Generator:
        """A CPU generator seeded from ``seed`` (or from fresh entropy when None)."""
        generator = torch.Generator()
        if self.seed is None:
            generator.seed()
        else:
            generator.manual_seed(self.seed)
        return generator


def top_p_filter(logits: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Set to -inf every token outside the smallest set whose probability reaches ``top_p`` (per row).

    >>> top_p_filter(torch.tensor([[2.0, 1.0, 0.0]]), torch.tensor([0.5])).isinf().tolist()
    [[False, True, True]]
    """
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    # Mass strictly before each token: a token is kept while the mass before it is below top_p,
    # so the most likely token always survives.
    mass_before = probs.cumsum(dim=-1) - probs
    drop_sorted = mass_before >= top_p.unsqueeze(-1)
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def sample_next_tokens(
    logits: torch.Tensor, params: list[SamplingParams], generators: list[torch.Generator]
) -> torch.Tensor:
    """Choose one token per row from last-position ``logits`` [batch, vocab]; returns [batch] ids."""
    # Sample on the CPU: the per-row generators live there, and one row of logits is small.
    logits = logits.float().cpu()
    greedy_choice = logits.argmax(dim=-1)
    if all(p.greedy for p in params):
        return greedy_choice
    temperature = torch.tensor([max(p.temperature, GREEDY_TEMPERATURE) for p in params])
    top_p = torch.tensor([p.top_p for p in params])
    probs = top_p_filter(logits / temperature.unsqueeze(-1), top_p).softmax(dim=-1)
    chosen = []
    for row, (p, generator) in enumerate(zip(params, generators)):
        if p.greedy:
            chosen.append(greedy_choice[row])
        else:
            chosen.append(torch.multinomial(probs[row], 1, generator=generator)[0])
    return torch.stack(chosen)
