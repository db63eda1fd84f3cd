"""Is a generated answer right? One verdict per (answer, reference), with dsft's task metrics.

Used by ``dsft data distill`` to reject a teacher's wrong answers. It lives in eval because it is
scoring; the data layer receives :func:`answer_checker` 's result as a plain function (see
docs/internals.md). Both sides are compared after ``</think>`` (the reference's own think block, if
any, is dropped the same way as in evaluation).

Methods: ``numeric`` (the last numbers agree, :func:`dsft.eval.numbers.numeric_match`), ``exact``
(normalised strings equal), ``f1`` (token F1 at least ``f1_min``), ``auto`` (numeric when the reference
holds a number, else F1).
"""

from __future__ import annotations

from collections.abc import Callable

from dsft.eval.metrics import exact_match, token_f1
from dsft.eval.numbers import extract_quantities, numeric_match
from dsft.eval.reasoning import parse_output

CHECK_METHODS = ("auto", "numeric", "exact", "f1")


def check_answer(answer: str, reference: str, method: str = "auto", f1_min: float = 0.8) -> str | None:
    """None when ``answer`` is right, else why it is not.

    >>> check_answer("该水库于1958年建成。", "1958年"), check_answer("It was 1957.", "<think>x</think>1958")
    (None, 'numeric: answer 1957, reference 1958')
    >>> check_answer("Paris, France", "Paris", "exact"), check_answer("Paris", "Paris", "f1")
    ("exact: 'Paris, France' != 'Paris'", None)
    """
    answer = parse_output(answer).answer
    reference = parse_output(reference).answer
    if method == "auto":
        method = "numeric" if extract_quantities(reference) else "f1"
    if method == "numeric":
        verdict = numeric_match(answer, reference)
        if verdict is None:
            return "numeric: the reference has no number"
        if verdict:
            return None
        found = extract_quantities(answer)
        got = f"{found[-1].value:g}" if found else "no number"
        return f"numeric: answer {got}, reference {extract_quantities(reference)[-1].value:g}"
    if method == "exact":
        return None if exact_match(answer, reference) else f"exact: {answer[:60]!r} != {reference[:60]!r}"
    if method == "f1":
        score = token_f1(answer, reference)
        return None if score >= f1_min else f"f1: {score:.2f} < {f1_min}"
    raise ValueError(f"unknown answer check {method!r}; one of {', '.join(CHECK_METHODS)}")


def answer_checker(method: str, f1_min: float = 0.8) -> Callable[[str, str], str | None] | None:
    """``check_answer`` bound to a method, or None for ``none`` (no verification)."""
    if method == "none":
        return None
    return lambda answer, reference: check_answer(answer, reference, method, f1_min)
