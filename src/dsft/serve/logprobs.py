"""Log-probabilities of generated tokens, in OpenAI's chat shape and its legacy completions shape.

The values are the model's own, as vLLM returns them by default (its ``raw_logprobs`` mode): the log-softmax
of the raw logits, before penalties, temperature, ``min_p``, ``top_k`` and ``top_p`` shaped the distribution
the token was drawn from. A request sampled at temperature 1.5 is shown how likely the model found each
token, not how likely the sampler was to draw it. There is one entry per generated token, as
``completion_tokens`` counts them: the EOS that ended the reply and the tokens of a stop string included.
A token's text is its own decoding (``tokenizer.decode([id])``, special tokens written out); ``bytes`` is
that text's UTF-8, so a token holding part of a multi-byte character reads as U+FFFD.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: serve's flag checks import this module (MAX_TOP_LOGPROBS) before torch loads
    import torch

# JSON has no -Infinity; vLLM writes a token the model rules out (a logit of -inf) with this logprob.
LOGPROB_FLOOR = -9999.0
# The most alternatives a request may ask for per token (OpenAI's limit, vLLM's default --max-logprobs).
MAX_TOP_LOGPROBS = 20


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token: its text, its logprob, and the ``top`` most likely tokens, most likely first."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


def token_logprob(logits: torch.Tensor, token_id: int, alternatives: int, tokenizer: Any) -> TokenLogprob:
    """The entry of ``token_id`` drawn from one row of raw last-position ``logits`` [vocab], with the
    ``alternatives`` most likely tokens."""
    logprobs = logits.float().log_softmax(dim=-1).cpu()
    top_values, top_ids = logprobs.topk(alternatives)
    texts = tokenizer.batch_decode([[token_id], *([i] for i in top_ids.tolist())])
    return TokenLogprob(texts[0], _finite(logprobs[token_id]), tuple(zip(texts[1:], map(_finite, top_values))))


def _finite(value: torch.Tensor) -> float:
    return max(float(value), LOGPROB_FLOOR)


def _utf8(text: str) -> list[int]:
    return list(text.encode("utf-8"))


def chat_logprobs(entries: Sequence[TokenLogprob]) -> dict[str, Any]:
    """OpenAI's ``choices[i].logprobs`` of a chat answer (or of one streamed chunk).

    >>> chat_logprobs([TokenLogprob("Hi", -0.5, (("Hi", -0.5), ("Yo", -1.5)))])["content"][0]["top_logprobs"][1]
    {'token': 'Yo', 'logprob': -1.5, 'bytes': [89, 111]}
    """
    return {"content": [
        {"token": e.token, "logprob": e.logprob, "bytes": _utf8(e.token),
         "top_logprobs": [{"token": t, "logprob": lp, "bytes": _utf8(t)} for t, lp in e.top]}
        for e in entries
    ], "refusal": None}


def completion_logprobs(entries: Sequence[TokenLogprob], text_offset: int = 0) -> dict[str, Any]:
    """The legacy completions ``logprobs``: tokens, their logprobs, a ``{token: logprob}`` of the alternatives (the
    chosen token added when it is not among them, as the legacy API did) and where each token starts in the text
    (from ``text_offset``: a stream's chunk starts where the text sent before it ends).

    >>> completion_logprobs([TokenLogprob("a", -0.1, (("b", -0.05),)), TokenLogprob("bc", -2.0)], text_offset=3)
    {'tokens': ['a', 'bc'], 'token_logprobs': [-0.1, -2.0], 'top_logprobs': [{'b': -0.05, 'a': -0.1}, {'bc': -2.0}], 'text_offset': [3, 4]}
    """
    offsets = []
    for entry in entries:
        offsets.append(text_offset)
        text_offset += len(entry.token)
    return {
        "tokens": [e.token for e in entries],
        "token_logprobs": [e.logprob for e in entries],
        "top_logprobs": [{**dict(e.top), **({} if e.token in dict(e.top) else {e.token: e.logprob})} for e in entries],
        "text_offset": offsets,
    }
