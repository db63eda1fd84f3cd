"""Near-duplicates: MinHash signatures over character shingles, indexed with datasketch's MinHashLSH.

Character shingles (default 5 characters) make the measure work for Chinese as well as English, with no
word segmentation. Signatures are computed vectorised in numpy (a rolling polynomial hash of the code
points, then ``num_perm`` multiply-shift universal hashes, the classic MinHash construction) because hashing each
shingle in Python is far too slow for 100k documents; the LSH banding and candidate lookup are
datasketch's. A candidate counts as a near-duplicate only when its estimated Jaccard similarity
(the share of equal signature slots) reaches the threshold.

>>> texts = ["The dam was completed in October 1958.", "The dam was completed in October 1958!", "Other."]
>>> near_duplicate_groups(texts, threshold=0.7)
[0, 0, 2]
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from dsft.data.clean import Removed, StepResult, loss_flags, source_of
from dsft.data.conversation import Conversation

_MASK32 = np.uint64((1 << 32) - 1)
_SPACES = re.compile(r"\s+")
DEFAULT_NUM_PERM = 64
DEFAULT_SHINGLE = 5  # characters


def similarity_text(conversation: Conversation) -> str:
    """The text near-duplicate checks compare: every message's content, case- and space-normalised."""
    return _SPACES.sub(" ", "\n".join(m.content for m in conversation.messages)).strip().casefold()


class MinHasher:
    """MinHash signatures of character shingles; equal seeds give equal signatures across runs."""

    def __init__(self, num_perm: int = DEFAULT_NUM_PERM, shingle: int = DEFAULT_SHINGLE, seed: int = 1) -> None:
        rng = np.random.RandomState(seed)
        self.num_perm = num_perm
        self.shingle = shingle
        self.seed = seed
        # Odd 64-bit multipliers and 64-bit offsets for multiply-shift hashing.
        self._a = rng.randint(0, 1 << 63, size=num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self._b = rng.randint(0, 1 << 63, size=num_perm, dtype=np.uint64) * np.uint64(2)

    @property
    def permutations(self) -> tuple[np.ndarray, np.ndarray]:
        return self._a, self._b

    def shingle_hashes(self, text: str) -> np.ndarray:
        """32-bit hashes of the text's character k-grams (the whole text when shorter); repeats are harmless."""
        points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
        width = min(self.shingle, len(points)) or 1
        count = max(len(points) - width + 1, 1)
        hashes = np.zeros(count, dtype=np.uint64)
        if len(points):
            for offset in range(width):  # wrapping uint64 arithmetic: a rolling polynomial hash
                hashes = hashes * np.uint64(1_000_003) + points[offset:offset + count]
        # Mix the high bits down before truncating to 32-bit keys for the multiply-shift family.
        hashes ^= hashes >> np.uint64(29)
        return hashes & _MASK32

    def signature(self, text: str) -> np.ndarray:
        """``num_perm`` minimums of multiply-shift hashes ``(a*x + b) mod 2^64 >> 32`` of the shingle hashes.

        Multiply-shift (Dietzfelbinger) is universal for 32-bit keys and needs no modulo, which makes it
        about a third cheaper than the Mersenne-prime form while giving the same Jaccard estimates.
        """
        hashes = self.shingle_hashes(text)
        permuted = (np.outer(hashes, self._a) + self._b) >> np.uint64(32)
        return permuted.min(axis=0)


def _lsh(threshold: float, num_perm: int):  # noqa: ANN202 - datasketch types are untyped
    from datasketch import MinHashLSH

    # Weight false negatives 9:1 over false positives when datasketch picks the bands: every candidate is
    # verified against the signature estimate anyway, so a missed near-duplicate is the costly mistake
    # (64 permutations: ~97% of pairs 0.05 above the threshold become candidates, against ~60% unweighted).
    # Banding needs a threshold below 1; candidates are verified against the real threshold.
    return MinHashLSH(threshold=min(threshold, 0.95), num_perm=num_perm, weights=(0.1, 0.9))


def _as_minhash(signature: np.ndarray, hasher: MinHasher):  # noqa: ANN202
    from datasketch import MinHash

    # Passing the permutations skips datasketch regenerating them for every document (the slow part).
    return MinHash(seed=hasher.seed, hashvalues=signature, permutations=hasher.permutations, scheme="legacy")


def estimated_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(a == b))


_PARALLEL_MIN_TEXTS = 20_000  # below this, starting workers costs more than it saves
_SIGNATURE_CHUNK = 2_000


def _signature_chunk(job: tuple[MinHasher, list[str]]) -> np.ndarray:
    hasher, texts = job
    return np.stack([hasher.signature(t) for t in texts]) if texts else np.zeros((0, hasher.num_perm), np.uint64)


def compute_signatures(texts: Sequence[str], hasher: MinHasher, processes: int | None = None) -> np.ndarray:
    """Signatures of all texts, one row each; large inputs use one forked process per CPU.

    Signatures depend only on the text and the hasher's seed, so the result is the same either way.
    """
    import multiprocessing
    import os

    workers = processes or os.cpu_count() or 1
    can_fork = "fork" in multiprocessing.get_all_start_methods()
    if workers == 1 or len(texts) < _PARALLEL_MIN_TEXTS or not can_fork:
        return _signature_chunk((hasher, list(texts)))
    jobs = [(hasher, list(texts[i:i + _SIGNATURE_CHUNK])) for i in range(0, len(texts), _SIGNATURE_CHUNK)]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        return np.concatenate(pool.map(_signature_chunk, jobs))


def near_duplicate_groups(
    texts: Sequence[str], threshold: float, num_perm: int = DEFAULT_NUM_PERM, shingle: int = DEFAULT_SHINGLE
) -> list[int]:
    """For each text, the index of the first text of its near-duplicate cluster (transitive closure).

    Clusters are what the split keeps on one side: if a~b and b~c, all three go together.
    """
    hasher = MinHasher(num_perm, shingle)
    index = _lsh(threshold, num_perm)
    signatures = compute_signatures(texts, hasher)
    parent = list(range(len(texts)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for position, signature in enumerate(signatures):
        minhash = _as_minhash(signature, hasher)
        for candidate in index.query(minhash):
            if estimated_jaccard(signature, signatures[candidate]) >= threshold:
                low, high = sorted((root(position), root(candidate)))
                parent[high] = low
        index.insert(position, minhash)
    return [root(i) for i in range(len(texts))]


def near_dedup(
    conversations: Sequence[Conversation], threshold: float, num_perm: int = DEFAULT_NUM_PERM,
    shingle: int = DEFAULT_SHINGLE,
) -> StepResult:
    """Keep a conversation unless it is a near-duplicate (Jaccard >= threshold) of one already kept.

    Only kept conversations enter the index, so a chain a~b~c with a !~ c keeps a and c.
    """
    hasher = MinHasher(num_perm, shingle)
    index = _lsh(threshold, num_perm)
    kept_signatures: list[np.ndarray] = []
    result = StepResult(kept=[])
    signatures = compute_signatures([similarity_text(c) for c in conversations], hasher)
    for conversation, signature in zip(conversations, signatures):
        minhash = _as_minhash(signature, hasher)
        match = None
        for candidate in index.query(minhash):
            similarity = estimated_jaccard(signature, kept_signatures[candidate])
            # A copy that trains other turns (its loss flags differ) is not a near-duplicate: see clean.loss_flags.
            if similarity >= threshold and loss_flags(result.kept[candidate]) == loss_flags(conversation):
                match = (candidate, similarity)
                break
        if match is None:
            index.insert(len(result.kept), minhash)
            kept_signatures.append(signature)
            result.kept.append(conversation)
        else:
            original = result.kept[match[0]]
            result.removed.append(
                Removed(conversation, f"near-duplicate (Jaccard ~{match[1]:.2f}) of {source_of(original)}")
            )
    return result


def drop_near_copies(
    existing: Sequence[Conversation], candidates: Sequence[Conversation], threshold: float,
    num_perm: int = DEFAULT_NUM_PERM, shingle: int = DEFAULT_SHINGLE,
) -> StepResult:
    """Keep each candidate unless it is a near-duplicate of an existing conversation or of a kept candidate.

    Existing conversations are never removed (they are only the reference); this is how generated
    records are checked against the data they were made from.

    >>> from dsft.data.conversation import Message
    >>> old = [Conversation([Message("user", "When was the Qingshan dam completed?"), Message("assistant", "1958.")],
    ...                     meta={"origin": "d.jsonl:1"})]
    >>> new = [Conversation([Message("user", "when was the  Qingshan dam completed?"), Message("assistant", "1958.")]),
    ...        Conversation([Message("user", "In which year was Qingshan finished?"), Message("assistant", "1958.")])]
    >>> [r.reason for r in drop_near_copies(old, new, 0.8).removed]
    ['near-duplicate (Jaccard ~1.00) of d.jsonl:1']
    """
    hasher = MinHasher(num_perm, shingle)
    index = _lsh(threshold, num_perm)
    references = list(existing)
    signatures = list(compute_signatures([similarity_text(c) for c in references], hasher))
    for position, signature in enumerate(signatures):
        index.insert(position, _as_minhash(signature, hasher))
    result = StepResult(kept=[])
    for conversation, signature in zip(candidates, compute_signatures([similarity_text(c) for c in candidates], hasher)):
        minhash = _as_minhash(signature, hasher)
        match = next(((c, s) for c in index.query(minhash)
                      if (s := estimated_jaccard(signature, signatures[c])) >= threshold), None)
        if match is not None:
            result.removed.append(
                Removed(conversation, f"near-duplicate (Jaccard ~{match[1]:.2f}) of {source_of(references[match[0]])}"))
            continue
        index.insert(len(references), minhash)
        references.append(conversation)
        signatures.append(signature)
        result.kept.append(conversation)
    return result
