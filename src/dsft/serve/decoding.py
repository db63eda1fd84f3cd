"""Turn one row's generated token ids into text pieces, honouring stop strings.

Text is decoded from all the row's tokens each step and the new suffix is emitted, so multi-token
characters and tokenizers that merge spaces come out right. Two things are held back until they are
certain: a trailing U+FFFD (half of a multi-byte character) and any tail that could still become a
stop string. A stop string ends the row; it and everything after it are never emitted (OpenAI's rule).
:attr:`RowDecoder.decoded_length` counts the characters the tokens so far certainly decode to, held back or not:
where the next token's text starts (logprobs' ``text_offset``).
"""

from __future__ import annotations

from typing import Any

from dsft.text_encoding import REPLACEMENT_CHAR, without_cut_character


class RowDecoder:
    """Incremental detokenizer for one request.

    >>> class Tok:
    ...     def decode(self, ids, skip_special_tokens=True): return "".join(chr(i) for i in ids)
    >>> row = RowDecoder(Tok(), stop=["cd"])
    >>> [row.push(ord(c)) for c in "abcde"], row.stopped, row.text
    (['', 'a', 'b', '', ''], True, 'ab')
    """

    def __init__(self, tokenizer: Any, stop: list[str] | None = None) -> None:
        self.tokenizer = tokenizer
        self.stop = list(stop or [])
        self.token_ids: list[int] = []
        self.text = ""  # emitted so far
        self.stopped = False
        self.decoded_length = 0  # characters of the whole decoding, less a cut character at its end
        self._hold = max((len(s) for s in self.stop), default=1) - 1

    def push(self, token_id: int) -> str:
        """Add a generated token; return the newly certain text (possibly empty)."""
        self.token_ids.append(token_id)
        full = self.tokenizer.decode(self.token_ids, skip_special_tokens=True)
        self.decoded_length = len(without_cut_character(full))
        if self._find_stop(full):
            return self._emit_up_to(full, self._stop_at)
        safe_end = len(full) - self._hold
        while safe_end > len(self.text) and full[safe_end - 1] == REPLACEMENT_CHAR:
            safe_end -= 1
        return self._emit_up_to(full, safe_end)

    def flush(self) -> str:
        """At the end of generation: release whatever was held back (no stop string matched), except the half of a
        multi-byte character the generation ended inside (:func:`dsft.text_encoding.without_cut_character`)."""
        if self.stopped:
            return ""
        full = without_cut_character(self.tokenizer.decode(self.token_ids, skip_special_tokens=True))
        return self._emit_up_to(full, len(full))

    def _find_stop(self, full: str) -> bool:
        # Only the part not yet emitted (plus the held tail) can hold a new match.
        search_from = max(0, len(self.text) - self._hold)
        hits = [i for i in (full.find(s, search_from) for s in self.stop) if i >= 0]
        if hits:
            self.stopped = True
            self._stop_at = min(hits)
        return self.stopped

    def _emit_up_to(self, full: str, end: int) -> str:
        if end <= len(self.text) or not full.startswith(self.text):
            # A later token rewrote earlier text (rare with byte-level BPE): keep what was sent.
            return ""
        piece = full[len(self.text):end]
        self.text += piece
        return piece
