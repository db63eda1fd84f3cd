"""Task metrics: pure functions of (prediction, reference) text, scored on the answer after ``</think>``.

Tokenisation and normalisation conventions are in :mod:`dsft.eval.text`; number conventions in
:mod:`dsft.eval.numbers`. Per-sample metrics return fractions in [0, 1]; BLEU follows sacrebleu and
is in [0, 100].

* :func:`exact_match` - normalised strings equal.
* :func:`token_f1` - SQuAD-style bag-of-tokens F1 (CJK characters, numbers, other words).
* :func:`dsft.eval.numbers.numeric_match` - last number equal within tolerance.
* :func:`corpus_bleu` / :func:`sentence_bleu` - sacrebleu, ``zh`` tokenizer when a reference is Chinese.
* :func:`rouge_n` / :func:`rouge_l` - F-measure over jieba words (Chinese) or words (other text).
* :func:`extract_choice` - the option letter a multiple-choice answer picked.
* :func:`macro_f1` - label tasks, macro-averaged over the reference labels.

A prediction may have several acceptable references: BLEU takes them all (sacrebleu's reference streams),
ROUGE per type the best (as ``rouge-score``'s ``score_multi``); the others are pairwise, the caller takes the best
over references (SQuAD's ``metric_max_over_ground_truths``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from dsft.eval.text import answer_tokens, contains_cjk, normalize_answer, segment_words, to_half_width


def exact_match(prediction: str, reference: str) -> float:
    """1.0 when the normalised strings are equal, else 0.0.

    >>> exact_match("北京。", " 北京 "), exact_match("Paris", "paris!"), exact_match("4", "four")
    (1.0, 1.0, 0.0)
    """
    return float(normalize_answer(prediction) == normalize_answer(reference))


def _f_measure(overlap: int, predicted: int, expected: int) -> float:
    if overlap == 0:
        return 0.0
    precision, recall = overlap / predicted, overlap / expected
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, reference: str) -> float:
    """Harmonic mean of token precision and recall on bags of tokens (1.0 when both are empty).

    >>> round(token_f1("北京市", "北京"), 4)  # 2 shared chars: P = 2/3, R = 1
    0.8
    """
    predicted, expected = answer_tokens(prediction), answer_tokens(reference)
    if not predicted or not expected:
        return float(predicted == expected)
    overlap = sum((Counter(predicted) & Counter(expected)).values())
    return _f_measure(overlap, len(predicted), len(expected))


def bleu_tokenizer(references: Sequence[str]) -> str:
    """sacrebleu tokenizer for a set of references: ``zh`` if any has CJK characters, else ``13a``."""
    return "zh" if any(contains_cjk(r) for r in references) else "13a"


References = str | Sequence[str]  # one reference, or a prediction's list of acceptable references


def listed(references: References) -> list[str]:
    """``references`` as a list: one reference is a list of one."""
    return [references] if isinstance(references, str) else list(references)


def reference_streams(references: Sequence[References]) -> list[list[str | None]]:
    """Each prediction's acceptable references as sacrebleu's reference streams: stream k holds every prediction's
    k-th reference, None where a prediction has fewer (sacrebleu's way of a variable number of references).

    >>> reference_streams(["a", ["b", "c"]])
    [['a', 'b'], [None, 'c']]
    """
    lists = [listed(r) for r in references]
    width = max((len(r) for r in lists), default=1)
    return [[r[k] if k < len(r) else None for r in lists] for k in range(width)]


def corpus_bleu(predictions: Sequence[str], references: Sequence[References], tokenize: str | None = None) -> float:
    """Corpus BLEU in [0, 100] exactly as sacrebleu reports it, each prediction with its list of acceptable
    references (n-grams clipped by the most any reference holds, brevity by the closest reference length).

    >>> round(corpus_bleu(["the cat sat on the mat"], [["a cat sat on a mat", "the cat sat on the mat"]]), 1)
    100.0
    """
    import sacrebleu

    tokenize = tokenize or bleu_tokenizer([text for texts in references for text in listed(texts)])
    return float(sacrebleu.corpus_bleu(list(predictions), reference_streams(references), tokenize=tokenize).score)


def sentence_bleu(prediction: str, references: References, tokenize: str | None = None) -> float:
    """Smoothed sentence BLEU in [0, 100] (sacrebleu's ``sentence_bleu``) against the reference or the acceptable
    ``references``, for per-sample scores."""
    import sacrebleu

    tokenize = tokenize or bleu_tokenizer(listed(references))
    return float(sacrebleu.sentence_bleu(prediction, listed(references), tokenize=tokenize).score)


def _ngrams(words: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def rouge_n(prediction: str, reference: str, n: int) -> float:
    """ROUGE-N F-measure: clipped n-gram overlap over the prediction's and the reference's n-grams.

    >>> round(rouge_n("the cat sat", "the cat ran", 1), 4), rouge_n("the cat sat", "the cat ran", 2)
    (0.6667, 0.5)
    """
    predicted, expected = _ngrams(segment_words(prediction), n), _ngrams(segment_words(reference), n)
    if not predicted or not expected:
        return 0.0
    overlap = sum((predicted & expected).values())
    return _f_measure(overlap, sum(predicted.values()), sum(expected.values()))


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    # One row of the classic dynamic programme: O(len(a) * len(b)) time, O(len(b)) memory.
    row = [0] * (len(b) + 1)
    for x in a:
        diagonal = 0
        for j, y in enumerate(b, start=1):
            diagonal, row[j] = row[j], diagonal + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure (beta = 1): longest common subsequence of words over both lengths.

    >>> round(rouge_l("the cat sat on mat", "the cat on the mat"), 4)  # LCS "the cat on mat" = 4
    0.8
    """
    predicted, expected = segment_words(prediction), segment_words(reference)
    if not predicted or not expected:
        return 0.0
    return _f_measure(_lcs_length(predicted, expected), len(predicted), len(expected))


def rouge_scores(prediction: str, references: References) -> dict[str, float]:
    """``rouge1``, ``rouge2`` and ``rougeL`` F-measures, each the best over the acceptable ``references`` (as
    ``rouge-score``'s ``score_multi`` takes, per ROUGE type, the reference with the highest F-measure).

    >>> {k: round(v, 4) for k, v in rouge_scores("the cat sat", ["the cat ran", "a dog sat"]).items()}
    {'rouge1': 0.6667, 'rouge2': 0.5, 'rougeL': 0.6667}
    """
    texts = listed(references)
    return {
        "rouge1": max(rouge_n(prediction, r, 1) for r in texts),
        "rouge2": max(rouge_n(prediction, r, 2) for r in texts),
        "rougeL": max(rouge_l(prediction, r) for r in texts),
    }


CHOICE_LETTERS = "ABCDEFGHIJ"


def _choice_patterns(letters: str) -> list[re.Pattern[str]]:
    group, lower = f"([{letters}])", f"([{letters.lower()}])"
    return [
        # "答案是 B", "answer: (C)", "the correct option is D", "选 A"
        re.compile(rf"(?i:答案|选项|answer|option|choice)\s*(?i:is|为|是|应该是|应为)?\s*:?\s*[(\[]?{group}(?![A-Za-z])"),
        re.compile(rf"(?i:选|选择|choose|pick)\s*[(\[]?{group}(?![A-Za-z])"),
        # after a Chinese keyword a lower-case letter is an option too ("答案是b", "选c"); in English "a" is a word
        re.compile(rf"(?:答案|选项)\s*(?:为|是|应该是|应为)?\s*:?\s*[(\[]?{lower}(?![A-Za-z])"),
        re.compile(rf"(?:选|选择)\s*[(\[]?{lower}(?![A-Za-z])"),
        # the answer starts with the letter: "B", "B.", "(B) ...", "B、...", "B: ..."
        re.compile(rf"^\s*[(\[]?{group}(?:$|[).:、,\]]|\s*$)"),
    ]


def extract_choice(answer: str, choices: Sequence[str] | None = None) -> str | None:
    """The option letter an answer picked, or None.

    In order: an explicit "答案是X" / "answer is X" / "选X"; a leading letter ("B.", "(B)"); the text of
    exactly one choice appearing in the answer (a choice inside another that appears, "1" in "100", does
    not count); the last standalone letter among the valid ones.
    Valid letters are the first ``len(choices)`` of A-J (A-D without choices).

    >>> extract_choice("答案是：C"), extract_choice("(b) because"), extract_choice("It is Paris", ["Rome", "Paris"])
    ('C', None, 'B')
    """
    letters = CHOICE_LETTERS[: len(choices)] if choices else CHOICE_LETTERS[:4]
    text = to_half_width(answer).strip()
    for pattern in _choice_patterns(letters):
        found = pattern.search(text)
        if found:
            return found.group(1).upper()
    if choices:
        normalised = normalize_answer(text)
        texts = [normalize_answer(str(c)) for c in choices]
        hits = [i for i, t in enumerate(texts) if t and t in normalised]
        # A choice found only as part of another found choice ("1" inside "100") is not a second hit.
        hits = [i for i in hits if not any(j != i and texts[i] in texts[j] and texts[i] != texts[j] for j in hits)]
        if len(hits) == 1:
            return letters[hits[0]]
    standalone = re.findall(rf"(?<![A-Za-z])([{letters}])(?![A-Za-z])", text)
    return standalone[-1] if standalone else None


def match_label(answer: str, labels: Sequence[str]) -> str | None:
    """The label an answer names: the one equal to it after normalisation, else the only label it
    contains (a label inside another contained label, "正面" in "非正面", does not count), else None.

    >>> match_label("情感：正面", ["正面", "负面"]), match_label("Positive.", ["positive", "negative"])
    ('正面', 'positive')
    """
    normalised = normalize_answer(answer)
    for label in labels:
        if normalize_answer(label) == normalised:
            return label
    forms = {label: normalize_answer(label) for label in labels}
    contained = [label for label in labels if forms[label] and forms[label] in normalised]
    # A label found only inside another found label ("正面" in "非正面") is not a second hit.
    contained = [a for a in contained if not any(forms[a] != forms[b] and forms[a] in forms[b] for b in contained)]
    return contained[0] if len(contained) == 1 else None


def macro_f1(references: Sequence[str], predictions: Sequence[str | None]) -> float:
    """F1 per reference label, averaged with equal weight (a prediction outside the reference labels,
    or None, is a miss for its reference label and a false positive for no label).

    >>> round(macro_f1(["a", "a", "b"], ["a", "b", "b"]), 4)  # F1(a) = 2/3, F1(b) = 2/3
    0.6667
    """
    labels = sorted(set(references))
    if not labels:
        return 0.0
    scores = []
    for label in labels:
        true_positive = sum(r == label and p == label for r, p in zip(references, predictions))
        predicted = sum(p == label for p in predictions)
        expected = sum(r == label for r in references)
        scores.append(_f_measure(true_positive, predicted, expected))
    return sum(scores) / len(labels)
