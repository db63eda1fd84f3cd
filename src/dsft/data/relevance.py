"""Relevance to in-domain references (TF-IDF) and train/eval contamination (shared n-grams).

>>> units("Hello, 水库 world")
['hello', '水', '库', 'world']
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from itertools import chain
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dsft.data.clean import Removed, StepResult, source_of
from dsft.data.conversation import Conversation
from dsft.data.formats import FormatProblem, to_conversation
from dsft.data.readers import expand_inputs, read_records
from dsft.disk import file_as_directory_reason, not_a_file_reason
from dsft.errors import DataError
from dsft.text_encoding import not_utf8

# CJK ideographs, kana and Hangul count one character per unit (no word segmentation needed);
# everything else is split into runs of word characters.
_UNITS = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]|[^\W\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]+")


BOILERPLATE_SHARE = 0.01  # n-grams in more than this share of eval conversations are template text


def units(text: str) -> list[str]:
    """Lower-cased words, with each CJK character as its own unit (for n-gram overlap)."""
    return _UNITS.findall(text.casefold())


def conversation_text(conversation: Conversation) -> str:
    return "\n".join(m.content for m in conversation.messages)


REFERENCES_KEY = "data.clean.relevance_references"
TEXT_SUFFIXES = (".txt", ".md")  # read as plain text split on blank lines; any other file is read as data


def reference_problems(paths: Sequence[str]) -> list[str]:
    """Every reference in ``paths`` that cannot be read, one line each naming the key: a ``.txt``/``.md`` path
    that is not a regular file, or a data path dsft cannot read (checked before any data is read)."""
    problems = []
    for name in paths:
        path = Path(name)
        if path.suffix.lower() in TEXT_SUFFIXES:
            if not path.is_file():
                problems.append(f"{REFERENCES_KEY}: {name}: {not_a_file_reason(path)}")
            elif (reason := file_as_directory_reason(name)) is not None:
                problems.append(f"{REFERENCES_KEY}: {name}: {reason}")
            # GBK (a Chinese-locale Notepad) or UTF-16 (its "Unicode") was read with its bytes replaced, and the
            # filter compared every record with garbage.
            elif (wrong := not_utf8(path.read_bytes())) is not None:
                problems.append(f"{REFERENCES_KEY}: {name}: not UTF-8 text{wrong}")
            continue
        try:
            expand_inputs([name])
        except DataError as exc:
            problems.append(f"{REFERENCES_KEY}: {exc}")
    return problems


def read_reference_texts(paths: Sequence[str]) -> list[str]:
    """Reference texts: ``.txt``/``.md`` files split on blank lines, or any dataset file dsft reads."""
    problems = reference_problems(paths)
    if problems:
        raise DataError(problems[0]) if len(problems) == 1 else DataError(
            f"{len(problems)} relevance reference(s) cannot be read", problems)
    texts: list[str] = []
    for name in paths:
        path = Path(name)
        if path.suffix.lower() in TEXT_SUFFIXES:
            texts += [p.strip() for p in re.split(r"\n\s*\n", path.read_text(encoding="utf-8-sig")) if p.strip()]
            continue
        for record in read_records([name]):
            try:
                texts.append(conversation_text(to_conversation(record.data)))
            except FormatProblem:
                continue  # references are best effort: an odd record does not change the domain
    if not texts:
        raise DataError(f"{REFERENCES_KEY}: no reference text found in {', '.join(paths)}")
    return texts


def relevance_scores(texts: Sequence[str], references: Sequence[str]) -> list[float]:
    """Max TF-IDF cosine similarity of each text to any reference (character 2-4 grams: works for Chinese)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics.pairwise import linear_kernel

    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True, lowercase=True)
    vectorizer.fit(list(references) + list(texts))
    reference_matrix = vectorizer.transform(references)
    scores: list[float] = []
    for start in range(0, len(texts), 4096):  # bounded memory: one block of the similarity matrix at a time
        block = vectorizer.transform(texts[start:start + 4096])
        scores += linear_kernel(block, reference_matrix).max(axis=1).tolist()
    return scores


def filter_by_relevance(
    conversations: Sequence[Conversation], references: Sequence[str], min_score: float
) -> StepResult:
    """Drop conversations whose best TF-IDF cosine to the references is below ``min_score``."""
    scores = relevance_scores([conversation_text(c) for c in conversations], references)
    result = StepResult(kept=[])
    for conversation, score in zip(conversations, scores):
        if score < min_score:
            result.removed.append(Removed(conversation, f"TF-IDF relevance {score:.3f} < relevance_min {min_score}"))
        else:
            result.kept.append(conversation)
    return result


@dataclass
class ContaminationReport:
    """Train conversations sharing at least one n-gram with the evaluation sets."""

    ngram: int
    contaminated: list[tuple[Conversation, str]] = field(default_factory=list)

    def as_dict(self, examples: int = 10) -> dict[str, object]:
        return {
            "ngram": self.ngram,
            "contaminated": len(self.contaminated),
            "examples": [f"{source_of(c)}: {why}" for c, why in self.contaminated[:examples]],
        }


_POLY = np.uint64(0x100000001B3)  # multiplier of the rolling n-gram hash


def _ngram_hashes(text: str, n: int) -> tuple[np.ndarray, list[str]]:
    """64-bit hashes of every run of ``n`` units (a shorter text is one n-gram of its own), and the units.

    Units are hashed with Python's ``hash`` (salted per process, but both sides are hashed in this
    one process) and combined with a rolling polynomial in numpy, so 100k documents take seconds.
    """
    tokens = units(text)
    if not tokens:
        return np.zeros(0, dtype=np.uint64), tokens
    ids = np.fromiter(map(hash, tokens), dtype=np.int64, count=len(tokens)).view(np.uint64)
    width = min(n, len(ids))
    count = len(ids) - width + 1
    hashes = np.full(count, width, dtype=np.uint64)  # seeded with the width: short texts only match short texts
    for offset in range(width):
        hashes = hashes * _POLY + ids[offset:offset + count]
    return hashes, tokens


def _eval_ngram_owners(evaluation: Sequence[Conversation], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted n-gram hashes of the evaluation set (boilerplate excluded) and, for each, its first owner."""
    per_document = [np.unique(_ngram_hashes(conversation_text(c), n)[0]) for c in evaluation]
    if not any(len(h) for h in per_document):
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
    hashes = np.concatenate(per_document)
    owners = np.concatenate([np.full(len(h), i, dtype=np.int64) for i, h in enumerate(per_document)])
    unique, first, counts = np.unique(hashes, return_index=True, return_counts=True)
    # An n-gram found in several evaluation conversations is boilerplate (a question template, a
    # system prompt), not leaked content: counting it would flag every templated record.
    boilerplate_min = max(2, int(len(evaluation) * BOILERPLATE_SHARE) + 1)
    keep = counts < boilerplate_min
    return unique[keep], owners[first[keep]]


def check_contamination(
    train: Sequence[Conversation], evaluation: Sequence[Conversation], ngram: int = 13
) -> ContaminationReport:
    """Find train conversations that share an ``ngram``-unit sequence with any val/test conversation.

    Units are words (CJK: characters), so 13 units is the usual 13-gram test for English text.
    N-grams shared by more than 1% of the evaluation conversations (and at least two) are ignored as
    boilerplate.
    """
    known, owners = _eval_ngram_owners(evaluation, ngram)
    report = ContaminationReport(ngram)
    if not len(known):
        return report
    lookup = _bitmap(known)
    for start in range(0, len(train), _BATCH_DOCUMENTS):
        batch = train[start:start + _BATCH_DOCUMENTS]
        token_lists = [units(conversation_text(c)) for c in batch]
        for index, first in _first_hits(token_lists, known, lookup, ngram):
            tokens = token_lists[index]
            gram = tokens[first:first + ngram]
            owner = evaluation[int(owners[np.searchsorted(known, _ngram_hashes(" ".join(gram), ngram)[0][0])])]
            report.contaminated.append((batch[index], f"shares {ngram}-gram '{' '.join(gram)[:60]}' with {source_of(owner)}"))
    return report


_BATCH_DOCUMENTS = 4096  # train conversations hashed per numpy pass


def _bitmap(known: np.ndarray) -> tuple[np.ndarray, np.uint64]:
    """A boolean table over the low bits of the known hashes (about 8 slots per hash, at most 2^26)."""
    bits = int(min(26, max(10, np.ceil(np.log2(max(len(known), 1) * 8)))))
    mask = np.uint64((1 << bits) - 1)
    table = np.zeros(1 << bits, dtype=bool)
    table[known & mask] = True
    return table, mask


def _first_hits(
    token_lists: list[list[str]], known: np.ndarray, lookup: tuple[np.ndarray, np.uint64], n: int
) -> list[tuple[int, int]]:
    """(document, first unit) of the first known n-gram in each document that has one, in document order.

    All documents of the batch are hashed in one vectorised pass over their concatenated units;
    windows that cross a document boundary are discarded. Documents shorter than ``n`` units are one
    n-gram of their own (see :func:`_ngram_hashes`) and are checked one by one.
    """
    lengths = np.fromiter(map(len, token_lists), dtype=np.int64, count=len(token_lists))
    hits: dict[int, int] = {}
    for index in np.flatnonzero((lengths > 0) & (lengths < n)).tolist():
        if np.isin(_ngram_hashes(" ".join(token_lists[index]), n)[0], known).any():
            hits[index] = 0
    total = int(lengths.sum())
    if total >= n:
        ids = np.fromiter(map(hash, chain.from_iterable(token_lists)), dtype=np.int64, count=total).view(np.uint64)
        count = total - n + 1
        hashes = np.full(count, n, dtype=np.uint64)
        for offset in range(n):
            hashes = hashes * _POLY + ids[offset:offset + count]
        document = np.repeat(np.arange(len(token_lists)), lengths)[:count]
        position = np.arange(count) - (np.cumsum(lengths) - lengths)[document]
        inside = lengths[document] - position >= n
        # Most windows are unknown: a bitmap of the known hashes' low bits rules them out with one
        # lookup each, and only the few survivors pay for the binary search.
        bitmap, mask = lookup
        candidates = np.flatnonzero(inside & bitmap[hashes & mask])
        slots = np.minimum(np.searchsorted(known, hashes[candidates]), len(known) - 1)
        found = candidates[known[slots] == hashes[candidates]]
        documents, first = np.unique(document[found], return_index=True)
        hits.update(zip(documents.tolist(), position[found[first]].tolist()))
    return sorted(hits.items())


def drop_contaminated(train: Sequence[Conversation], report: ContaminationReport) -> StepResult:
    """Remove the contaminated train conversations listed in ``report``."""
    flagged = {id(c): why for c, why in report.contaminated}
    result = StepResult(kept=[])
    for conversation in train:
        if id(conversation) in flagged:
            result.removed.append(Removed(conversation, f"contaminated: {flagged[id(conversation)]}"))
        else:
            result.kept.append(conversation)
    return result
