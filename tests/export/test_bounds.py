"""``--tolerance`` text -> the bound verification applies, and what each bound reports when it refuses."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dsft.errors import DsftError
from dsft.export.bounds import (
    AbsoluteBound, AllBounds, DistributionBound, OutlierBound, RelativeBound, parse_tolerance,
)
from dsft.export.verify import VerificationError, check_tolerance, compare_logits


@pytest.mark.parametrize(("text", "bound"), [
    ("0.5", AbsoluteBound(0.5)),
    ("diff=0.5", AbsoluteBound(0.5)),
    (" diff = 2% ", RelativeBound(0.02)),
    ("top1=85%", DistributionBound(min_top1=0.85)),
    ("kl=0.05", DistributionBound(max_mean_kl=0.05)),
    ("top1=85%,kl=0.05", DistributionBound(0.85, 0.05)),
    ("diff=10%,outliers=10%", OutlierBound(RelativeBound(0.1), 0.1)),
    ("diff=2,outliers=5%", OutlierBound(AbsoluteBound(2.0), 0.05)),
    ("diff=5%,top1=90%", AllBounds((RelativeBound(0.05), DistributionBound(min_top1=0.9)))),
])
def test_tolerance_text_writes_each_bound(text, bound) -> None:
    assert parse_tolerance(text) == bound


@pytest.mark.parametrize(("text", "message"), [
    ("-1", "--tolerance must be a finite number > 0, got -1"),
    ("nan", "--tolerance must be a finite number > 0, got nan"),
    # A bound no difference exceeds: every export passed verification (--no-verify is what turns it off).
    ("inf", "--tolerance must be a finite number > 0, got inf"),
    ("1e999", "--tolerance must be a finite number > 0, got 1e999"),
    # float() reads any script's digits: a full-width 8 was taken for 8, which typer refuses in a number flag.
    ("８", "--tolerance '８': cannot read '８'; expected a number"),
    ("diff=８%", "diff= must be a number > 0 or a percentage > 0%, got '８%'"),
    ("loose", "--tolerance 'loose': cannot read 'loose'; expected a number"),
    ("diff=5%,outlier=10%", "cannot read 'outlier=10%'"),
    ("diff=1,diff=2", "repeated key 'diff'"),
    ("outliers=10%", "outliers= needs diff="),
    ("diff=0", "diff= must be a number > 0 or a percentage > 0%, got '0'"),
    ("diff=10%,outliers=0.1", "outliers= must be a percentage in (0%, 100%], got '0.1'"),
    ("top1=120%", "top1= must be a percentage in (0%, 100%]"),
    ("kl=inf", "kl= must be a number > 0, got 'inf'"),
])
def test_unreadable_tolerance_is_refused_naming_the_flag(text, message) -> None:
    with pytest.raises(DsftError) as refused:
        parse_tolerance(text)
    assert str(refused.value).startswith("--tolerance") and message in str(refused.value)
    with pytest.raises(DsftError, match="^export.tolerance"):
        parse_tolerance(text, name="export.tolerance")


def test_a_combined_bound_names_only_the_part_that_failed() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(0.0, 4.0, (30, 40)).astype(np.float32)
    comparison = compare_logits([ref], [ref + rng.uniform(-1.0, 1.0, ref.shape).astype(np.float32)])
    bound = parse_tolerance("diff=0.5,top1=50%")
    assert comparison.max_abs_diff > 0.5 and comparison.top1_agreement >= 0.5
    with pytest.raises(VerificationError) as refused:
        check_tolerance(comparison, bound, "export")
    message = str(refused.value)
    assert "max |logit diff| exceeds tolerance 0.5" in message and "top-1 agreement >= 50%" not in message
    check_tolerance(comparison, parse_tolerance("diff=1.5,top1=50%"), "export")


def test_distribution_bound_with_one_half_left_out_still_refuses_nan() -> None:
    ref = np.random.default_rng(1).normal(0.0, 4.0, (10, 40)).astype(np.float32)
    broken = ref.copy()
    broken[4] = np.nan
    comparison = compare_logits([ref], [broken])
    assert math.isnan(comparison.max_abs_diff)
    for text in ("top1=10%", "kl=100", "diff=100%,outliers=50%", "diff=1000"):
        assert not parse_tolerance(text).accepts(comparison), text
