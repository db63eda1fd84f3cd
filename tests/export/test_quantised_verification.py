"""Quantised exports are verified on next-token distributions (top-1 agreement, KL), not a raw logit bound;
half-precision ones on a logit bound relative to the logits' scale."""

from __future__ import annotations

import numpy as np
import pytest

from dsft.errors import DsftError
from dsft.export.gguf_export import DEFAULT_GGUF_TOLERANCE
from dsft.export.hf import DEFAULT_TOLERANCE
from dsft.export.verify import VerificationError, check_tolerance, compare_logits


def _real_like_logits(seed: int, positions: int = 40, vocab: int = 500) -> np.ndarray:
    """Peaked distributions with logits up to ~40, like a real model's (SmolLM2: max |logit| 40.9)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 4.0, (positions, vocab))
    logits[np.arange(positions), rng.integers(0, vocab, positions)] += 30.0
    return logits.astype(np.float32)


def test_kl_is_zero_for_equal_and_exact_for_a_known_pair() -> None:
    ref = _real_like_logits(0)
    assert compare_logits([ref], [ref]).mean_kl == pytest.approx(0.0, abs=1e-9)
    p, q = np.log(np.array([[0.5, 0.5]])), np.log(np.array([[0.9, 0.1]]))
    expected = 0.5 * np.log(0.5 / 0.9) + 0.5 * np.log(0.5 / 0.1)
    assert compare_logits([p], [q]).mean_kl == pytest.approx(expected, rel=1e-6)


def test_q8_0_default_accepts_rounding_noise_and_refuses_a_broken_export() -> None:
    ref = _real_like_logits(1)
    # Rounding noise of a few units on the logits (q8_0 of a real model: max |diff| 2.7-4.3).
    noisy = ref + np.random.default_rng(2).normal(0.0, 0.8, ref.shape).astype(np.float32)
    comparison = compare_logits([ref], [noisy])
    assert comparison.max_abs_diff > 2.5
    check_tolerance(comparison, DEFAULT_GGUF_TOLERANCE["q8_0"], "q8_0 export")
    # A broken export (e.g. wrong rope layout): predictions belong to other positions.
    broken = compare_logits([ref], [np.roll(ref, 1, axis=0)])
    with pytest.raises(DsftError, match="top-1 agreement >= 85% and mean KL"):
        check_tolerance(broken, DEFAULT_GGUF_TOLERANCE["q8_0"], "q8_0 export")
    # An explicit --tolerance still bounds the max |logit difference|.
    with pytest.raises(DsftError, match="exceeds tolerance 1"):
        check_tolerance(comparison, 1.0, "q8_0 export")


def test_q8_0_default_refuses_on_the_kl_alone() -> None:
    """Same argmax everywhere, flattened distributions: only the mean-KL half of the bound can refuse it."""
    ref = _real_like_logits(3)
    flattened = compare_logits([ref], [ref / 5])
    assert flattened.top1_agreement == 1.0 and flattened.mean_kl > 0.05
    with pytest.raises(DsftError, match="top-1 agreement >= 85% and mean KL"):
        check_tolerance(flattened, DEFAULT_GGUF_TOLERANCE["q8_0"], "q8_0 export")


def test_half_precision_defaults_grow_with_the_logits() -> None:
    """Rounding noise of a real model's size (SmolLM2 as bfloat16: 0.30 on logits up to 40.9) passes the bfloat16
    defaults, which the former absolute 0.25 refused; on a tiny model's logits the former bounds remain the floor."""
    ref = _real_like_logits(4)
    noise = np.random.default_rng(5).uniform(-0.3, 0.3, ref.shape).astype(np.float32)
    comparison = compare_logits([ref], [ref + noise])
    assert comparison.max_abs_diff > 0.25 and comparison.max_abs_logit > 30
    check_tolerance(comparison, DEFAULT_TOLERANCE["bfloat16"], "bf16 export")
    check_tolerance(comparison, DEFAULT_GGUF_TOLERANCE["bfloat16"], "bf16 gguf export")
    with pytest.raises(DsftError, match=r"the larger of 0.05 and 0.39% of the largest reference logit"):
        check_tolerance(comparison, DEFAULT_TOLERANCE["float16"], "fp16 export")  # 0.39% of ~40: 0.16 < 0.3
    # A tiny MoE model's rounding changed one token's experts: 0.054 on logits of 0.92 (5.8%), under the floor.
    tiny = compare_logits([ref / 45], [ref / 45 + noise / 6])
    assert tiny.max_abs_diff / tiny.max_abs_logit > 8 * 2**-8
    check_tolerance(tiny, DEFAULT_TOLERANCE["bfloat16"], "bf16 export")
    broken = compare_logits([ref], [np.roll(ref, 1, axis=0)])
    with pytest.raises(DsftError, match="verification failed"):
        check_tolerance(broken, DEFAULT_GGUF_TOLERANCE["bfloat16"], "bf16 gguf export")


def test_nan_logits_fail_every_bound() -> None:
    """An export whose logits are NaN (say, a float16 overflow) compared as max |diff| 0 and passed."""
    ref = _real_like_logits(6)
    for position in (0, 7):  # NaN at the first position compared, and after finite ones
        candidate = ref.copy()
        candidate[position] = np.nan
        comparison = compare_logits([ref[:5], ref], [ref[:5], candidate])
        for bound in (1e-3, 100.0, DEFAULT_TOLERANCE["float16"], DEFAULT_GGUF_TOLERANCE["q8_0"]):
            with pytest.raises(DsftError, match="verification failed"):
                check_tolerance(comparison, bound, "export")


def test_every_bound_refuses_with_a_verification_error() -> None:
    """A failed check of any kind raises VerificationError, which export() lets through with the files kept; the
    q8_0 default raised a plain DsftError, so a refused q8_0 export was deleted before it could be inspected."""
    ref = _real_like_logits(7)
    broken = compare_logits([ref], [np.roll(ref, 1, axis=0)])
    for bound in (1e-3, DEFAULT_TOLERANCE["bfloat16"], DEFAULT_GGUF_TOLERANCE["float32"], DEFAULT_GGUF_TOLERANCE["q8_0"]):
        with pytest.raises(VerificationError, match="verification failed for export: "):
            check_tolerance(broken, bound, "export")
