"""Half-precision exports of a real model pass the default verification (SmolLM2-135M, logits up to 40.9).

Rounding moves logits in proportion to their scale, so the defaults are fractions of the largest logit. The
former absolute defaults, sized on tiny presets whose logits stay under 1, refused every one of these correct
exports (measured max |logit diff|: HF float16 0.055 > 0.05, HF bfloat16 0.30 > 0.25, GGUF float16 0.12 > 0.1,
GGUF bfloat16 0.55 > 0.25).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dsft.export.api import export


@pytest.mark.parametrize(("fmt", "dtype"), [("hf", "float16"), ("hf", "bfloat16"), ("gguf", "float16"),
                                            ("gguf", "bfloat16")])
def test_half_precision_export_passes_the_default_check(smollm2_dir: Path, tmp_path: Path, fmt: str,
                                                        dtype: str) -> None:
    result = export(smollm2_dir, fmt, tmp_path / "out", dtype=dtype, echo=print)
    comparison = result.comparison
    assert comparison.max_abs_logit > 30 and comparison.positions > 100
    assert comparison.top1_agreement >= 0.95 and comparison.mean_kl < 1e-3
