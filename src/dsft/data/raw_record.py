"""The raw record every reader yields: a parsed value or the reason it could not be read, and where it was read.

>>> unparsed("a.jsonl", "line 2", "malformed JSON", "x" * (MAX_RAW_CHARS + 1)).raw_cut
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Characters of an unparsable record's source text kept for rejects.jsonl (``raw``; ``raw_cut`` says cut).
MAX_RAW_CHARS = 2000


@dataclass
class RawRecord:
    """One record as read: the parsed value (``data``) or the reason it could not be read (``error``).

    A record that could not be parsed keeps its source text in ``raw`` (at most :data:`MAX_RAW_CHARS`
    characters; ``raw_cut`` when there was more; undecodable bytes as lone surrogates).
    """

    source: str
    location: str
    data: Any = None
    error: str | None = None
    raw: str | None = None
    raw_cut: bool = False

    @property
    def where(self) -> str:
        """``file:line`` for line-based files, ``file row N`` / ``file item N`` otherwise."""
        if self.location.startswith("line "):
            return f"{self.source}:{self.location[5:]}"
        return f"{self.source} {self.location}"


def unparsed(source: str, location: str, error: str, text: str) -> RawRecord:
    """A record that could not be parsed, with the start of its source text."""
    return RawRecord(source, location, error=error, raw=text[:MAX_RAW_CHARS], raw_cut=len(text) > MAX_RAW_CHARS)
