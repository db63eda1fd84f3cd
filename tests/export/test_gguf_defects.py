"""GGUF verification refuses a file whose tensors are misplaced, on a model where that shows.

On the tiny presets as initialised, such defects are invisible or nearly so (see
``write_trained_like_base``), so these exports start from a base with a trained model's features: norms
that differ from 1, SwiGLU in its non-linear range, non-zero attention biases (Qwen2) and router bias
(DeepSeek-V3), and peaked next-token distributions. Each defect renames or replaces tensors on their way
into the file, as a converter bug would.

Llama (tiny-deepseek-llm) is checked with the default q8_0 verification. DeepSeek-V3 (llama.cpp's
``deepseek2``: MLA + MoE) and Qwen2 are checked on float16 files against the default float16 tolerance (0.78%
of the largest logit, at least 0.1), because on these tiny models q8_0's own rounding moves the logits as much
as some defects do (measured with the dense q8_0 check: a correct V3 file fails it, top-1 83.5%, mean KL
0.12 nats, as rounding changes which experts a token is routed to (q8_0-rounding only the embeddings, in
transformers, changes 1 of 158 routings and moves logits by up to 9.6); test_moe_verification.py checks the MoE
defaults, which bounds the share of such outlying positions, on the same model; with Qwen2 zeroed q or k biases reach
top-1 96.5%, mean KL 0.0035, like the correct file's 97.6%, 0.0027). The float16 files are also read back with
the ``gguf`` package, tensor by tensor.

Each defect is measured against the logit comparison alone (the tensor check set aside, see gguf_defect_cases),
then the same file is read back: the tensor check refuses exactly the tensors the defect changed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import gguf

# llama-cpp-python is a test dependency: a missing install fails here instead of skipping.
import llama_cpp  # noqa: F401
import numpy as np
import pytest

from dsft.errors import DsftError
from dsft.export import gguf_arch, gguf_export
from dsft.export.source import resolve_source
from dsft.models.loading import load_model
from gguf_defect_cases import (
    DEFECTS, FLOAT16_DEFECTS, Tensors, per_tensor, read_back, without_tensor_check, write_trained_like_base,
)


@pytest.fixture(scope="module")
def trained_like_base(tiny_model_dir, tmp_path_factory):
    """``preset -> directory`` of its trained-like base, written once per module."""
    written: dict[str, Path] = {}

    def get(preset: str) -> Path:
        if preset not in written:
            written[preset] = write_trained_like_base(tiny_model_dir(preset), tmp_path_factory.mktemp(preset))
        return written[preset]

    return get


def export_with(defect: Callable[[str, Any], tuple[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the exports of this test pass every tensor through ``defect`` on its way into the file."""
    correct = gguf_arch.iter_gguf_tensors

    def defective(model: Any, arch: str) -> Tensors:
        for name, array in correct(model, arch):
            yield defect(name, array)

    monkeypatch.setattr(gguf_export, "iter_gguf_tensors", defective)


def test_q8_0_export_of_a_trained_like_model_passes(trained_like_base, tmp_path) -> None:
    result = gguf_export.export_gguf(resolve_source(trained_like_base("tiny-deepseek-llm")), tmp_path,
                                     dtype="q8_0", echo=print)
    comparison = result.comparison
    assert comparison.max_abs_logit > 10  # peaked distributions: the KL bound has something to measure
    assert comparison.top1_agreement >= 0.85 and 0 < comparison.mean_kl <= 0.05


def refused_by_both_checks(base: Path, out: Path, dtype: str, defect: Callable[[str, Any], tuple[str, Any]],
                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The logit comparison alone refuses the defective export; read back, the tensor check refuses exactly the
    tensors the defect changed."""
    export_with(defect, monkeypatch)
    without_tensor_check(monkeypatch)
    with pytest.raises(DsftError, match="verification failed"):
        gguf_export.export_gguf(resolve_source(base), out, dtype=dtype, echo=print)
    refused, changed = read_back(out / gguf_export.GGUF_FILE_NAME, base, per_tensor(defect))
    print(f"tensor check refuses {', '.join(f'{name} ({error:.0%})' for name, error in refused.items())}")
    assert set(refused) == changed and changed


@pytest.mark.parametrize("defect", list(DEFECTS))
def test_q8_0_verification_refuses_misplaced_tensors(trained_like_base, tmp_path, monkeypatch, defect) -> None:
    refused_by_both_checks(trained_like_base("tiny-deepseek-llm"), tmp_path, "q8_0", DEFECTS[defect], monkeypatch)


@pytest.fixture(scope="module")
def float16_export(trained_like_base, tmp_path_factory):
    """``preset -> GGUFExport`` of its trained-like base as float16, verified by export_gguf with the default
    tolerance, written once per module."""
    done: dict[str, gguf_export.GGUFExport] = {}

    def get(preset: str) -> gguf_export.GGUFExport:
        if preset not in done:
            done[preset] = gguf_export.export_gguf(resolve_source(trained_like_base(preset)),
                                                   tmp_path_factory.mktemp(f"{preset}-f16"), dtype="float16",
                                                   echo=print)
        return done[preset]

    return get


@pytest.mark.parametrize("preset", list(FLOAT16_DEFECTS))
def test_float16_export_of_a_trained_like_model_passes(float16_export, preset) -> None:
    comparison = float16_export(preset).comparison
    assert comparison.max_abs_logit > 10  # peaked distributions: the tolerance is small against the logits
    assert comparison.top1_agreement == 1.0 and comparison.relative_diff <= 2**-8  # half the default, measured 0.19%


def file_tensors(path: Path) -> dict[str, Any]:
    """Every tensor of a GGUF file as numpy (shapes in numpy order), read with the ``gguf`` package."""
    return {tensor.name: np.asarray(tensor.data) for tensor in gguf.GGUFReader(str(path)).tensors}


def test_float16_v3_file_holds_the_experts_mla_and_router_bias(float16_export, trained_like_base) -> None:
    """Read back: routed experts split from transformers' fused [E, 2I, H] (gate rows first), kv_b split into
    k_b (transposed) and v_b per head, router weight and bias in float32 exactly."""
    model = load_model(trained_like_base("tiny-deepseek-v3"), dtype="float32", device="cpu")
    tensors = file_tensors(float16_export("tiny-deepseek-v3").path)
    config = model.config
    heads, nope, v_dim = config.num_attention_heads, config.qk_nope_head_dim, config.v_head_dim
    inter = config.moe_intermediate_size
    for index, layer in enumerate(model.model.layers):
        kv_b = layer.self_attn.kv_b_proj.weight.detach().numpy().reshape(heads, nope + v_dim, -1)
        expected = {"attn_k_b.weight": kv_b[:, :nope].transpose(0, 2, 1), "attn_v_b.weight": kv_b[:, nope:],
                    "attn_kv_a_mqa.weight": layer.self_attn.kv_a_proj_with_mqa.weight.detach().numpy()}
        if index >= config.first_k_dense_replace:
            gate_up = layer.mlp.experts.gate_up_proj.detach().numpy()
            expected |= {"ffn_gate_exps.weight": gate_up[:, :inter], "ffn_up_exps.weight": gate_up[:, inter:],
                         "ffn_down_exps.weight": layer.mlp.experts.down_proj.detach().numpy()}
            router_bias = layer.mlp.gate.e_score_correction_bias.numpy()
            assert router_bias.min() > 0  # as written by write_trained_like_base
            np.testing.assert_array_equal(tensors[f"blk.{index}.exp_probs_b.bias"], router_bias)
            np.testing.assert_array_equal(tensors[f"blk.{index}.ffn_gate_inp.weight"],
                                          layer.mlp.gate.weight.detach().numpy())
        for name, array in expected.items():
            np.testing.assert_array_equal(tensors[f"blk.{index}.{name}"], array.astype(np.float16), err_msg=name)


def test_float16_qwen2_file_holds_the_attention_biases(float16_export, trained_like_base) -> None:
    """Read back: every q/k/v bias in float32 exactly. Block 1's k biases alone written as zeros move the
    logits by less than the float16 tolerance; this test catches that (and dropped v biases, which move the
    logits by 29)."""
    model = load_model(trained_like_base("tiny-r1-distill-qwen"), dtype="float32", device="cpu")
    tensors = file_tensors(float16_export("tiny-r1-distill-qwen").path)
    for index, layer in enumerate(model.model.layers):
        for gguf_name, projection in (("attn_q", "q_proj"), ("attn_k", "k_proj"), ("attn_v", "v_proj")):
            bias = getattr(layer.self_attn, projection).bias.detach().numpy()
            assert np.abs(bias).max() > 0.1  # as written by write_trained_like_base
            np.testing.assert_array_equal(tensors[f"blk.{index}.{gguf_name}.bias"], bias)  # float32, as trained


@pytest.mark.parametrize(("preset", "defect"),
                         [(preset, defect) for preset, defects in FLOAT16_DEFECTS.items() for defect in defects])
def test_float16_verification_refuses_misplaced_tensors(trained_like_base, tmp_path, monkeypatch, preset,
                                                        defect) -> None:
    refused_by_both_checks(trained_like_base(preset), tmp_path, "float16", FLOAT16_DEFECTS[preset][defect],
                           monkeypatch)
