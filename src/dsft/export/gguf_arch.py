"""Per-architecture GGUF layout: hyper-parameter keys and tensors, as llama.cpp's loader expects them.

Three llama.cpp architectures cover the DeepSeek families:

* ``llama``  (DeepSeek-LLM 7B/67B, R1-Distill-Llama): q/k rows permuted from transformers' rotate-half
  rope layout to llama.cpp's interleaved one; Llama-3 rope scaling stored as a ``rope_freqs`` tensor.
* ``qwen2``  (R1-Distill-Qwen): no permutation (llama.cpp runs Qwen2 with NeoX rope), q/k/v biases.
* ``deepseek2`` (V2, V2.5, V3, R1, V3.1): MLA written as llama.cpp's absorbed form (``kv_b_proj`` split
  into ``attn_k_b`` transposed and ``attn_v_b``, one KV head), fused transformers experts split into
  ``ffn_{gate,up,down}_exps``, the V3 router bias as ``exp_probs_b``, yarn rope keys.

Tensors are yielded one at a time as float32 numpy arrays so the writer can convert and spool each
before the next is built (peak memory: the model plus one tensor).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from dsft.errors import UnsupportedError

# transformers model_type -> llama.cpp architecture name
GGUF_ARCHITECTURES = {"llama": "llama", "qwen2": "qwen2", "deepseek_v2": "deepseek2", "deepseek_v3": "deepseek2"}


def gguf_architecture(model_type: str) -> str:
    """The llama.cpp architecture for a transformers ``model_type``, or :class:`UnsupportedError`."""
    arch = GGUF_ARCHITECTURES.get(model_type)
    if arch is None:
        raise UnsupportedError(
            f"GGUF export: model_type {model_type!r} is not supported; supported: "
            f"{', '.join(sorted(GGUF_ARCHITECTURES))} (export --format hf and convert with llama.cpp's "
            "convert_hf_to_gguf.py instead)"
        )
    return arch


def _rope(config: Any) -> dict[str, Any]:
    """Rope parameters whether transformers stores them as ``rope_parameters`` (5.x) or ``rope_scaling``."""
    params = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
    params.setdefault("rope_theta", getattr(config, "rope_theta", 10000.0))
    return params


def _head_dim(config: Any) -> int:
    return int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)


def write_hparams(writer: Any, arch: str, config: Any) -> None:
    """Write ``{arch}.*`` hyper-parameters for a transformers config."""
    rope = _rope(config)
    writer.add_context_length(int(config.max_position_embeddings))
    writer.add_embedding_length(int(config.hidden_size))
    writer.add_block_count(int(config.num_hidden_layers))
    writer.add_feed_forward_length(int(config.intermediate_size))
    writer.add_head_count(int(config.num_attention_heads))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_rope_freq_base(float(rope["rope_theta"]))
    writer.add_vocab_size(int(config.vocab_size))
    if arch == "deepseek2":
        _write_deepseek2_hparams(writer, config, rope)
        return
    head_dim = _head_dim(config)
    writer.add_head_count_kv(int(config.num_key_value_heads))
    writer.add_rope_dimension_count(head_dim)
    if head_dim != config.hidden_size // config.num_attention_heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)


def _write_deepseek2_hparams(writer: Any, config: Any, rope: dict[str, Any]) -> None:
    import gguf

    kv_lora_rank = int(config.kv_lora_rank)
    # llama.cpp runs MLA as multi-query attention over the compressed latent: one KV "head" whose key is
    # the latent plus the rope part and whose value is the latent; the *_mla lengths are the real heads.
    writer.add_head_count_kv(1)
    writer.add_key_length(kv_lora_rank + int(config.qk_rope_head_dim))
    writer.add_value_length(kv_lora_rank)
    writer.add_key_length_mla(int(config.qk_nope_head_dim) + int(config.qk_rope_head_dim))
    writer.add_value_length_mla(int(config.v_head_dim))
    writer.add_rope_dimension_count(int(config.qk_rope_head_dim))
    writer.add_leading_dense_block_count(int(config.first_k_dense_replace))
    if getattr(config, "q_lora_rank", None):
        writer.add_q_lora_rank(int(config.q_lora_rank))
    writer.add_kv_lora_rank(kv_lora_rank)
    writer.add_expert_feed_forward_length(int(config.moe_intermediate_size))
    writer.add_expert_count(int(config.n_routed_experts))
    writer.add_expert_used_count(int(config.num_experts_per_tok))
    writer.add_expert_shared_count(int(config.n_shared_experts))
    writer.add_expert_weights_scale(float(getattr(config, "routed_scaling_factor", 1.0)))
    writer.add_expert_weights_norm(bool(getattr(config, "norm_topk_prob", False)))
    if getattr(config, "n_group", None):
        writer.add_expert_group_count(int(config.n_group))
        writer.add_expert_group_used_count(int(config.topk_group))
    # transformers' DeepseekV3 routes with sigmoid scores; DeepseekV2 with softmax.
    gating = "sigmoid" if config.model_type == "deepseek_v3" else getattr(config, "scoring_func", "softmax")
    writer.add_expert_gating_func(gguf.ExpertGatingFuncType.SIGMOID if gating == "sigmoid"
                                  else gguf.ExpertGatingFuncType.SOFTMAX)
    if rope.get("rope_type") == "yarn":
        writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        writer.add_rope_scaling_factor(float(rope["factor"]))
        writer.add_rope_scaling_orig_ctx_len(int(rope["original_max_position_embeddings"]))
        # llama.cpp's yarn attention scale: 1 + yarn_log_mul * ln(factor) == DeepSeek's 0.1 * mscale_all_dim * ln(factor) + 1
        writer.add_rope_scaling_yarn_log_mul(0.1 * float(rope.get("mscale_all_dim", 0.0) or 0.0))


def _permute_for_llama_rope(weight: Any, n_head: int) -> Any:
    """Reorder q/k rows from rotate-half pairs (i, i + d/2) to llama.cpp's adjacent pairs (2i, 2i + 1)."""
    return (weight.reshape(n_head, 2, weight.shape[0] // n_head // 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def llama3_rope_factors(config: Any) -> Any | None:
    """Per-frequency divisors of Llama-3 rope scaling (stored as ``rope_freqs``), None without it."""
    import numpy as np

    rope = _rope(config)
    if rope.get("rope_type") != "llama3":
        return None
    dim = _head_dim(config)
    freqs = 1.0 / (float(rope["rope_theta"]) ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
    factor, low, high = float(rope["factor"]), float(rope["low_freq_factor"]), float(rope["high_freq_factor"])
    old_context = float(rope["original_max_position_embeddings"])
    factors = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < old_context / high:
            factors.append(1.0)
        elif wavelen > old_context / low:
            factors.append(factor)
        else:
            smooth = (old_context / wavelen - low) / (high - low)
            factors.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.asarray(factors, dtype=np.float32)


def iter_gguf_tensors(model: Any, arch: str) -> Iterator[tuple[str, Any]]:
    """Yield ``(gguf_name, float32 numpy array)`` for every tensor llama.cpp needs, in a stable order."""
    for name, _source, array in converted_tensors(model, arch):
        yield name, array


def converted_tensors(model: Any, arch: str) -> Iterator[tuple[str, str, Any]]:
    """Yield ``(gguf_name, source, float32 numpy array)``: each tensor :func:`iter_gguf_tensors` writes, with the
    transformers tensor it is converted from (``source``; for ``rope_freqs`` the config's rope scaling).

    The one place that knows which GGUF tensor comes from which transformers tensor and how: the writer and
    the read-back check (:mod:`dsft.export.gguf_readback`) both take their tensors from here.
    """
    import gguf

    config = model.config
    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], int(config.num_hidden_layers))
    factors = llama3_rope_factors(config) if arch == "llama" else None
    if factors is not None:
        yield "rope_freqs.weight", "config.rope_scaling (llama3)", factors
    for hf_name, tensor in model.state_dict().items():
        if getattr(config, "tie_word_embeddings", False) and hf_name == "lm_head.weight":
            continue  # llama.cpp reuses token_embd when output is absent
        array = tensor.detach().float().cpu().numpy()
        for name, data in _transform(hf_name, array, arch, config):
            mapped = name_map.get_name(name, try_suffixes=(".weight", ".bias"))
            if mapped is None:
                raise UnsupportedError(f"GGUF export ({arch}): no llama.cpp tensor for {hf_name!r}")
            yield mapped, hf_name, data


def _transform(hf_name: str, array: Any, arch: str, config: Any) -> Iterator[tuple[str, Any]]:
    """The transformers tensor as one or more llama.cpp tensors (still under transformers-style names)."""
    if arch == "llama" and hf_name.endswith(("self_attn.q_proj.weight", "self_attn.q_proj.bias")):
        yield hf_name, _permute_for_llama_rope(array, int(config.num_attention_heads))
    elif arch == "llama" and hf_name.endswith(("self_attn.k_proj.weight", "self_attn.k_proj.bias")):
        yield hf_name, _permute_for_llama_rope(array, int(config.num_key_value_heads))
    elif arch == "deepseek2":
        yield from _deepseek2_transform(hf_name, array, config)
    elif hf_name.endswith("rotary_emb.inv_freq"):
        return
    else:
        yield hf_name, array


def _deepseek2_transform(hf_name: str, array: Any, config: Any) -> Iterator[tuple[str, Any]]:
    import numpy as np

    if hf_name.endswith("self_attn.kv_b_proj.weight"):
        # [heads * (nope + v), kv_lora] -> k_b [heads, kv_lora, nope] (transposed) and v_b [heads, v, kv_lora]
        heads, nope, v_dim = int(config.num_attention_heads), int(config.qk_nope_head_dim), int(config.v_head_dim)
        kv_b = array.reshape(heads, nope + v_dim, array.shape[-1])
        yield hf_name.replace("kv_b_proj", "k_b_proj"), np.ascontiguousarray(kv_b[:, :nope, :].transpose(0, 2, 1))
        yield hf_name.replace("kv_b_proj", "v_b_proj"), np.ascontiguousarray(kv_b[:, nope:, :])
    elif hf_name.endswith("mlp.experts.gate_up_proj"):
        # transformers fuses [E, 2I, H] with the gate rows first
        inter = array.shape[1] // 2
        prefix = hf_name[: -len("gate_up_proj")]
        yield prefix + "gate_proj.weight", np.ascontiguousarray(array[:, :inter, :])
        yield prefix + "up_proj.weight", np.ascontiguousarray(array[:, inter:, :])
    elif hf_name.endswith("mlp.experts.down_proj"):
        yield hf_name + ".weight", array  # [E, H, I]: already llama.cpp's layout
    elif hf_name.endswith("mlp.gate.e_score_correction_bias"):
        yield hf_name.replace("e_score_correction_bias", "e_score_correction.bias"), array
    else:
        yield hf_name, array
