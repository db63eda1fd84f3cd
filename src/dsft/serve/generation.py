"""The batched token loop: left-padded prompts, one forward per step with the KV cache.

A custom loop (rather than ``model.generate`` with a streamer) because one batch carries requests with
different sampling settings, stop strings and lengths, and each must stream its own text as it comes.
Finished rows keep riding along (their tokens are ignored) until the whole batch is done. A failure
that belongs to one row (its generator, its sampling, its decoding) ends that row alone with
``finish_reason="error"``; the other rows of the batch go on.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from dsft.serve.decoding import RowDecoder
from dsft.serve.logprobs import TokenLogprob, token_logprob
from dsft.serve.sampling import SamplingParams, sample_next_tokens
from dsft.serve.token_bytes import TokenBytes


@dataclass
class GenerationRequest:
    """One prompt (token ids, special tokens already in place) and how to sample its continuation."""

    prompt_ids: list[int]
    params: SamplingParams
    adapter: str | None = None
    cancelled: bool = False  # set from another thread when the client goes away


@dataclass
class RowResult:
    """What a row produced. ``completion_tokens`` counts generated tokens, the final EOS included; ``logprobs``
    holds one entry per generated token when the request asked for them (else None)."""

    text: str = ""
    completion_tokens: int = 0
    finish_reason: str | None = None
    token_ids: list[int] = field(default_factory=list)
    error: Exception | None = None  # set with finish_reason "error": why this row alone failed
    logprobs: list[TokenLogprob] | None = None


# emit(row_index, text_piece, finished_result_or_None, the_new_token's_logprob_or_None): once per generated token
# (the piece may be empty while text is held back), and once more for a row that fails or is cancelled.
EmitFn = Callable[[int, str, "RowResult | None", "TokenLogprob | None"], None]


def left_pad(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack prompts right-aligned: returns ``(input_ids, attention_mask)``, both [batch, longest].

    >>> ids, mask = left_pad([[5, 6], [7]], pad_id=0)
    >>> ids.tolist(), mask.tolist()
    ([[5, 6], [0, 7]], [[1, 1], [0, 1]])
    """
    longest = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), longest), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, longest - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
        mask[row, longest - len(prompt):] = 1
    return ids, mask


@torch.inference_mode()
def generate_batch(
    model: Any, tokenizer: Any, requests: list[GenerationRequest], eos_ids: set[int], emit: EmitFn
) -> list[RowResult]:
    """Generate for every request at once, calling ``emit`` with each row's new text as it appears.

    Position ids count only real tokens, so a left-padded row sees the same positions as it would alone.
    """
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos_ids)
    input_ids, attention_mask = (t.to(device) for t in left_pad([r.prompt_ids for r in requests], pad_id))
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    params = [r.params for r in requests]
    results = [RowResult(logprobs=[] if p.logprobs is not None else None) for p in params]

    def fail(row: int, exc: Exception) -> None:
        if results[row].finish_reason is None:
            results[row].finish_reason, results[row].error = "error", exc
            emit(row, "", results[row], None)

    generators = [_row_generator(row, p, fail) for row, p in enumerate(params)]
    token_bytes = TokenBytes(tokenizer)  # what logprobs' ``bytes`` say
    decoders = [RowDecoder(tokenizer, p.stop) for p in params]
    seen = [(r.prompt_ids, result.token_ids) for r, result in zip(requests, results)]  # grows as rows generate
    past, cache_name = None, cache_argument(model)
    for _ in range(max(p.max_tokens for p in params)):
        out = model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
            use_cache=True, **{cache_name: past},
        )
        past = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
        next_tokens = sample_next_tokens(out.logits[:, -1, :], params, generators, on_row_error=fail, seen=seen)
        for row, token in enumerate(next_tokens.tolist()):
            if results[row].finish_reason is None:
                try:
                    alternatives = params[row].logprobs
                    logprob = None if alternatives is None else token_logprob(
                        out.logits[row, -1, :], token, alternatives, tokenizer, token_bytes)
                    _advance_row(row, (token, logprob), requests[row], decoders[row], results[row], eos_ids, emit)
                except Exception as exc:  # noqa: BLE001 - this row's decoding failed; the others go on
                    fail(row, exc)
        if all(r.finish_reason is not None for r in results):
            break
        input_ids = next_tokens.view(-1, 1).to(device)
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones((len(requests), 1))], dim=-1)
        position_ids = position_ids[:, -1:] + 1
    return results


def cache_argument(model: Any) -> str:
    """The name ``model.forward`` takes the KV cache under: ``cache`` since transformers 5.24 (the old
    ``past_key_values`` still works there but warns on every call), ``past_key_values`` in remote-code models."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model  # a peft model: its base
    return "cache" if "cache" in inspect.signature(inner.forward).parameters else "past_key_values"


def _row_generator(row: int, params: SamplingParams, fail: Callable[[int, Exception], None]) -> torch.Generator:
    """The row's seeded generator; a seed torch refuses fails that row only (it then samples unseeded)."""
    try:
        return params.make_generator()
    except Exception as exc:  # noqa: BLE001 - e.g. a seed outside torch's 64-bit range
        fail(row, exc)
        return torch.Generator()


def _advance_row(
    row: int, sampled: tuple[int, TokenLogprob | None], request: GenerationRequest, decoder: RowDecoder,
    result: RowResult, eos_ids: set[int], emit: EmitFn,
) -> None:
    """Record one sampled token (and its logprob entry) for a live row and report new text / the finish."""
    if request.cancelled:
        result.finish_reason = "abort"
        emit(row, "", result, None)
        return
    token, logprob = sampled
    if logprob is not None:
        logprob = replace(logprob, text_offset=decoder.decoded_length)
    result.completion_tokens += 1
    result.token_ids.append(token)
    if result.logprobs is not None and logprob is not None:
        result.logprobs.append(logprob)
    piece = ""
    if token in eos_ids:
        result.finish_reason = "stop"
    else:
        piece = decoder.push(token)
        if decoder.stopped:
            result.finish_reason = "stop"
        elif result.completion_tokens >= request.params.max_tokens:
            result.finish_reason = "length"
    if result.finish_reason is not None:
        piece += decoder.flush()
    result.text = decoder.text
    emit(row, piece, result if result.finish_reason is not None else None, logprob)
