"""Score a set of (prediction, reference) samples: per-sample scores, aggregates, skip accounting.

Every sample is split into reasoning and answer first (:func:`dsft.eval.reasoning.parse_output`); the
metrics see only the answers (the reference's own ``<think>`` block, if any, is removed the same way).
Aggregates are means of the per-sample scores, except ``bleu``, which is sacrebleu's corpus BLEU over all
answers; ``sentence_bleu`` is the mean of the per-sample (smoothed sentence) BLEU. A sample a metric cannot score (a reference without a number for ``numeric_accuracy``) is left
out of that metric's mean and counted in ``skipped`` under ``"<metric>: <reason>"``.

A sample with several acceptable references scores, per metric, as the standard definitions do: BLEU against all
of them (sacrebleu's reference streams, corpus and sentence), ``exact_match``, ``f1`` and ``numeric_accuracy`` the
best over them (SQuAD's max over ground truths), ROUGE per type the best (``rouge-score``'s ``score_multi``);
``choice_accuracy`` takes the right option from ``label`` only (one option is right; several references name none).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dsft.errors import DsftError
from dsft.eval import metrics as m
from dsft.eval.numbers import numeric_match
from dsft.eval.reasoning import ParsedOutput, parse_output, reasoning_stats

METRICS: tuple[str, ...] = ("exact_match", "f1", "numeric_accuracy", "bleu", "rouge", "choice_accuracy", "macro_f1")
# Names accepted in a metric list, mapped to the metric that computes them.
METRIC_ALIASES: dict[str, str] = {name: name for name in METRICS} | {
    "em": "exact_match", "token_f1": "f1", "numeric": "numeric_accuracy", "rouge1": "rouge",
    "rouge2": "rouge", "rougeL": "rouge", "rougel": "rouge", "choice": "choice_accuracy",
    "multiple_choice": "choice_accuracy",
}
# The aggregate keys each metric reports (what eval.metric may select during training).
AGGREGATE_KEYS: dict[str, tuple[str, ...]] = {
    "exact_match": ("exact_match",), "f1": ("f1",), "numeric_accuracy": ("numeric_accuracy",),
    "bleu": ("bleu",), "rouge": ("rouge1", "rouge2", "rougeL"), "choice_accuracy": ("choice_accuracy",),
    "macro_f1": ("macro_f1",),
}
_PER_SAMPLE_KEYS = {
    "exact_match": ("exact_match",), "f1": ("f1",), "numeric_accuracy": ("numeric_accuracy",),
    "bleu": ("bleu",), "rouge": ("rouge1", "rouge2", "rougeL"), "choice_accuracy": ("choice_accuracy",),
    "macro_f1": ("label_predicted",),
}


@dataclass
class Sample:
    """One item to score. ``reference`` is the answer, or a list of acceptable answers (:attr:`references`).
    ``choices`` makes it multiple choice (the right letter is ``label`` or is read from the reference); ``label``
    alone makes it a label task scored by macro-F1."""

    prediction: str
    reference: str | list[str]
    choices: list[str] | None = None
    label: str | None = None
    prompt_opened_think: bool = False

    @property
    def references(self) -> list[str]:
        """Every acceptable answer: ``reference``, or each of a list of them."""
        return m.listed(self.reference)


def not_text_reason(value: Any, name: str) -> str | None:
    """Why ``value`` given as ``name`` is no text to score: a bare NaN or Infinity (pandas' missing value, which
    ``json.dumps`` writes as ``NaN``) would otherwise be scored as the text "nan". None for anything else.

    >>> not_text_reason(float("nan"), "label")
    'label is NaN or infinite, not text'
    >>> not_text_reason(3.5, "label") is None
    True
    """
    if isinstance(value, float) and not math.isfinite(value):
        return f"{name} is NaN or infinite, not text"
    return None


def record_choices(record: dict[str, Any]) -> tuple[list[str] | None, str | None]:
    """A record's ``choices`` as option texts (a list, or an object ``{"A": text, ...}`` in key order), or why they
    cannot be read: any other value is ``choices is not a list`` (a string "ABCD", a number), which ``dsft metrics``
    and ``dsft eval`` both skip and count (eval read it as no choices at all, and scored a multiple-choice record
    as free text). An absent or empty ``choices`` is no multiple choice.

    >>> record_choices({"choices": {"B": "blue", "A": "red"}})
    (['red', 'blue'], None)
    >>> record_choices({"choices": "ABCD"})
    (None, 'choices is not a list')
    >>> record_choices({"choices": []})
    (None, None)
    """
    value = record.get("choices")
    if value is None:
        return None, None
    if isinstance(value, dict):
        return [str(value[k]) for k in sorted(value)] or None, None
    if isinstance(value, list):
        return [str(c) for c in value] or None, None
    return None, "choices is not a list"


def missing_choice_or_label(record: dict[str, Any]) -> str | None:
    """Why a record's ``label`` or one of its ``choices`` (a list or an object of option texts) is no text to score
    (:func:`not_text_reason`): a NaN label was its own class in macro-F1, a NaN option the option "nan". A blank
    label (a CSV's empty cell) is ``empty label``, as a blank reference is ``empty reference``: it was a class no
    answer can name, which lowered macro-F1 for every other label."""
    choices = record.get("choices")
    options = choices.values() if isinstance(choices, dict) else choices if isinstance(choices, list) else ()
    for option in options:
        if reason := not_text_reason(option, "choices: an option"):
            return reason
    label = record.get("label")
    if isinstance(label, str) and not label.strip():
        return "empty label"
    return not_text_reason(label, "label")


@dataclass
class ScoreResult:
    """Per-sample parses and scores, the aggregate metrics and why anything was skipped."""

    parsed: list[ParsedOutput]
    per_sample: list[dict[str, Any]]
    aggregate: dict[str, Any]
    skipped: Counter[str] = field(default_factory=Counter)


# The guides' words for a metric, squashed as :func:`_squashed` does, that no accepted name squashes to.
_GUIDE_WORDS = {"numacc": "numeric_accuracy", "numericacc": "numeric_accuracy", "ppl": "perplexity", "em": "exact_match"}
# What an unknown name in a metric list is offered from: each metric by its own name, rouge by the keys it reports.
_LIST_NAMES = [*METRICS, "rouge1", "rouge2", "rougeL"]
_NOT_COMPUTED = {"auc": "not computed: generation eval produces labels, not scores to rank; macro_f1 scores label "
                        "tasks"}


def _squashed(name: str) -> str:
    return name.strip().lower().removeprefix("eval_").replace("-", "").replace("_", "").replace(" ", "")


def metric_meant(name: str, accepted: Sequence[str]) -> str:
    """`` (did you mean 'X'?)`` when ``name`` is an accepted metric written another way (the guides' ``ROUGE-L``,
    ``EM``, ``Macro-F1``, ``num_acc``), or what dsft does not compute (``AUC``); '' otherwise. Names stay matched
    exactly: run.json and the reports record them as written.

    >>> metric_meant("ROUGE-L", _LIST_NAMES), metric_meant("eval_num_acc", ["loss", "numeric_accuracy"])
    (" (did you mean 'rougeL'?)", " (did you mean 'numeric_accuracy'?)")
    >>> metric_meant("AUC", _LIST_NAMES)
    ' (not computed: generation eval produces labels, not scores to rank; macro_f1 scores label tasks)'
    """
    squashed: dict[str, str] = {}
    for known in accepted:
        squashed.setdefault(_squashed(known), known)
    key = _squashed(name)
    meant = squashed.get(key) or (_GUIDE_WORDS.get(key) if _GUIDE_WORDS.get(key) in accepted else None)
    if meant is not None:
        return f" (did you mean {meant!r}?)"
    return f" ({_NOT_COMPUTED[key]})" if key in _NOT_COMPUTED else ""


def resolve_metrics(names: Sequence[str] | None) -> list[str]:
    """Canonical metric names for a user's list (None or empty = all). Unknown names -> DsftError."""
    if not names:
        return list(METRICS)
    unknown = [n for n in names if n.strip() not in METRIC_ALIASES]
    if unknown:
        named = ", ".join(f"{n!r}{metric_meant(n, _LIST_NAMES)}" for n in unknown)
        raise DsftError(
            f"unknown metric(s) {named}; choose from {', '.join(METRICS)} (also rouge1, rouge2, rougeL)"
        )
    return list(dict.fromkeys(METRIC_ALIASES[n.strip()] for n in names))


def _numeric_accuracy(answer: str, references: list[str]) -> float | None:
    """1.0 when the answer's number matches any reference's, None when no reference holds a number."""
    matches = [match for match in (numeric_match(answer, r) for r in references) if match is not None]
    return float(any(matches)) if matches else None


def _right_option(sample: Sample, references: list[str]) -> tuple[str | None, str]:
    """A multiple-choice sample's right option letter (from ``label``, else its one reference) and why there is
    none. One option is right, so several references name none: ``label`` must."""
    if not sample.label and len(references) > 1:
        return None, "choice_accuracy: several references and no label"
    return (m.extract_choice(sample.label or references[0], sample.choices),
            "choice_accuracy: no option letter in label or reference")


def _score_one(sample: Sample, parsed: ParsedOutput, references: list[str], wanted: list[str],
               labels: list[str], skipped: Counter[str]) -> dict[str, Any]:
    """One sample's scores against its acceptable ``references`` (answers): the best over them for the pairwise
    metrics (SQuAD's max over ground truths), all of them for BLEU."""
    answer = parsed.answer
    scores: dict[str, Any] = {}
    if "exact_match" in wanted:
        scores["exact_match"] = max(m.exact_match(answer, r) for r in references)
    if "f1" in wanted:
        scores["f1"] = max(m.token_f1(answer, r) for r in references)
    if "numeric_accuracy" in wanted:
        scores["numeric_accuracy"] = _numeric_accuracy(answer, references)
        if scores["numeric_accuracy"] is None:
            skipped["numeric_accuracy: reference has no number"] += 1
    if "bleu" in wanted:
        scores["bleu"] = m.sentence_bleu(answer, references)
    if "rouge" in wanted:
        scores.update(m.rouge_scores(answer, references))
    if "choice_accuracy" in wanted and sample.choices:
        gold, why_none = _right_option(sample, references)
        picked = m.extract_choice(answer, sample.choices)
        scores["choice_accuracy"] = None if gold is None else float(picked == gold)
        scores["choice_predicted"] = picked
        if gold is None:
            skipped[why_none] += 1
    if "macro_f1" in wanted and sample.label is not None and not sample.choices:
        scores["label_predicted"] = m.match_label(answer, labels)
    return scores


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def score_samples(samples: Sequence[Sample], metrics: Sequence[str] | None = None,
                  tokenizer: object | None = None) -> ScoreResult:
    """Score every sample with the chosen metrics (see :data:`METRICS`) and aggregate.

    The aggregate holds each chosen metric (``rouge`` as ``rouge1``/``rouge2``/``rougeL``; None when no
    sample applies), ``count``, ``think_rate``, ``unclosed_think_rate``, ``mean_reasoning_tokens``, and
    ``counts``: how many samples each metric scored.
    """
    wanted = resolve_metrics(metrics)
    skipped: Counter[str] = Counter()
    parsed = [parse_output(s.prediction, s.prompt_opened_think) for s in samples]
    references = [[parse_output(r).answer for r in s.references] for s in samples]
    labels = sorted({s.label for s in samples if s.label is not None and not s.choices})
    per_sample = [
        _score_one(s, p, r, wanted, labels, skipped) for s, p, r in zip(samples, parsed, references)
    ]
    aggregate: dict[str, Any] = {}
    counts: dict[str, int] = {}
    for name in wanted:
        if name == "bleu":
            aggregate["bleu"] = m.corpus_bleu([p.answer for p in parsed], references) if samples else None
            counts["bleu"] = len(samples)
            # Corpus BLEU is 0 for right answers shorter than 4 tokens ("Red", "1961"); the mean of the
            # smoothed per-sample sentence BLEU is reported beside it.
            aggregate["sentence_bleu"] = _mean([sc["bleu"] for sc in per_sample if sc.get("bleu") is not None])
            counts["sentence_bleu"] = len(samples)
        elif name == "macro_f1":
            pairs = [(s.label, sc["label_predicted"]) for s, sc in zip(samples, per_sample) if "label_predicted" in sc]
            aggregate["macro_f1"] = m.macro_f1([g for g, _ in pairs], [p for _, p in pairs]) if pairs else None
            counts["macro_f1"] = len(pairs)
        else:
            for key in _PER_SAMPLE_KEYS[name]:
                values = [sc[key] for sc in per_sample if sc.get(key) is not None]
                aggregate[key] = _mean(values)
                counts[key] = len(values)
    aggregate["count"] = len(samples)
    aggregate.update(reasoning_stats(parsed, tokenizer))
    aggregate["counts"] = counts
    return ScoreResult(parsed, per_sample, aggregate, skipped)
