"""Batched generation for evaluation: left padding, KV cache, greedy or sampled, stop at EOS.

Prompts are rendered strings that already hold BOS (the template writes it), so they are tokenized with
``add_special_tokens=False``. Prompts are sorted by length before batching (less padding per batch)
and the results put back in input order. Greedy decoding is the default so that a comparison between
two models measures the models, not the sampler; the model's own ``generation_config`` (R1 ships
temperature 0.6) is deliberately not used.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from dsft.errors import DsftError
from dsft.text_encoding import without_cut_character


@dataclass(frozen=True)
class DecodingOptions:
    """How to decode: ``temperature`` 0 = greedy; ``top_p`` applies when sampling."""

    max_new_tokens: int = 256
    batch_size: int = 8
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    def problems(self) -> dict[str, str]:
        """What is wrong, by field name (``{"top_p": "must be in (0, 1]"}``); empty when nothing is."""
        problems = {}
        if self.max_new_tokens < 1:
            problems["max_new_tokens"] = "must be >= 1"
        if self.batch_size < 1:
            problems["batch_size"] = "must be >= 1"
        if not 0 <= self.temperature < math.inf:  # NaN decoded greedily, infinity uniformly at random
            problems["temperature"] = "must be a finite number >= 0 (0 = greedy decoding)"
        if not 0 < self.top_p <= 1:
            problems["top_p"] = "must be in (0, 1]"
        return problems

    def check(self) -> None:
        problems = self.problems()
        if problems:
            raise DsftError("invalid generation settings",
                            [f"{name}: {why}, got {getattr(self, name)}" for name, why in problems.items()])


def with_overrides(options: DecodingOptions | None, **fields: Any) -> DecodingOptions:
    """``options`` (default :class:`DecodingOptions`) with the given non-None fields replaced, checked."""
    chosen = replace(options or DecodingOptions(), **{k: v for k, v in fields.items() if v is not None})
    chosen.check()
    return chosen


@dataclass(frozen=True)
class Generation:
    """One completion: the decoded text (up to, not including, EOS), its length in tokens (EOS
    included when produced) and whether it stopped at EOS rather than at ``max_new_tokens``."""

    text: str
    new_tokens: int
    stopped_at_eos: bool
    token_ids: tuple[int, ...] = ()  # the generated ids before the stop token


@dataclass(frozen=True)
class GenerationStats:
    """Totals for a generation pass; ``tokens_per_s`` counts generated tokens over wall time."""

    prompts: int
    generated_tokens: int
    elapsed_s: float

    @property
    def tokens_per_s(self) -> float:
        return self.generated_tokens / self.elapsed_s if self.elapsed_s > 0 else 0.0


def stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """EOS ids: the tokenizer's EOS plus any the model's generation config lists (order kept, no repeats)."""
    ids: list[int] = []
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (tokenizer.eos_token_id, configured):
        for token in value if isinstance(value, list) else [value]:
            if token is not None and token not in ids:
                ids.append(int(token))
    if not ids:
        raise DsftError("the tokenizer has no EOS token, so generation could not stop; set eos_token in its config")
    return ids


class GenerationAbandoned(Exception):
    """Generation stopped before every prompt was answered because its caller asked (``should_stop``)."""


def _stopping_criteria(should_stop: Callable[[], bool] | None) -> Any:
    """``model.generate``'s stopping criteria that end every row at the next token once ``should_stop()``."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _StopWhenAsked(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            asked = should_stop is not None and should_stop()
            return torch.full((input_ids.shape[0],), asked, dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([_StopWhenAsked()] if should_stop is not None else [])


def _decode_new(tokenizer: Any, new_ids: list[int], stops: list[int]) -> Generation:
    # Cut at the first stop token; everything after it is padding. Special tokens are kept in the text
    # (skip_special_tokens would also drop <think> where a tokenizer marks it special).
    for position, token in enumerate(new_ids):
        if token in stops:
            text = tokenizer.decode(new_ids[:position], skip_special_tokens=False)
            return Generation(text, position + 1, True, tuple(new_ids[:position]))
    # Cut by the token limit, perhaps inside a multi-byte character: its half is no part of the answer scored.
    text = without_cut_character(tokenizer.decode(new_ids, skip_special_tokens=False))
    return Generation(text, len(new_ids), False, tuple(new_ids))


def _generate_batch(model: Any, tokenizer: Any, prompts: Sequence[str], options: DecodingOptions,
                    stops: list[int], should_stop: Callable[[], bool] | None = None) -> list[Generation]:
    import torch
    from transformers import GenerationConfig

    encoded = tokenizer(list(prompts), add_special_tokens=False, padding=True, return_tensors="pt")
    sampling = options.temperature > 0
    # Greedy: temperature/top_p at their neutral values, not None, so the model's own sampling defaults
    # (R1 ships 0.6 / 0.95) are overridden rather than merged in with a warning.
    config = GenerationConfig(
        max_new_tokens=options.max_new_tokens,
        do_sample=sampling,
        temperature=options.temperature if sampling else 1.0,
        top_p=options.top_p if sampling else 1.0,
        top_k=None,
        eos_token_id=stops,
        pad_token_id=tokenizer.pad_token_id,
        use_cache=True,
    )
    device = next(model.parameters()).device
    with torch.inference_mode():
        output = model.generate(
            input_ids=encoded["input_ids"].to(device),
            attention_mask=encoded["attention_mask"].to(device),
            generation_config=config,
            stopping_criteria=_stopping_criteria(should_stop),
        )
    prompt_len = encoded["input_ids"].shape[1]
    return [_decode_new(tokenizer, row[prompt_len:].tolist(), stops) for row in output]


def generate_batched(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    options: DecodingOptions | None = None,
    progress: bool = True,
    description: str = "generating",
    should_stop: Callable[[], bool] | None = None,
) -> tuple[list[Generation], GenerationStats]:
    """Generate a completion for every prompt, ``options.batch_size`` at a time, in input order.

    Shows a rich progress bar with the running tokens/s when ``progress``. The model is put in eval
    mode for the call and its previous mode restored (so a trainer can call this mid-training). Once
    ``should_stop()`` says so (asked before each batch and after each new token), generation ends at the next
    token and :class:`GenerationAbandoned` is raised: the answers so far are cut short, not results.
    """
    import torch

    options = options or DecodingOptions()
    options.check()
    stops = stop_token_ids(model, tokenizer)
    if tokenizer.pad_token_id is None:
        raise DsftError("the tokenizer has no pad token; batched generation needs one (set pad_token)")
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    results: list[Generation | None] = [None] * len(prompts)
    was_training, old_side = model.training, tokenizer.padding_side
    model.eval()
    # Left padding: every row's last prompt token sits at the same position, where generation continues.
    tokenizer.padding_side = "left"
    torch.manual_seed(options.seed)
    started, generated = time.perf_counter(), 0
    bar = _progress_bar(progress)
    try:
        task = bar.add_task(description, total=len(prompts), rate="")
        for start in range(0, len(order), options.batch_size):
            if should_stop is not None and should_stop():
                raise GenerationAbandoned(f"stopped after {start} of {len(prompts)} prompts")
            batch = order[start : start + options.batch_size]
            answers = _generate_batch(model, tokenizer, [prompts[i] for i in batch], options, stops, should_stop)
            if should_stop is not None and should_stop():
                raise GenerationAbandoned(f"stopped during prompts {start + 1}-{start + len(batch)} of {len(prompts)}")
            for index, generation in zip(batch, answers):
                results[index] = generation
                generated += generation.new_tokens
            elapsed = time.perf_counter() - started
            bar.update(task, advance=len(batch), rate=f"{generated / max(elapsed, 1e-9):.1f} tok/s")
    finally:
        bar.stop()
        tokenizer.padding_side = old_side
        model.train(was_training)
    stats = GenerationStats(len(prompts), generated, time.perf_counter() - started)
    return [r for r in results if r is not None], stats


def _progress_bar(enabled: bool, console: Any = None) -> Any:
    """A rich progress bar on a terminal; where the output is no terminal (a log file: nohup, SLURM's --output)
    a bar is drawn only once it stops, so there :class:`_LineProgress` prints as the prompts are answered."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = console if console is not None else Console()
    if enabled and not console.is_terminal:
        return _LineProgress(console)
    bar = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(), disable=not enabled, transient=False, console=console,
    )
    bar.start()
    return bar


class _LineProgress:
    """The part of rich's Progress that :func:`generate_batched` uses, as one line per tenth of the prompts."""

    def __init__(self, console: Any) -> None:
        self.console = console
        self.description, self.total, self.done, self.tenths = "", 0, 0, 0

    def add_task(self, description: str, total: int, rate: str) -> int:
        self.description, self.total = description, total
        return 0

    def update(self, task: int, advance: int, rate: str) -> None:
        self.done += advance
        tenths = self.done * 10 // max(self.total, 1)
        if tenths > self.tenths:
            self.tenths = tenths
            self.console.print(f"{self.description} {self.done}/{self.total}  {rate}", markup=False, highlight=False,
                               soft_wrap=True)

    def stop(self) -> None:
        pass
