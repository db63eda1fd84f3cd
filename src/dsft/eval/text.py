"""Text normalisation and tokenisation for scoring answers in Chinese, English or both.

Conventions (every metric in :mod:`dsft.eval.metrics` follows them):

* **Normalisation** (:func:`normalize_answer`): Unicode NFKC (full-width letters, digits and ASCII
  punctuation become half-width: ``ＡＢＣ，１２`` -> ``ABC,12``), the CJK punctuation NFKC leaves alone
  mapped to its ASCII counterpart (``。`` -> ``.``, ``、`` -> ``,``, ``「」`` -> ``""``), case folded,
  whitespace collapsed to one space and removed next to CJK characters (Chinese does not use spaces),
  trailing sentence punctuation dropped (``北京。`` == ``北京``), and Markdown emphasis or code marks
  (``*``, ``_``, backticks) at either end dropped (``**Paris**`` == ``Paris``).
* **Tokens for reasoning length** (:func:`split_tokens`): each CJK character is one token; any
  other run of letters/digits is one token (a word); punctuation is dropped. Mixed text mixes both:
  ``我用Python写代码`` -> ``我 用 python 写 代 码``.
* **Tokens for F1** (:func:`answer_tokens`): the same, except that a number written with a decimal
  point or thousands separators is one token, separators dropped (``3.5``, ``1,200`` == ``1200``), so
  ``3.5`` and ``5.3`` share no token.
* **Words for ROUGE** (:func:`segment_words`): runs of CJK characters are segmented with jieba; the
  text between them is split as :func:`split_tokens` splits it (at every punctuation mark, ``3.5`` ->
  ``3 5``, as ``rouge-score`` does), so a number or an English word is the same token
  whether or not the text around it is Chinese (``答案3.5`` -> ``答案 3 5``, as ``3.5`` -> ``3 5``).
"""

from __future__ import annotations

import logging
import re
import unicodedata
from functools import lru_cache

# CJK punctuation that NFKC does not fold, mapped to the ASCII character a reader would treat as equal.
_CJK_PUNCTUATION = str.maketrans({
    "。": ".", "、": ",", "「": '"', "」": '"', "『": '"', "』": '"', "《": '"', "》": '"',
    "〈": '"', "〉": '"', "【": "[", "】": "]", "〔": "[", "〕": "]", "‘": "'", "’": "'",
    "“": '"', "”": '"', "…": "...", "—": "-", "–": "-", "·": ".", "～": "~",
})

# CJK Unified Ideographs (+ extension A and compatibility block), kana and hangul: scripts written
# without spaces, where one character is the natural scoring unit.
_CJK_CLASS = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af"
_CJK_CHAR = re.compile(f"[{_CJK_CLASS}]")
_SPACE_NEXT_TO_CJK = re.compile(f"(?<=[{_CJK_CLASS}])\\s+|\\s+(?=[{_CJK_CLASS}])")
_CJK_RUN = re.compile(f"[{_CJK_CLASS}]+")
_TOKEN = re.compile(f"[{_CJK_CLASS}]|[^\\W{_CJK_CLASS}]+")
# A number with a decimal point or thousands separators (numbers.py's rule: groups of exactly 3 digits),
# not glued to a following letter/digit; tried before a plain word.
_NUMBER_TOKEN = f"(?:\\d{{1,3}}(?:,\\d{{3}})+(?:\\.\\d+)?|\\d+\\.\\d+)(?![^\\W{_CJK_CLASS}])"
_ANSWER_TOKEN = re.compile(f"[{_CJK_CLASS}]|{_NUMBER_TOKEN}|[^\\W{_CJK_CLASS}]+")
# Trailing sentence punctuation, and Markdown emphasis / code marks at either end ("**Paris.**").
_TRAILING_PUNCTUATION = re.compile(r"[\s.!?,;:。！？，；：*_`]+$")
_LEADING_MARKUP = re.compile(r"^[\s*_`]+")


def contains_cjk(text: str) -> bool:
    """Whether ``text`` has at least one CJK character (then Chinese tokenisation rules apply)."""
    return _CJK_CHAR.search(text) is not None


def to_half_width(text: str) -> str:
    """NFKC plus the CJK punctuation NFKC keeps: ``"５０％，好。"`` -> ``"50%,好."``."""
    return unicodedata.normalize("NFKC", text).translate(_CJK_PUNCTUATION)


def normalize_answer(text: str) -> str:
    """The comparison form of an answer (see the module docstring).

    >>> normalize_answer("  The  Answer is ＡＢＣ。 ")
    'the answer is abc'
    >>> normalize_answer("北京 是 首都！")
    '北京是首都'
    """
    text = to_half_width(text).casefold()
    text = " ".join(text.split())
    text = _SPACE_NEXT_TO_CJK.sub("", text)
    return _TRAILING_PUNCTUATION.sub("", _LEADING_MARKUP.sub("", text))


def split_tokens(text: str) -> list[str]:
    """Scoring tokens: one per CJK character, one per other word, punctuation dropped, case folded.

    >>> split_tokens("我用Python写代码, fast!")
    ['我', '用', 'python', '写', '代', '码', 'fast']
    """
    return _TOKEN.findall(to_half_width(text).casefold())


def answer_tokens(text: str) -> list[str]:
    """Tokens for F1: :func:`split_tokens`, but a number with a decimal point or thousands separators is
    one token, separators dropped.

    >>> answer_tokens("共1,200元, 约3.5 km")
    ['共', '1200', '元', '约', '3.5', 'km']
    """
    return [t.replace(",", "") for t in _ANSWER_TOKEN.findall(to_half_width(text).casefold())]


@lru_cache(maxsize=1)
def _jieba():  # noqa: ANN202 - the jieba module
    import jieba

    # jieba logs "Building prefix dict..." at INFO on first use; that is noise in a CLI's output.
    jieba.setLogLevel(logging.WARNING)
    return jieba


def segment_words(text: str) -> list[str]:
    """Words for ROUGE: jieba's words for each run of CJK characters, :func:`split_tokens` for the rest.

    Only the CJK runs go through jieba: jieba splits ``3.5`` -> ``3.5`` and ``café`` -> ``caf é``, which
    would tokenise a Chinese reference differently from an English prediction holding the same number
    or word. Punctuation and whitespace are dropped; case is folded.

    >>> segment_words("我爱北京天安门。")
    ['我', '爱', '北京', '天安门']
    >>> segment_words("答案是3.5米"), segment_words("3.5")
    (['答案', '是', '3', '5', '米'], ['3', '5'])
    """
    text = to_half_width(text).casefold()
    words: list[str] = []
    start = 0
    for run in _CJK_RUN.finditer(text):
        words += split_tokens(text[start:run.start()]) + _jieba().lcut(run.group())
        start = run.end()
    return words + split_tokens(text[start:])


def count_tokens(text: str, tokenizer: object | None = None) -> int:
    """Length of ``text`` in tokens: the tokenizer's count when given, else :func:`split_tokens`.

    Without a tokenizer a CJK character counts as one token and an English word as one token, so
    lengths are comparable across models that do not share a vocabulary.
    """
    if tokenizer is not None:
        return len(tokenizer.encode(text, add_special_tokens=False))  # type: ignore[attr-defined]
    return len(split_tokens(text))
