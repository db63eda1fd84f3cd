"""What export verification measures (:class:`LogitComparison`) and the bounds that accept or refuse it.

Each kind of bound answers for itself (``accepts``, ``describe``, ``refusal``), so the check that applies
one has a single code path (:func:`dsft.export.verify.check_tolerance`). ``--tolerance`` (and
``export.tolerance``) writes any of them, parsed by :func:`parse_tolerance`; this module imports nothing
heavy, so a wrong value is refused before torch loads.

>>> parse_tolerance("0.5")
AbsoluteBound(max_abs_diff=0.5)
>>> parse_tolerance("top1=80%,kl=0.1")
DistributionBound(min_top1=0.8, max_mean_kl=0.1)
>>> parse_tolerance("diff=10%,outliers=5%")
OutlierBound(per_position=RelativeBound(max_fraction=0.1, floor=0.0), max_share=0.05)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

from dsft.errors import DsftError

TOLERANCE_SYNTAX = (
    "a number (the max |logit difference|) or comma-separated key=value: diff=X or diff=P% (max |logit "
    "difference|, absolute or as a share of the largest reference logit), outliers=P% (share of positions "
    "allowed above diff), top1=P% (min top-1 agreement), kl=X (max mean KL, nats); e.g. 'diff=10%,outliers=10%'"
)


@dataclass(frozen=True)
class LogitComparison:
    """How far an export's next-token logits are from the reference, over every prompt position."""

    max_abs_diff: float
    top1_agreement: float  # fraction of positions whose argmax token is the same
    positions: int
    prompts: int
    max_abs_logit: float = 0.0  # scale of the reference logits, to read max_abs_diff against
    mean_kl: float = 0.0  # mean over positions of KL(reference || export) of the next-token distributions, nats
    # max |logit difference| at each position, prompt by prompt (left out of the repr: one number per token)
    position_diffs: tuple[float, ...] = field(default=(), repr=False)

    @property
    def relative_diff(self) -> float:
        """``max_abs_diff`` as a fraction of the largest reference logit."""
        return self.max_abs_diff / self.max_abs_logit if self.max_abs_logit else float("inf")

    def summary(self) -> str:
        return (f"max |logit diff| {self.max_abs_diff:.3g} (max |logit| {self.max_abs_logit:.3g}), top-1 "
                f"agreement {self.top1_agreement:.1%}, mean KL {self.mean_kl:.2g} nats over {self.positions} "
                f"positions in {self.prompts} prompts")


class LogitBound(Protocol):
    """A pass criterion on a :class:`LogitComparison`; each kind states what it needs and judges for itself."""

    def accepts(self, comparison: LogitComparison) -> bool:
        """Whether the export passes (NaN figures must fail)."""
        ...

    def describe(self, comparison: LogitComparison) -> str:
        """What the bound needs, e.g. ``max |logit diff| <= 0.001``."""
        ...

    def refusal(self, comparison: LogitComparison) -> str:
        """Why a comparison it does not accept fails, for the error message."""
        ...


@dataclass(frozen=True)
class AbsoluteBound:
    """Pass criterion ``max |logit difference| <= max_abs_diff`` (float32 exports, adapters, ``--tolerance X``)."""

    max_abs_diff: float

    def limit(self, comparison: LogitComparison) -> float:
        return self.max_abs_diff

    def basis(self) -> str:
        return f"tolerance {self.max_abs_diff:g}"

    def describe(self, comparison: LogitComparison) -> str:
        return f"max |logit diff| <= {self.max_abs_diff:g}"

    def refusal(self, comparison: LogitComparison) -> str:
        return f"max |logit diff| exceeds tolerance {self.max_abs_diff:g}"

    def accepts(self, comparison: LogitComparison) -> bool:
        return comparison.max_abs_diff <= self.max_abs_diff  # NaN fails


@dataclass(frozen=True)
class RelativeBound:
    """Pass criterion for half-precision exports: a max |logit difference| that grows with the logits' scale,
    ``max(floor, max_fraction * largest reference logit)``.

    Rounding every weight to ``p`` significant bits moves each logit by a few units of 2^-p of the logits'
    scale, so an absolute bound that fits a tiny model refuses a real one. Measured on SmolLM2-135M-Instruct
    (max |logit| 40.9), correct exports: HF float16 0.055 (0.13%, 2.8 units of 2^-11), HF bfloat16 0.30
    (0.73%, 1.9 units of 2^-8), GGUF float16 0.12 (0.29%, 6 units), GGUF bfloat16 0.55 (1.35%, 3.5 units;
    llama.cpp also rounds the activations to the weights' type); the former absolute bounds (HF 0.05 / 0.25,
    GGUF 0.1 / 0.25) refused all four. They stay as the floor: on a tiny MoE model a token whose expert
    choice the rounding changes moves its logits far more than the rest (a full fine-tune of tiny V3 as
    bfloat16: 0.054 on logits of 0.92, 5.8%).
    """

    max_fraction: float
    floor: float = 0.0

    def limit(self, comparison: LogitComparison) -> float:
        return max(self.floor, self.max_fraction * comparison.max_abs_logit)

    def basis(self) -> str:
        share = f"{self.max_fraction:.2%} of the largest reference logit"
        return f"the larger of {self.floor:g} and {share}" if self.floor else share

    def describe(self, comparison: LogitComparison) -> str:
        return f"max |logit diff| <= {self.limit(comparison):.3g} ({self.basis()})"

    def refusal(self, comparison: LogitComparison) -> str:
        return f"needs {self.describe(comparison)}"

    def accepts(self, comparison: LogitComparison) -> bool:
        return comparison.max_abs_diff <= self.limit(comparison)  # NaN fails


@dataclass(frozen=True)
class DistributionBound:
    """Pass criteria for quantised exports, on the next-token distributions rather than raw logits.

    Rounding weights to 8 bits moves individual logits of a real model by several units (measured: 2.7-4.3
    on SmolLM2-135M, as much as llama.cpp's own q8_0 file of it) while the distributions barely move;
    the bugs verification exists for (wrong rope layout, misplaced experts, wrong tokenizer) collapse
    top-1 agreement and raise the KL by orders of magnitude. Either half may be left out (0, infinity).
    """

    min_top1: float = 0.0
    max_mean_kl: float = math.inf

    def describe(self, comparison: LogitComparison) -> str:
        parts = [f"top-1 agreement >= {self.min_top1:.0%}"] if self.min_top1 > 0 else []
        parts += [f"mean KL <= {self.max_mean_kl:g} nats"] if math.isfinite(self.max_mean_kl) else []
        return " and ".join(parts) or "finite logits"

    def refusal(self, comparison: LogitComparison) -> str:
        return f"needs {self.describe(comparison)}"

    def accepts(self, comparison: LogitComparison) -> bool:
        return (comparison.top1_agreement >= self.min_top1 and comparison.mean_kl <= self.max_mean_kl  # NaN fails
                and not math.isnan(comparison.max_abs_diff))


@dataclass(frozen=True)
class OutlierBound:
    """At most ``max_share`` of the positions may have a max |logit difference| above ``per_position``'s limit.

    For quantised MoE models: 8-bit rounding changes which experts a few tokens are routed to, and those
    tokens' logits move by the logits' whole scale while every other position stays within rounding noise;
    the converter bugs this check exists for (misplaced experts or router bias, a wrong MLA split) move most
    positions. Measured on tiny DeepSeek-V3 with trained-like weights, in tests/export/test_moe_verification.py.
    """

    per_position: AbsoluteBound | RelativeBound
    max_share: float

    def over(self, comparison: LogitComparison) -> int:
        """Positions whose max |logit difference| exceeds the per-position limit (NaN counts as over)."""
        limit = self.per_position.limit(comparison)
        return sum(not diff <= limit for diff in comparison.position_diffs)

    def describe(self, comparison: LogitComparison) -> str:
        return (f"at most {self.max_share:.0%} of positions with max |logit diff| > "
                f"{self.per_position.limit(comparison):.3g} ({self.per_position.basis()}), got "
                f"{self.over(comparison)}/{comparison.positions}")

    def refusal(self, comparison: LogitComparison) -> str:
        return f"needs {self.describe(comparison)}"

    def accepts(self, comparison: LogitComparison) -> bool:
        measured = len(comparison.position_diffs) == comparison.positions > 0
        return (measured and not math.isnan(comparison.max_abs_diff)  # NaN anywhere fails
                and self.over(comparison) <= self.max_share * comparison.positions)


# Share of positions a MoE model's rounded export may move past its dtype's per-position limit (rerouted tokens).
REROUTED_SHARE = 0.10


def tolerating_rerouted_tokens(per_position: AbsoluteBound | RelativeBound) -> OutlierBound:
    """A rounded dtype's bound for a MoE model: ``per_position`` may fail at up to :data:`REROUTED_SHARE` of the
    positions, the tokens whose experts the rounding changed (each moves by the logits' whole scale)."""
    return OutlierBound(per_position, REROUTED_SHARE)


@dataclass(frozen=True)
class AllBounds:
    """Every one of ``bounds`` must accept (``--tolerance 'diff=5%,top1=90%'``)."""

    bounds: tuple[LogitBound, ...]

    def describe(self, comparison: LogitComparison) -> str:
        return " and ".join(bound.describe(comparison) for bound in self.bounds)

    def refusal(self, comparison: LogitComparison) -> str:
        return "; ".join(bound.refusal(comparison) for bound in self.bounds if not bound.accepts(comparison))

    def accepts(self, comparison: LogitComparison) -> bool:
        return all(bound.accepts(comparison) for bound in self.bounds)


def as_bound(tolerance: float | LogitBound) -> LogitBound:
    """A bare number is a max |logit difference| (what library callers pass)."""
    return AbsoluteBound(float(tolerance)) if isinstance(tolerance, (int, float)) else tolerance


def parse_tolerance(value: str | float, name: str = "--tolerance") -> LogitBound:
    """The bound ``value`` writes (see :data:`TOLERANCE_SYNTAX`); :class:`DsftError` naming ``name`` if invalid."""
    text = str(value).strip()
    number = _number(text)
    if number is not None:
        if not 0 < number < math.inf:  # inf: a bound no difference exceeds (--no-verify is the way to skip it)
            raise DsftError(f"{name} must be a finite number > 0, got {value}")
        return AbsoluteBound(number)
    fields: dict[str, str] = {}
    for item in text.split(","):
        key, sep, raw = (part.strip() for part in item.partition("="))
        if not sep or key not in ("diff", "outliers", "top1", "kl") or key in fields:
            problem = f"repeated key {key!r}" if key in fields else f"cannot read {item.strip()!r}"
            raise DsftError(f"{name} {str(value)!r}: {problem}; expected {TOLERANCE_SYNTAX}")
        fields[key] = raw
    bounds: list[LogitBound] = []
    if "outliers" in fields and "diff" not in fields:
        raise DsftError(f"{name} {str(value)!r}: outliers= needs diff= (the limit the outlying positions exceed)")
    if "diff" in fields:
        diff = _percent(fields["diff"], name, value, "diff", allow_plain=True)
        per_position = RelativeBound(diff[0]) if diff[1] else AbsoluteBound(diff[0])
        if "outliers" in fields:
            share = _percent(fields["outliers"], name, value, "outliers", upper=1.0)[0]
            bounds.append(OutlierBound(per_position, share))
        else:
            bounds.append(per_position)
    if "top1" in fields or "kl" in fields:
        top1 = _percent(fields["top1"], name, value, "top1", upper=1.0)[0] if "top1" in fields else 0.0
        kl = _positive(fields["kl"], name, value, "kl") if "kl" in fields else math.inf
        bounds.append(DistributionBound(top1, kl))
    return bounds[0] if len(bounds) == 1 else AllBounds(tuple(bounds))


def _number(text: str) -> float | None:
    """``text`` as float() reads it, in ASCII only: float() reads any script's digits (a full-width ８)."""
    if not text.isascii():
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _positive(raw: str, name: str, value: str | float, key: str) -> float:
    number = _number(raw)
    if number is None or not number > 0 or not math.isfinite(number):
        raise DsftError(f"{name} {str(value)!r}: {key}= must be a number > 0, got {raw!r}")
    return number


def _percent(raw: str, name: str, value: str | float, key: str, upper: float | None = None,
             allow_plain: bool = False) -> tuple[float, bool]:
    """``P%`` as a fraction (True), or, where ``allow_plain``, a plain positive number (False)."""
    if raw.endswith("%"):
        number = _number(raw[:-1])
        if number is not None and 0 < number / 100 <= (upper if upper is not None else math.inf):
            return number / 100, True
    elif allow_plain:
        number = _number(raw)
        if number is not None and 0 < number < math.inf:
            return number, False
    limit = f"in (0%, {upper:.0%}]" if upper is not None else "> 0%"
    plain = "a number > 0 or " if allow_plain else ""
    raise DsftError(f"{name} {str(value)!r}: {key}= must be {plain}a percentage {limit}, got {raw!r}")
