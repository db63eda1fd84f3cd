"""Trained-like tiny bases and the tensor defects a converter bug would write, shared by the GGUF
verification tests (test_gguf_defects.py, test_moe_verification.py, test_gguf_readback.py).

Each defect changes tensors after the converter's transform, on their way into the file. Two checks can
refuse such a file: the tensor check (:mod:`dsft.export.gguf_readback`), which reads every tensor back and
runs first, and the logit comparison in llama.cpp. The defect tests measure the logit comparison with the
tensor check set aside (:func:`without_tensor_check`): the converter bugs the logit comparison exists for sit in
the transform itself, where the tensor check, which takes its expected tensors from that transform, cannot
see them. Then they read the same file back (:func:`refused_tensors`).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dsft.export import gguf_arch, gguf_export
from dsft.export.gguf_readback import TensorDeviation, tensor_deviations
from dsft.models.loading import load_model

Tensors = Iterator[tuple[str, Any]]
TensorChange = Callable[[dict[str, Any]], dict[str, Any]]


def write_trained_like_base(preset_dir: Path, out_dir: Path, seed: int = 0) -> Path:
    """The tiny preset with weights shaped like a trained model's, for checks that must see every tensor.

    A preset straight from its init has every RMSNorm weight 1, SwiGLU pre-activations of std ~0.16 (where
    silu is nearly linear, so silu(gate) * up ~ silu(up) * gate), zero attention biases and router bias, and
    logits within +-1 (nearly uniform next-token distributions). There a GGUF with swapped norms is
    bit-identical to a correct one, one without its biases is too, and one with tiny-deepseek-llm's block 1
    ffn_gate and ffn_up swapped passes the default q8_0 check (measured: top-1 91.7%, mean KL 8e-6). Here
    the norms are drawn from [0.5, 1.5), gate and up (dense, shared and routed experts) are scaled 8x,
    attention biases drawn from N(0, 0.5^2), the V3 router bias from [0, 0.5) and lm_head scaled 20x
    (logits reach ~18).
    """
    model = load_model(preset_dir, dtype="float32", device="cpu")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.copy_(0.5 + torch.rand(param.shape, generator=generator))
            elif name.endswith(("gate_proj.weight", "up_proj.weight", "experts.gate_up_proj")):
                param.mul_(8.0)
            elif name.endswith(("q_proj.bias", "k_proj.bias", "v_proj.bias")):
                param.copy_(0.5 * torch.randn(param.shape, generator=generator))
        for name, buffer in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                buffer.copy_(0.5 * torch.rand(buffer.shape, generator=generator))
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


def replace(pattern: str, change: Callable[[Any], Any]) -> Callable[[str, Any], tuple[str, Any]]:
    """Write every tensor whose name matches ``pattern`` (a full-match regex) as ``change(array)``."""
    compiled = re.compile(pattern)
    return lambda name, array: (name, change(array) if compiled.fullmatch(name) else array)


def ones(target: str) -> Callable[[str, Any], tuple[str, Any]]:
    return replace(re.escape(target), np.ones_like)


def experts_0_and_1_swapped(array: Any) -> Any:
    swapped = array.copy()
    swapped[[0, 1]] = array[[1, 0]]
    return swapped


def reshaped_instead_of_transposed(k_b: Any) -> Any:
    """attn_k_b ``[heads, kv_lora, nope]`` as a converter that reshapes kv_b's k rows instead of transposing."""
    return np.ascontiguousarray(k_b.transpose(0, 2, 1)).reshape(k_b.shape)


def rope_rows_first(kv_a: Any) -> Any:
    """attn_kv_a_mqa with its 8 rope rows (tiny V3's qk_rope_head_dim) before the 32 latent rows, not after."""
    return np.roll(kv_a, 8, axis=0)


def permuted_for_llama_rope(name: str, array: Any) -> tuple[str, Any]:
    """q/k rows reordered for llama's interleaved rope, wrong for qwen2 (NeoX rope); tiny Qwen2 has 4/2 heads."""
    projection = re.fullmatch(r"blk\.\d+\.(attn_q|attn_k)\.(weight|bias)", name)
    if projection is None:
        return name, array
    return name, gguf_arch._permute_for_llama_rope(array, {"attn_q": 4, "attn_k": 2}[projection.group(1)])


DEFECTS = {
    "attn_norm and ffn_norm of block 0 swapped": swap_names("blk.0.attn_norm", "blk.0.ffn_norm"),
    "ffn_gate and ffn_up of block 1 swapped": swap_names("blk.1.ffn_gate", "blk.1.ffn_up"),
    "output_norm written as ones": ones("output_norm.weight"),
}

# Checked on float16 files (see the module docstring). Measured on the correct files: max |logit diff| 0.034
# (V3) and 0.016 (Qwen2) on logits reaching 18; each defect below moves them by 0.33 (Qwen2's q/k layout)
# to 24, against the default float16 tolerance, 0.78% of the largest logit (0.14 here) and at least 0.1. V3, a
# MoE model, meets its MoE default, which lets up to 10% of the positions exceed that limit (rerouted tokens):
# the correct file has 0 of 79 over it, the defects below 32, 79, 77, 74 and 79 (in this order).
FLOAT16_DEFECTS = {
    "tiny-deepseek-v3": {
        "experts 0 and 1 of block 1 swapped, router unchanged":
            replace(r"blk\.1\.ffn_(gate|up|down)_exps\.weight", experts_0_and_1_swapped),
        "ffn_gate_exps and ffn_up_exps of block 1 swapped": swap_names("blk.1.ffn_gate_exps", "blk.1.ffn_up_exps"),
        "exp_probs_b (router bias) of block 1 written as zeros": replace(r"blk\.1\.exp_probs_b\.bias", np.zeros_like),
        "attn_k_b of block 0 reshaped instead of transposed":
            replace(r"blk\.0\.attn_k_b\.weight", reshaped_instead_of_transposed),
        "attn_kv_a_mqa of block 0 with rope rows first": replace(r"blk\.0\.attn_kv_a_mqa\.weight", rope_rows_first),
    },
    "tiny-r1-distill-qwen": {
        "attn_q biases written as zeros": replace(r"blk\.\d+\.attn_q\.bias", np.zeros_like),
        "attn_k biases written as zeros": replace(r"blk\.\d+\.attn_k\.bias", np.zeros_like),
        "q/k rows permuted for llama's rope": permuted_for_llama_rope,
    },
}


def per_tensor(defect: Callable[[str, Any], tuple[str, Any]]) -> TensorChange:
    """A per-tensor defect as a change of the whole ``{gguf name: array}`` set."""
    return lambda tensors: dict(defect(name, array) for name, array in tensors.items())


def without_tensor_check(monkeypatch: Any) -> None:
    """Set this test's exports' tensor check aside, so the logit comparison alone judges the file."""
    monkeypatch.setattr(gguf_export, "check_gguf_tensors", lambda *args, **kwargs: {})


def read_back(path: Path, model_dir: Path, change: TensorChange) -> tuple[dict[str, float], set[str]]:
    """What the tensor check makes of the GGUF at ``path``, exported from the model in ``model_dir`` (no adapter)
    through ``change``: ``({refused tensor: relative RMS error}, {tensor that change alters})``. The two name
    the same tensors when the check refuses what the defect wrote and nothing else."""
    model = load_model(model_dir, dtype="float32", device="cpu")
    arch = gguf_arch.gguf_architecture(model.config.model_type)
    converted = dict(gguf_arch.iter_gguf_tensors(model, arch))
    written = change(dict(converted))
    changed = {name for name, array in written.items()
               if array.shape != converted[name].shape or not np.array_equal(array, converted[name])}
    del converted, written
    found = list(tensor_deviations(path, model, arch))
    assert not [line for line in found if isinstance(line, str)]  # every tensor present, in its shape
    refused = {deviation.name: deviation.relative for deviation in found
               if isinstance(deviation, TensorDeviation) and not deviation.accepted()}
    return refused, changed
