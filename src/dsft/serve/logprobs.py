"""Log-probabilities of generated tokens, in OpenAI's chat shape and its legacy completions shape.

The values are the model's own, as vLLM returns them by default (its ``raw_logprobs`` mode): the log-softmax
of the raw logits, before penalties, temperature, ``min_p``, ``top_k`` and ``top_p`` shaped the distribution
the token was drawn from. A request sampled at temperature 1.5 is shown how likely the model found each
token, not how likely the sampler was to draw it. There is one entry per generated token, as
``completion_tokens`` counts them: the EOS that ended the reply and the tokens of a stop string included.
A token's text is its own decoding (``tokenizer.decode([id])``, special tokens written out), U+FFFD for a token
holding only part of a multi-byte character; ``bytes`` is what the token stands for (:mod:`dsft.serve.token_bytes`),
so the bytes of a character's tokens join into its UTF-8. The legacy shape has no ``bytes``: there such a token is
named by its bytes, as OpenAI's legacy API names it (``bytes:\\xe9\\xbe``, :func:`legacy_token`).
``text_offset`` is where the token starts in the reply's text, in characters (:class:`dsft.serve.decoding.RowDecoder`
counts them): the tokens of one character all start where the character does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from dsft.serve.token_bytes import TokenBytes

if TYPE_CHECKING:  # annotations only: serve's flag checks import this module (MAX_TOP_LOGPROBS) before torch loads
    import torch

# JSON has no -Infinity; vLLM writes a token the model rules out (a logit of -inf) with this logprob.
LOGPROB_FLOOR = -9999.0
# The most alternatives a request may ask for per token (OpenAI's limit, vLLM's default --max-logprobs).
MAX_TOP_LOGPROBS = 20


class Candidate(NamedTuple):
    """A token at one position: its text, its logprob and the bytes it stands for (OpenAI's ``bytes``)."""

    token: str
    logprob: float
    raw: bytes


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token, the ``top`` most likely tokens at its position (most likely first) and where it starts in
    the reply's text, in characters."""

    chosen: Candidate
    top: tuple[Candidate, ...] = ()
    text_offset: int = 0


def token_logprob(
    logits: torch.Tensor, token_id: int, alternatives: int, tokenizer: Any, token_bytes: TokenBytes
) -> TokenLogprob:
    """The entry of ``token_id`` drawn from one row of raw last-position ``logits`` [vocab], with the
    ``alternatives`` most likely tokens (``text_offset`` left at 0: the caller knows the text)."""
    logprobs = logits.float().log_softmax(dim=-1).cpu()
    top_values, top_ids = logprobs.topk(alternatives)
    ids = [token_id, *top_ids.tolist()]
    texts = tokenizer.batch_decode([[i] for i in ids])
    candidates = [Candidate(text, _finite(logprobs[i]), token_bytes(i, text)) for i, text in zip(ids, texts)]
    return TokenLogprob(candidates[0], tuple(candidates[1:]))


def _finite(value: torch.Tensor) -> float:
    return max(float(value), LOGPROB_FLOOR)


def _openai(candidate: Candidate) -> dict[str, Any]:
    return {"token": candidate.token, "logprob": candidate.logprob, "bytes": list(candidate.raw)}


def chat_logprobs(entries: Sequence[TokenLogprob]) -> dict[str, Any]:
    """OpenAI's ``choices[i].logprobs`` of a chat answer (or of one streamed chunk).

    >>> hi, half = Candidate("Hi", -0.5, b"Hi"), Candidate("\\ufffd", -1.5, bytes([233, 190]))
    >>> chat_logprobs([TokenLogprob(hi, (hi, half))])["content"][0]["top_logprobs"]
    [{'token': 'Hi', 'logprob': -0.5, 'bytes': [72, 105]}, {'token': '�', 'logprob': -1.5, 'bytes': [233, 190]}]
    """
    return {"content": [
        {**_openai(e.chosen), "top_logprobs": [_openai(c) for c in e.top]} for e in entries
    ], "refusal": None}


def legacy_token(candidate: Candidate) -> str:
    """A token as the legacy completions ``logprobs`` name it: its text where its bytes are whole UTF-8 characters,
    else ``bytes:`` and each of its bytes as ``\\xNN`` (OpenAI's legacy form; the bytes are the chat shape's
    ``bytes``). Each U+FFFD would say nothing, and the alternatives of one position would collide as keys.

    >>> legacy_token(Candidate("\ufffd", -1.5, bytes([233, 190]))), legacy_token(Candidate(" 是", -0.1, " 是".encode()))
    ('bytes:\\\\xe9\\\\xbe', ' 是')
    """
    try:
        candidate.raw.decode("utf-8")
    except UnicodeDecodeError:
        return "bytes:" + "".join(f"\\x{byte:02x}" for byte in candidate.raw)
    return candidate.token


def completion_logprobs(entries: Sequence[TokenLogprob]) -> dict[str, Any]:
    """The legacy completions ``logprobs``: tokens, their logprobs, a ``{token: logprob}`` of the alternatives (the
    chosen token added when it is not among them, as the legacy API did) and where each token starts in the text;
    tokens are named by :func:`legacy_token`.

    >>> a, b, bc = Candidate("a", -0.1, b"a"), Candidate("b", -0.05, b"b"), Candidate("bc", -2.0, b"bc")
    >>> completion_logprobs([TokenLogprob(a, (b,), text_offset=3), TokenLogprob(bc, text_offset=4)])
    {'tokens': ['a', 'bc'], 'token_logprobs': [-0.1, -2.0], 'top_logprobs': [{'b': -0.05, 'a': -0.1}, {'bc': -2.0}], 'text_offset': [3, 4]}
    """
    def alternatives(entry: TokenLogprob) -> dict[str, float]:
        top = {legacy_token(c): c.logprob for c in entry.top}
        chosen = legacy_token(entry.chosen)
        return top if chosen in top else {**top, chosen: entry.chosen.logprob}

    return {
        "tokens": [legacy_token(e.chosen) for e in entries],
        "token_logprobs": [e.chosen.logprob for e in entries],
        "top_logprobs": [alternatives(e) for e in entries],
        "text_offset": [e.text_offset for e in entries],
    }
