"""Metric unit tests: every expected value is worked out by hand in the comment beside it."""

import math
import re
import string
from collections import Counter

import pytest

from dsft.eval import metrics as m
from dsft.eval.numbers import Quantity, extract_quantities, numeric_match
from dsft.eval.text import answer_tokens, contains_cjk, normalize_answer, segment_words, split_tokens


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ("北京。", "北京", 1.0),  # trailing ideographic full stop dropped
        ("ＰＡＲＩＳ", "paris", 1.0),  # full-width letters folded, case folded
        ("The   answer\nis 4", "the answer is 4", 1.0),  # whitespace collapsed
        ("北京 大学", "北京大学", 1.0),  # no spaces between CJK characters
        ("你好，世界", "你好,世界", 1.0),  # full-width comma == half-width comma
        ("「是」", '"是"', 1.0),  # CJK quotes == ASCII quotes
        ("4", "four", 0.0),
        ("北京", "上海", 0.0),
        ("**Paris**", "Paris", 1.0),  # Markdown emphasis around an answer (chat models bold it)
        ("**答案：42。**", "答案：42", 1.0),
        ("`x_1`", "x_1", 1.0),
        ("a*b", "ab", 0.0),  # only at the ends
    ],
)
def test_exact_match(prediction: str, reference: str, expected: float) -> None:
    assert m.exact_match(prediction, reference) == expected


def test_normalize_answer_examples() -> None:
    assert normalize_answer("  Hello,  WORLD! ") == "hello, world"
    assert normalize_answer("答案：５０％。") == "答案:50%"


def test_token_f1_chinese_characters() -> None:
    # pred 北/京/市, ref 北/京: overlap 2, P = 2/3, R = 1, F1 = 2PR/(P+R) = 0.8
    assert m.token_f1("北京市", "北京") == pytest.approx(0.8)


def test_token_f1_english_words() -> None:
    # pred [the cat sat on the mat] (6), ref [a cat on the mat] (5); overlap cat, on, the (once), mat = 4
    # P = 4/6, R = 4/5, F1 = 2 * (8/15) / (22/15) = 16/22
    assert m.token_f1("the cat sat on the mat", "a cat on the mat") == pytest.approx(16 / 22)


def test_token_f1_mixed_text() -> None:
    assert split_tokens("我用Python写") == ["我", "用", "python", "写"]
    # pred [我 用 python], ref [我 用 python 写]: overlap 3, P = 1, R = 3/4, F1 = 6/7
    assert m.token_f1("我用Python", "我用python写") == pytest.approx(6 / 7)


def _squad_tokens(text: str) -> list[str]:
    # SQuAD v1.1's official normalize_answer: lower, delete punctuation, drop articles, split on spaces.
    text = "".join(c for c in text.lower() if c not in set(string.punctuation))
    return re.sub(r"\b(a|an|the)\b", " ", text).split()


def _squad_f1(prediction: str, reference: str) -> float:
    predicted, expected = _squad_tokens(prediction), _squad_tokens(reference)
    if not predicted or not expected:
        return float(predicted == expected)
    overlap = sum((Counter(predicted) & Counter(expected)).values())
    return 0.0 if overlap == 0 else 2 * overlap / (len(predicted) + len(expected))


@pytest.mark.parametrize(
    ("prediction", "reference", "dsft", "squad"),
    [
        ("Paris", "paris.", 1.0, 1.0),  # the same where neither articles nor inner punctuation occur
        ("The answer is Paris", "Paris", 0.4, 0.5),  # articles kept (docs/eval.md says so)
        ("the cat sat on the mat", "the cat is on the mat", 5 / 6, 0.75),
        ("state-of-the-art model", "state of the art model", 1.0, 1 / 3),  # punctuation separates words
        ("1,200 people", "1200 people", 1.0, 1.0),  # a number is one token, its separators dropped
        ("3.5", "5.3", 0.0, 0.0),  # different numbers: split at the point they were the same bag
        ("", "Paris", 0.0, 0.0),
    ],
)
def test_token_f1_against_squad_differs_only_as_documented(prediction: str, reference: str, dsft: float,
                                                            squad: float) -> None:
    assert m.token_f1(prediction, reference) == pytest.approx(dsft)
    assert _squad_f1(prediction, reference) == pytest.approx(squad)


def test_f1_tokens_keep_a_number_whole() -> None:
    assert answer_tokens("共1,200元, 3.5 km, gpt-4o 1,2") == ["共", "1200", "元", "3.5", "km", "gpt", "4o", "1", "2"]
    # pred [3.5 米], ref [3.5]: P = 1/2, R = 1 -> 2/3 (split at the point, 3 and 5 matched 2 of 3: 0.8)
    assert m.token_f1("3.5米", "3.5") == pytest.approx(2 / 3)


def test_token_f1_empty() -> None:
    assert m.token_f1("", "") == 1.0
    assert m.token_f1("x", "") == 0.0
    assert m.token_f1("。", "北京") == 0.0  # punctuation only has no tokens


def test_bleu_english_hand_computed() -> None:
    # hyp "the cat sat on the mat", ref "the cat sat on a mat", same length so BP = 1.
    # n-gram precisions: 5/6, 3/5, 2/4, 1/3 -> BLEU = 100 * (5/6 * 3/5 * 2/4 * 1/3) ** (1/4)
    expected = 100 * (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25
    assert m.corpus_bleu(["the cat sat on the mat"], ["the cat sat on a mat"]) == pytest.approx(expected)
    assert m.bleu_tokenizer(["the cat"]) == "13a"


def test_bleu_chinese_uses_zh_tokenizer() -> None:
    # zh tokenizer: one token per character. hyp 4 chars, ref 7; every n-gram of the hyp is in the ref,
    # so BLEU = 100 * BP = 100 * exp(1 - 7/4)
    assert m.bleu_tokenizer(["我爱北京天安门"]) == "zh"
    assert m.corpus_bleu(["我爱北京"], ["我爱北京天安门"]) == pytest.approx(100 * math.exp(-0.75))
    # Without the zh tokenizer the unsegmented sentence would be one token and score 0.
    assert m.corpus_bleu(["我爱北京"], ["我爱北京天安门"], tokenize="13a") == 0.0


def test_rouge_english_hand_computed() -> None:
    pred, ref = "the cat sat on the mat", "the cat is on the mat"
    # unigrams overlap: the x2, cat, on, mat = 5 of 6 each side -> 5/6
    # bigrams: pred {the cat, cat sat, sat on, on the, the mat}, ref {the cat, cat is, is on, on the,
    # the mat}: overlap 3 of 5 -> 0.6; LCS "the cat on the mat" = 5 -> 5/6
    assert m.rouge_scores(pred, ref) == pytest.approx({"rouge1": 5 / 6, "rouge2": 0.6, "rougeL": 5 / 6})


def test_rouge_chinese_segmented_with_jieba() -> None:
    assert segment_words("我爱北京天安门") == ["我", "爱", "北京", "天安门"]
    assert segment_words("我爱北京") == ["我", "爱", "北京"]
    # rouge1: overlap 3, P = 3/4, R = 1 -> 6/7; rouge2: bigrams 3 vs 2, overlap 2 -> P = 2/3, R = 1 -> 0.8
    # rougeL: LCS 3 -> 6/7
    scores = m.rouge_scores("我爱北京天安门", "我爱北京")
    assert scores == pytest.approx({"rouge1": 6 / 7, "rouge2": 0.8, "rougeL": 6 / 7})


def test_rouge_tokenises_a_number_alike_in_chinese_and_english_text() -> None:
    # The same figure in an English prediction and a Chinese reference is the same tokens: pred [3 5],
    # ref [答案 3 5]. rouge1: overlap 2, P = 1, R = 2/3 -> 0.8; rouge2: (3, 5) shared, P = 1, R = 1/2
    # -> 2/3; rougeL: LCS 2 -> 0.8. (rouge-score, ASCII only, gives 1.0 after dropping 答案 and "."; jieba
    # alone kept "3.5" whole on the Chinese side only, so dsft scored 0, 0, 0.)
    assert m.rouge_scores("3.5", "答案3.5") == pytest.approx({"rouge1": 0.8, "rouge2": 2 / 3, "rougeL": 0.8})
    # Outside the CJK runs, words are the F1 words whatever the rest of the text is.
    for text in ("café很好", "x_y是1,200个", "gpt-4很好", "state-of-the-art模型"):
        assert [w for w in segment_words(text) if not contains_cjk(w)] == [
            t for t in split_tokens(text) if not contains_cjk(t)], text


def test_rouge_empty_side_scores_zero() -> None:
    assert m.rouge_scores("", "北京") == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1,200", [Quantity(1200.0)]),
        ("1.2万", [Quantity(12000.0)]),
        ("3亿人", [Quantity(3e8, "人")]),
        ("12k", [Quantity(12000.0)]),
        ("增长５０％", [Quantity(50.0, "%")]),
        ("2023年5月", [Quantity(2023.0, "年"), Quantity(5.0, "月")]),
        ("3个月", [Quantity(3.0, "月")]),
        ("3-5天", [Quantity(3.0), Quantity(5.0, "天")]),
        ("温度是-5度", [Quantity(-5.0)]),
        ("1,2", [Quantity(1.0), Quantity(2.0)]),
        ("三年", []),
    ],
)
def test_extract_quantities(text: str, expected: list[Quantity]) -> None:
    assert extract_quantities(text) == expected


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ("总计1.2万元", "12,000元", True),
        ("12k", "1.2万", True),
        ("50%", "50", True),  # unit on one side only
        ("3年", "3月", False),  # different units
        ("3.14159", "3.1416", True),  # |diff| / 3.1416 = 3e-6 < 1e-4
        ("3.14", "3.1416", False),  # 5e-4 > 1e-4
        ("第1步得2，最后答案是8", "8", True),  # the last number counts
        ("8 then 9", "8", False),
        ("不知道", "8", False),
        ("8", "北京", None),  # nothing numeric to compare with
    ],
)
def test_numeric_match(prediction: str, reference: str, expected: bool | None) -> None:
    assert numeric_match(prediction, reference) is expected


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ("1/2", "0.5", True),  # a fraction is its value, both ways
        ("0.5", "1/2", True),
        ("3/4", "4", False),  # not the denominator: read as 3 and 4 it was a false match
        ("the answer is 3/4", "3", False),
        (r"\boxed{\frac{3}{4}}", "0.75", True),  # R1's LaTeX answers
        (r"$-\dfrac{1}{3}$", "-1/3", True),
        ("-1/2", "0.5", False),
        ("on 2024/5/1", "1", True),  # a date is three numbers, the last is 1
        ("1/0", "0", True),  # no fraction with a zero denominator: 1 and 0
        ("1.5 millions", "1,500,000", True),  # a plural scale word scales too
    ],
)
def test_numeric_match_fractions_and_plural_scales(prediction: str, reference: str, expected: bool) -> None:
    assert numeric_match(prediction, reference) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # scientific notation, and the same written as a power of ten (MATH answers)
        ("1e-3", [Quantity(0.001)]),
        ("2.5E+3 cells", [Quantity(2500.0)]),
        ("k = 1e−3", [Quantity(0.001)]),  # unicode minus in the exponent
        (r"$1.2 \times 10^{5}$", [Quantity(120000.0)]),
        ("3×10^-2 m", [Quantity(0.03)]),
        ("0x1e5f", [Quantity(0.0), Quantity(1.0), Quantity(5.0)]),  # not an exponent when a letter follows
        # spaces (and no-break, narrow and thin spaces) as thousands separators: groups of exactly three digits
        ("1 000", [Quantity(1000.0)]),
        ("12 345 678.5 元", [Quantity(12345678.5, "元")]),
        ("1\u00a0000 000", [Quantity(1000000.0)]),
        ("5\u202f000 people", [Quantity(5000.0)]),
        ("1\u2009000", [Quantity(1000.0)]),
        ("１　０００", [Quantity(1000.0)]),  # full-width digits and an ideographic space
        ("1 2 3", [Quantity(1.0), Quantity(2.0), Quantity(3.0)]),  # not groups of three: three numbers
        ("1 0001", [Quantity(1.0), Quantity(1.0)]),
        ("1, 2", [Quantity(1.0), Quantity(2.0)]),  # a comma and a space: a list
        # a sign before a currency symbol
        ("-$5", [Quantity(-5.0)]),
        ("$-5", [Quantity(-5.0)]),
        ("−$1,200.50", [Quantity(-1200.5)]),
        (r"-\$5", [Quantity(-5.0)]),
        ("-€ 3", [Quantity(-3.0)]),
        ("－￥５", [Quantity(-5.0)]),  # full-width minus, yen sign and digit
        ("US-$5", [Quantity(5.0)]),  # a dash after a letter is no sign, with or without the symbol
        ("–5", [Quantity(-5.0)]),  # an en dash counts as "-" (a sign here, a range dash in 3–5)
        ("3–5", [Quantity(3.0), Quantity(5.0)]),
        ("10^{-3}", [Quantity(10.0), Quantity(-3.0)]),  # a bare power is not read as one
        ("1,5", [Quantity(1.0), Quantity(5.0)]),  # a decimal comma is not read
        # already read; kept so they stay read
        ("−5", [Quantity(-5.0)]),
        ("５", [Quantity(5.0)]),
        ("１，０００", [Quantity(1000.0)]),
        ("1.5万", [Quantity(15000.0)]),
    ],
)
def test_extract_quantities_reads_notations_graders_see(text: str, expected: list[Quantity]) -> None:
    assert extract_quantities(text) == expected


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ("so the rate is 1e-3", "0.001", True),
        (r"\boxed{1.2 \times 10^{5}}", "120000", True),
        ("The answer is 1 000 000.", "1,000,000", True),
        ("He lost -$5.", "-5", True),
        ("He lost -$5.", "5", False),  # the sign is kept: -5 is not 5
        ("答案是－５", "-5", True),
        ("1.5万人", "15000", True),
    ],
)
def test_numeric_match_reads_notations_graders_see(prediction: str, reference: str, expected: bool) -> None:
    assert numeric_match(prediction, reference) is expected


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ("The total is 123457", "123456", False),  # off by one: within rel_tol 1e-4, but a wrong count
        ("10001", "10,000", False),
        ("12k", "12,000", True),  # integers as written, scaled: equal exactly
        ("1.2万", "12000", True),  # a decimal as written: compared within the tolerance
        ("3.0", "3", True),
        ("123456.00001", "123456", True),
    ],
)
def test_numeric_match_integers_are_equal_exactly(prediction: str, reference: str, expected: bool) -> None:
    assert numeric_match(prediction, reference) is expected


@pytest.mark.parametrize(
    ("answer", "choices", "expected"),
    [
        ("答案是B", None, "B"),
        ("答案：C。", None, "C"),
        ("The answer is (D).", None, "D"),
        ("A good choice is C", None, "C"),  # the article "A" is not an answer
        ("B. because it is", None, "B"),
        ("选A", None, "A"),
        ("It is Paris", ["Rome", "Paris", "Oslo"], "B"),  # the text of exactly one choice
        ("E", None, None),  # only A-D without choices
        ("E", ["1", "2", "3", "4", "5"], "E"),
        ("I don't know", None, None),
        ("答案是b", None, "B"),  # after a Chinese keyword a lower-case letter is an option too
        ("我选c。", None, "C"),
        ("The answer is a dog", None, None),  # in English "a" is a word
    ],
)
def test_extract_choice(answer: str, choices: list[str] | None, expected: str | None) -> None:
    assert m.extract_choice(answer, choices) == expected


@pytest.mark.parametrize(
    ("answer", "choices", "expected"),
    [
        ("100", ["1", "10", "100"], "C"),  # "1" and "10" are inside "100": the answer names only "100"
        ("The answer is 12", ["2", "12"], "B"),
        ("北京大学", ["北京", "北京大学"], "B"),
        ("北京", ["北京", "北京大学"], "A"),
        ("10 or 2", ["2", "10"], None),  # two choices named: no pick
    ],
)
def test_extract_choice_a_choice_inside_another_is_not_a_second_hit(answer: str, choices: list[str],
                                                                   expected: str | None) -> None:
    assert m.extract_choice(answer, choices) == expected


def test_match_label() -> None:
    assert m.match_label("正面", ["正面", "负面"]) == "正面"
    assert m.match_label("情感是负面的", ["正面", "负面"]) == "负面"
    assert m.match_label("Positive!", ["positive", "negative"]) == "positive"
    assert m.match_label("neither", ["positive", "negative"]) is None
    # "正面" inside "非正面" is not a second label named (it was: no label, a miss for a right answer).
    assert m.match_label("情感是非正面的", ["正面", "非正面"]) == "非正面"
    assert m.match_label("情感是正面的", ["正面", "非正面"]) == "正面"


def test_macro_f1_hand_computed_and_against_sklearn() -> None:
    references = ["pos", "pos", "neg", "neu"]
    predictions = ["pos", "neg", "neg", None]
    # pos: TP 1, predicted 1, true 2 -> P 1, R 1/2, F1 2/3; neg: TP 1, predicted 2, true 1 -> 2/3; neu: 0
    assert m.macro_f1(references, predictions) == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    from sklearn.metrics import f1_score

    sk = f1_score(references, [p or "<none>" for p in predictions], labels=["neg", "neu", "pos"],
                  average="macro", zero_division=0)
    assert m.macro_f1(references, predictions) == pytest.approx(sk)
