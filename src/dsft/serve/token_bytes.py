"""The bytes a token stands for: OpenAI's logprobs ``bytes``.

Byte-level BPE (DeepSeek's, Qwen's, Llama 3's tokenizers) splits many Chinese characters and emoji into two or
three tokens, each holding some of the character's UTF-8 bytes. Such a token decodes alone to U+FFFD, so the
UTF-8 of its decoding says nothing; its own bytes, joined with its neighbours', give the character back, which
is what OpenAI's ``bytes`` is for. They are read from the token's vocabulary entry: a byte-level entry spells
each byte as one printable character (GPT-2's table, below), a SentencePiece byte-fallback entry is ``<0xE9>``.
Added and special tokens, and tokenizers of other kinds, have their text's UTF-8.
"""

from __future__ import annotations

import json
import re
from typing import Any


def _byte_level_alphabet() -> dict[str, int]:
    """GPT-2's ``bytes_to_unicode`` table, inverted: the printable character that stands for each byte -> the byte.

    >>> table = _byte_level_alphabet(); table["A"], table["Ġ"], len(table)
    (65, 32, 256)
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shifted = [b for b in range(256) if b not in printable]
    return {**{chr(b): b for b in printable}, **{chr(256 + i): b for i, b in enumerate(shifted)}}


_BYTE_LEVEL = _byte_level_alphabet()
_FALLBACK_BYTE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def _decoder_types(tokenizer: Any) -> set[str]:
    """The kinds of decoder step a fast tokenizer runs (``ByteLevel``, ``ByteFallback``...); empty when unknown."""
    decoder = getattr(getattr(tokenizer, "backend_tokenizer", None), "decoder", None)
    if decoder is None:
        return set()
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            found.add(str(node.get("type")))
            for child in node.get("decoders") or []:
                walk(child)

    walk(json.loads(decoder.__getstate__()))
    return found


class TokenBytes:
    """``token_bytes(token_id, text)``: the bytes ``token_id`` stands for, ``text`` being its own decoding (with the
    DeepSeek tokenizer, 龘's two tokens give ``b"\\xe9\\xbe"`` and ``b"\\x98"``, both decoding to U+FFFD)."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        kinds = _decoder_types(tokenizer)
        self._byte_level = "ByteLevel" in kinds
        self._byte_fallback = "ByteFallback" in kinds
        # Added tokens (specials, <think>) are stored as their text, not in the byte alphabet.
        self._added = {*(getattr(tokenizer, "added_tokens_decoder", None) or {}),
                       *getattr(tokenizer, "all_special_ids", ())}

    def __call__(self, token_id: int, text: str) -> bytes:
        if token_id not in self._added and (self._byte_level or self._byte_fallback):
            entry = self._tokenizer.convert_ids_to_tokens(token_id)
            if isinstance(entry, str):
                fallback = _FALLBACK_BYTE.fullmatch(entry) if self._byte_fallback else None
                if fallback:
                    return bytes([int(fallback.group(1), 16)])
                if self._byte_level and all(c in _BYTE_LEVEL for c in entry):
                    return bytes(_BYTE_LEVEL[c] for c in entry)
        return text.encode("utf-8")
