"""Numbers with units, as written in Chinese and English answers, and numeric accuracy.

Conventions:

* Text is folded to half-width first, so ``１２３`` is ``123``, ``５０％`` is ``50%`` and no-break, narrow and
  thin spaces are spaces.
* Thousands separators: ``1,200`` and ``1 200`` are 1200 (groups of exactly three digits after a comma, or
  after a space; not mixed); ``1,2`` and ``1, 2`` are two numbers (a decimal comma is not read), and so is
  ``1 2``, but ``3 100`` is one. A ``-``/``+``/``−`` (en and em dashes are ``-``) right after a digit or letter is
  not a sign (``3-5`` is 3 and 5); one before a currency symbol is (``-$5`` is -5, as ``$-5``).
* Fractions: ``3/4`` and LaTeX ``\\frac{3}{4}`` (``\\dfrac``, ``\\tfrac``) are 0.75; ``a/b/c`` (a date) is
  three numbers, and so is a zero denominator. Powers of ten: ``1e-3``, ``2.5E+3``, ``1.2 \\times 10^{5}``,
  ``3×10^-2`` (a bare ``10^{-3}`` is 10 and -3).
* Scale words multiply the value: 千 (1e3), 万 (1e4), 百万 (1e6), 千万 (1e7), 亿 (1e8), 万亿 (1e12),
  ``k``/``thousand`` (1e3), ``million`` (1e6), ``billion`` (1e9), plurals alike. So ``1.2万`` == ``12,000`` == ``12k``.
* Units after the number are recorded, not converted: ``%`` and ``‰`` (``50%`` is 50 with unit ``%``),
  年 月 (个月 == 月) 周 日 天 小时 分钟 秒 岁 元 (块 == 元) 人 次 个 倍. Two quantities are equal when their
  values agree within the tolerance and their units agree or one side has none (``3`` matches ``3年``;
  ``3年`` does not match ``3月``).
* Numbers written in Chinese numerals (三, 十二) are not recognised.
* Whole numbers as written (``123``, ``1,200``, ``12k``) are compared exactly; any other pair within
  ``rel_tol`` (1e-4) / ``abs_tol`` (1e-6), the rounding of a written decimal.
* :func:`numeric_match` compares the LAST number of the prediction's answer with the LAST number of the
  reference (answers usually end with the result: "共需 3 年", "so the total is 1,200").
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from dsft.eval.text import to_half_width

SCALES: dict[str, float] = {
    "万亿": 1e12, "千万": 1e7, "百万": 1e6, "亿": 1e8, "万": 1e4, "千": 1e3,
    "thousand": 1e3, "million": 1e6, "billion": 1e9, "k": 1e3,
}
UNIT_ALIASES: dict[str, str] = {"个月": "月", "块": "元"}
_UNITS = ("%", "‰", "个月", "年", "月", "周", "日", "天", "小时", "分钟", "秒", "岁", "元", "块", "人", "次", "个", "倍")

_MINUS = "-\u2212"  # hyphen-minus and the unicode minus sign (NFKC folds the full-width one to "-")
_NUMBER = re.compile(
    # a sign, unless right after a digit, letter or ")" (a range dash: 3-5); then perhaps a currency symbol
    r"(?P<sign>(?<![0-9A-Za-z)])[-+\u2212])?(?:(?:\\?\$|[€£¥])\s*)?"
    r"(?:\\[dt]?frac\{\s*(?P<tex_num>\d+)\s*\}\{\s*(?P<tex_den>0*[1-9]\d*)\s*\}"
    # a/b is a fraction unless it is part of a longer a/b/c (a date) or a decimal
    r"|(?<![\d/.,])(?P<num>\d+)/(?P<den>0*[1-9]\d*)(?![\d/]|[.,]\d)"
    # thousands in groups of exactly three digits after a comma, or after a space (NFKC folds no-break, narrow
    # and thin spaces to one), not mixed
    r"|(?P<digits>(?:\d{1,3}(?:,\d{3})+|\d{1,3}(?: \d{3})+)(?!\d)(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
    # a power of ten: 1e-3, 2.5E+3, 1.2 \times 10^{5}, 3×10^-2 (not 0x1e5f: no letter or digit may follow)
    r"(?:[eE](?P<exponent>[-+\u2212]?\d+)(?![0-9A-Za-z])"
    r"|\s*(?:\\times|\\cdot|×|\*)\s*10\^(?:\{\s*(?P<tex_exponent>[-+\u2212]?\d+)\s*\}|(?P<power>[-+\u2212]?\d+)))?)"
    r"\s*(?P<scale>万亿|千万|百万|亿|万|千(?![米克])|(?:(?:thousand|million|billion)s?|k)(?![A-Za-z]))?"
    r"\s*(?P<unit>" + "|".join(map(re.escape, _UNITS)) + r")?",
    re.IGNORECASE,
)


def _value(match: re.Match[str]) -> float:
    """The number a match spells, before scale words and sign."""
    if match["tex_num"] is not None:
        return int(match["tex_num"]) / int(match["tex_den"])
    if match["num"] is not None:
        return int(match["num"]) / int(match["den"])
    mantissa = match["digits"].replace(",", "").replace(" ", "")
    exponent = match["exponent"] or match["tex_exponent"] or match["power"]
    if exponent is None:
        return float(mantissa)
    return float(f"{mantissa}e{exponent.replace(chr(0x2212), '-')}")


@dataclass(frozen=True)
class Quantity:
    """A number found in text: its value after scale words, and its unit (None when absent).

    ``integer``: written as a whole number (``123``, ``1,200``, ``12k``; not ``1.2万``, ``3/4``, ``1e3``), which
    compares exactly, not within the tolerance meant for rounded decimals."""

    value: float
    unit: str | None = None
    integer: bool = field(default=False, compare=False, repr=False)


def extract_quantities(text: str) -> list[Quantity]:
    """Every number in ``text``, in order of appearance.

    >>> extract_quantities("营收1.2万元，增长50%，用时3个月")
    [Quantity(value=12000.0, unit='元'), Quantity(value=50.0, unit='%'), Quantity(value=3.0, unit='月')]
    >>> extract_quantities("from 1,200 to -3.5k")
    [Quantity(value=1200.0, unit=None), Quantity(value=-3500.0, unit=None)]
    >>> extract_quantities("3/4 = \\\\frac{3}{4}, on 2024/5/1")
    [Quantity(value=0.75, unit=None), Quantity(value=0.75, unit=None), Quantity(value=2024.0, unit=None), Quantity(value=5.0, unit=None), Quantity(value=1.0, unit=None)]
    """
    quantities = []
    for match in _NUMBER.finditer(to_half_width(text)):
        value = _value(match)
        if match["scale"]:
            value *= SCALES[match["scale"].lower().removesuffix("s")]
        if match["sign"] and match["sign"] in _MINUS:
            value = -value
        unit = match["unit"]
        written_whole = match["digits"] is not None and "." not in match["digits"]
        integer = written_whole and not (match["exponent"] or match["tex_exponent"] or match["power"])
        quantities.append(Quantity(value, UNIT_ALIASES.get(unit, unit) if unit else None, integer))
    return quantities


def quantities_equal(a: Quantity, b: Quantity, rel_tol: float = 1e-4, abs_tol: float = 1e-6) -> bool:
    """Units compatible (equal, or missing on one side) and values equal: exactly when both are written
    as whole numbers (123457 is not 123456, though within 1e-4 of it), else within the tolerance."""
    if a.unit and b.unit and a.unit != b.unit:
        return False
    if a.integer and b.integer:
        return a.value == b.value
    return math.isclose(a.value, b.value, rel_tol=rel_tol, abs_tol=abs_tol)


def numeric_match(prediction: str, reference: str, rel_tol: float = 1e-4, abs_tol: float = 1e-6) -> bool | None:
    """Whether the prediction's last number equals the reference's last number.

    None when the reference has no number (the sample cannot be scored numerically); False when the
    prediction has none.

    >>> numeric_match("总计 1.2万 元", "12,000元")
    True
    >>> numeric_match("大约3年", "3个月") is False
    True
    >>> numeric_match("no idea", "北京") is None
    True
    """
    expected = extract_quantities(reference)
    if not expected:
        return None
    found = extract_quantities(prediction)
    if not found:
        return False
    return quantities_equal(found[-1], expected[-1], rel_tol=rel_tol, abs_tol=abs_tol)
