"""The default q8_0 verification refuses a GGUF whose tensors are misplaced, on a model where that shows.

On the tiny presets as initialised, such defects are invisible or nearly so (see
``write_trained_like_base``: measured on tiny-deepseek-llm), so these exports start from a base with a trained model's features: norms
that differ from 1, SwiGLU in its non-linear range and peaked next-token distributions. Each defect
renames or replaces tensors on their way into the file, as a converter bug would.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# llama-cpp-python is a test dependency: a missing install fails here instead of skipping.
import llama_cpp  # noqa: F401
import numpy as np
import pytest
import torch

from dsft.errors import DsftError
from dsft.export import gguf_arch, gguf_export
from dsft.export.source import resolve_source
from dsft.models.loading import load_model

Tensors = Iterator[tuple[str, Any]]


def write_trained_like_base(preset_dir: Path, out_dir: Path, seed: int = 0) -> Path:
    """The tiny preset with weights shaped like a trained model's, for checks that must see every tensor.

    A preset straight from its init has every RMSNorm weight 1, SwiGLU pre-activations of std ~0.16 (where
    silu is nearly linear, so silu(gate) * up ~ silu(up) * gate) and logits within +-1 (nearly uniform
    next-token distributions). There a GGUF with swapped norms is bit-identical to a correct one, and one
    with block 1's ffn_gate and ffn_up swapped passes the default q8_0 check (measured: top-1 91.7%, mean
    KL 8e-6). Here the norms are drawn from [0.5, 1.5), gate and up are scaled 8x and lm_head 20x (logits
    reach ~19).
    """
    model = load_model(preset_dir, dtype="float32", device="cpu")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.copy_(0.5 + torch.rand(param.shape, generator=generator))
            elif name.endswith(("mlp.gate_proj.weight", "mlp.up_proj.weight")):
                param.mul_(8.0)
        model.lm_head.weight.mul_(20.0)
    model.save_pretrained(str(out_dir))
    for path in preset_dir.iterdir():
        if path.name.startswith("tokenizer") or path.name == "generation_config.json":
            shutil.copy2(path, out_dir / path.name)
    return out_dir


def swap_names(first: str, second: str) -> Callable[[str, Any], tuple[str, Any]]:
    """Write tensor ``first`` under ``second``'s name and the other way round (both of the same shape)."""
    pattern = re.compile(rf"^({re.escape(first)}|{re.escape(second)})\.")
    return lambda name, array: (pattern.sub(lambda m: (second if m.group(1) == first else first) + ".", name), array)


def ones(target: str) -> Callable[[str, Any], tuple[str, Any]]:
    return lambda name, array: (name, np.ones_like(array) if name == target else array)


DEFECTS = {
    "attn_norm and ffn_norm of block 0 swapped": swap_names("blk.0.attn_norm", "blk.0.ffn_norm"),
    "ffn_gate and ffn_up of block 1 swapped": swap_names("blk.1.ffn_gate", "blk.1.ffn_up"),
    "output_norm written as ones": ones("output_norm.weight"),
}


@pytest.fixture(scope="module")
def trained_like_base(tiny_model_dir, tmp_path_factory):
    return write_trained_like_base(tiny_model_dir("tiny-deepseek-llm"), tmp_path_factory.mktemp("trained-like"))


def test_q8_0_export_of_a_trained_like_model_passes(trained_like_base, tmp_path) -> None:
    result = gguf_export.export_gguf(resolve_source(trained_like_base), tmp_path, dtype="q8_0", echo=print)
    comparison = result.comparison
    assert comparison.max_abs_logit > 10  # peaked distributions: the KL bound has something to measure
    assert comparison.top1_agreement >= 0.85 and 0 < comparison.mean_kl <= 0.05


@pytest.mark.parametrize("defect", list(DEFECTS))
def test_q8_0_verification_refuses_misplaced_tensors(trained_like_base, tmp_path, monkeypatch, defect) -> None:
    correct = gguf_arch.iter_gguf_tensors

    def defective(model: Any, arch: str) -> Tensors:
        for name, array in correct(model, arch):
            yield DEFECTS[defect](name, array)

    monkeypatch.setattr(gguf_export, "iter_gguf_tensors", defective)
    with pytest.raises(DsftError, match="verification failed"):
        gguf_export.export_gguf(resolve_source(trained_like_base), tmp_path, dtype="q8_0", echo=print)
