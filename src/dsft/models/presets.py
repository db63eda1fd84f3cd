"""Configs of the real DeepSeek-family models (numbers only, no weights), for planning and GPU benchmarks.

``REAL_MODEL_PRESETS[name]`` is a Hugging Face ``config.json`` dict as released (the fields that shape
the model). :func:`build_on_meta` instantiates one on the ``meta`` device (no memory), which is how the
tests check the parameter counts against the published sizes, and how a planner can count parameters
or walk module shapes of a 671B model on a laptop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dsft.errors import DsftError


def _llama(hidden: int, layers: int, heads: int, kv_heads: int, inter: int, vocab: int, **extra: Any) -> dict[str, Any]:
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
            "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
            "intermediate_size": inter, "vocab_size": vocab, "hidden_act": "silu", "tie_word_embeddings": False,
            "attention_bias": False, **extra}


def _qwen2(hidden: int, layers: int, heads: int, kv_heads: int, inter: int, vocab: int, **extra: Any) -> dict[str, Any]:
    return {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": hidden,
            "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
            "intermediate_size": inter, "vocab_size": vocab, "hidden_act": "silu", "tie_word_embeddings": False,
            "max_position_embeddings": 131072, "bos_token_id": 151643, "eos_token_id": 151643,
            "use_sliding_window": False, **extra}


_DEEPSEEK_LLM = {"max_position_embeddings": 4096, "rms_norm_eps": 1e-6, "bos_token_id": 100000,
                 "eos_token_id": 100001, "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}}
_QWEN_SMALL = {"rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}, "sliding_window": 4096,
               "rms_norm_eps": 1e-6}
_QWEN_LARGE = {"rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0}, "sliding_window": 131072,
               "rms_norm_eps": 1e-5}
_LLAMA3 = {"max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "bos_token_id": 128000, "eos_token_id": 128001,
           "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                               "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}
_YARN = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 40.0, "original_max_position_embeddings": 4096,
         "beta_fast": 32.0, "beta_slow": 1.0}


def _mla_moe(model_type: str, **fields: Any) -> dict[str, Any]:
    """DeepSeek V2/V3 configs share MLA head dims 128/64/128, 102400/129280 vocab and yarn rope."""
    arch = "DeepseekV3ForCausalLM" if model_type == "deepseek_v3" else "DeepseekV2ForCausalLM"
    return {"architectures": [arch], "model_type": model_type, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64,
            "v_head_dim": 128, "kv_lora_rank": 512, "hidden_act": "silu", "tie_word_embeddings": False,
            "max_position_embeddings": 163840, "rms_norm_eps": 1e-6, "attention_bias": False, **fields}


_V3 = _mla_moe(
    "deepseek_v3", hidden_size=7168, num_hidden_layers=61, num_attention_heads=128, num_key_value_heads=128,
    intermediate_size=18432, moe_intermediate_size=2048, n_routed_experts=256, n_shared_experts=1,
    num_experts_per_tok=8, first_k_dense_replace=3, q_lora_rank=1536, vocab_size=129280, n_group=8, topk_group=4,
    norm_topk_prob=True, routed_scaling_factor=2.5, scoring_func="sigmoid", topk_method="noaux_tc",
    num_nextn_predict_layers=1, bos_token_id=0, eos_token_id=1,
    rope_parameters={**_YARN, "mscale": 1.0, "mscale_all_dim": 1.0},
)

REAL_MODEL_PRESETS: dict[str, dict[str, Any]] = {
    "deepseek-llm-7b": _llama(4096, 30, 32, 32, 11008, 102400, **_DEEPSEEK_LLM),
    "deepseek-llm-67b": _llama(8192, 95, 64, 8, 22016, 102400, **_DEEPSEEK_LLM),
    "r1-distill-qwen-1.5b": _qwen2(1536, 28, 12, 2, 8960, 151936, **_QWEN_SMALL),
    "r1-distill-qwen-7b": _qwen2(3584, 28, 28, 4, 18944, 152064, **_QWEN_SMALL),
    "r1-distill-qwen-14b": _qwen2(5120, 48, 40, 8, 13824, 152064, **_QWEN_LARGE),
    "r1-distill-qwen-32b": _qwen2(5120, 64, 40, 8, 27648, 152064, **_QWEN_LARGE),
    "r1-distill-llama-8b": _llama(4096, 32, 32, 8, 14336, 128256, **_LLAMA3),
    "r1-distill-llama-70b": _llama(8192, 80, 64, 8, 28672, 128256, **_LLAMA3),
    # DeepSeek-MoE ships remote code (model_type "deepseek"); transformers has no native class for it.
    "deepseek-moe-16b": {
        "architectures": ["DeepseekForCausalLM"], "model_type": "deepseek", "hidden_size": 2048,
        "num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 16, "intermediate_size": 10944,
        "moe_intermediate_size": 1408, "n_routed_experts": 64, "n_shared_experts": 2, "num_experts_per_tok": 6,
        "first_k_dense_replace": 1, "moe_layer_freq": 1, "scoring_func": "softmax", "norm_topk_prob": False,
        "vocab_size": 102400, "max_position_embeddings": 4096, "rms_norm_eps": 1e-6, "tie_word_embeddings": False,
        "hidden_act": "silu", "attention_bias": False, "bos_token_id": 100000, "eos_token_id": 100001,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
    },
    "deepseek-v2-lite": _mla_moe(
        "deepseek_v2", hidden_size=2048, num_hidden_layers=27, num_attention_heads=16, num_key_value_heads=16,
        intermediate_size=10944, moe_intermediate_size=1408, n_routed_experts=64, n_shared_experts=2,
        num_experts_per_tok=6, first_k_dense_replace=1, q_lora_rank=None, vocab_size=102400, n_group=1,
        topk_group=1, norm_topk_prob=False, routed_scaling_factor=1.0, topk_method="greedy",
        bos_token_id=100000, eos_token_id=100001,
        rope_parameters={**_YARN, "mscale": 0.707, "mscale_all_dim": 0.707},
    ),
    "deepseek-v2": _mla_moe(
        "deepseek_v2", hidden_size=5120, num_hidden_layers=60, num_attention_heads=128, num_key_value_heads=128,
        intermediate_size=12288, moe_intermediate_size=1536, n_routed_experts=160, n_shared_experts=2,
        num_experts_per_tok=6, first_k_dense_replace=1, q_lora_rank=1536, vocab_size=102400, n_group=8,
        topk_group=3, norm_topk_prob=False, routed_scaling_factor=16.0, topk_method="group_limited_greedy",
        bos_token_id=100000, eos_token_id=100001,
        rope_parameters={**_YARN, "mscale": 0.707, "mscale_all_dim": 0.707},
    ),
    "deepseek-v3": _V3,
    "deepseek-r1": _V3,  # same architecture and weights layout as V3
    "deepseek-v3.1": _V3,
}


@dataclass(frozen=True)
class ModelFacts:
    """Published facts a planner needs next to the config: hub id and sizes in billions of parameters."""

    hub_id: str
    params_b: float
    active_params_b: float


REAL_MODEL_FACTS: dict[str, ModelFacts] = {
    "deepseek-llm-7b": ModelFacts("deepseek-ai/deepseek-llm-7b-chat", 6.91, 6.91),
    "deepseek-llm-67b": ModelFacts("deepseek-ai/deepseek-llm-67b-chat", 67.4, 67.4),
    "r1-distill-qwen-1.5b": ModelFacts("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", 1.777, 1.777),
    "r1-distill-qwen-7b": ModelFacts("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", 7.616, 7.616),
    "r1-distill-qwen-14b": ModelFacts("deepseek-ai/DeepSeek-R1-Distill-Qwen-14B", 14.77, 14.77),
    "r1-distill-qwen-32b": ModelFacts("deepseek-ai/DeepSeek-R1-Distill-Qwen-32B", 32.76, 32.76),
    "r1-distill-llama-8b": ModelFacts("deepseek-ai/DeepSeek-R1-Distill-Llama-8B", 8.03, 8.03),
    "r1-distill-llama-70b": ModelFacts("deepseek-ai/DeepSeek-R1-Distill-Llama-70B", 70.55, 70.55),
    "deepseek-moe-16b": ModelFacts("deepseek-ai/deepseek-moe-16b-chat", 16.4, 2.8),
    "deepseek-v2-lite": ModelFacts("deepseek-ai/DeepSeek-V2-Lite-Chat", 15.7, 2.4),
    "deepseek-v2": ModelFacts("deepseek-ai/DeepSeek-V2-Chat", 235.7, 21.0),
    "deepseek-v3": ModelFacts("deepseek-ai/DeepSeek-V3", 671.0, 37.0),
    "deepseek-r1": ModelFacts("deepseek-ai/DeepSeek-R1", 671.0, 37.0),
    "deepseek-v3.1": ModelFacts("deepseek-ai/DeepSeek-V3.1", 671.0, 37.0),
}


def real_model_config(name: str) -> dict[str, Any]:
    """A copy of the config dict of real-model preset ``name``; :class:`DsftError` naming the presets otherwise."""
    if name not in REAL_MODEL_PRESETS:
        raise DsftError(f"unknown real-model preset {name!r}; choose one of: {', '.join(REAL_MODEL_PRESETS)}")
    import copy

    return copy.deepcopy(REAL_MODEL_PRESETS[name])


def native_equivalent(config: dict[str, Any]) -> dict[str, Any]:
    """DeepSeek-MoE (remote code) has Qwen2-MoE's layout up to q/k/v biases and a shared-expert gate
    (under 0.01% of its parameters), so that native class stands in for counting and shapes."""
    if config.get("model_type") != "deepseek":
        return config
    return {
        "model_type": "qwen2_moe", "hidden_size": config["hidden_size"],
        "num_hidden_layers": config["num_hidden_layers"], "num_attention_heads": config["num_attention_heads"],
        "num_key_value_heads": config["num_key_value_heads"], "intermediate_size": config["intermediate_size"],
        "moe_intermediate_size": config["moe_intermediate_size"], "num_experts": config["n_routed_experts"],
        "num_experts_per_tok": config["num_experts_per_tok"],
        "shared_expert_intermediate_size": config["moe_intermediate_size"] * config["n_shared_experts"],
        "mlp_only_layers": list(range(config["first_k_dense_replace"])), "decoder_sparse_step": 1,
        "vocab_size": config["vocab_size"], "tie_word_embeddings": False,
    }


def build_on_meta(config: dict[str, Any]) -> Any:
    """Instantiate a config dict's causal LM on the ``meta`` device (shapes only, no memory).

    DeepSeek-MoE (remote code only) is built as its native look-alike, Qwen2-MoE.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    native = native_equivalent(config)
    fields = {k: v for k, v in native.items() if k != "model_type"}
    try:
        hf_config = AutoConfig.for_model(native["model_type"], **fields)
    except (KeyError, ValueError) as exc:
        raise DsftError(f"model_type {native.get('model_type')!r} has no native transformers class ({exc})") from exc
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(hf_config)


def count_parameters(config: dict[str, Any]) -> int:
    """Total parameters of a config (embeddings and lm_head included), counted on the meta device."""
    return sum(p.numel() for p in build_on_meta(config).parameters())


def active_parameters(config: dict[str, Any], total: int | None = None) -> int:
    """Parameters used per token: the total minus the routed experts a token does not visit.

    Each routed expert is a SwiGLU MLP of ``3 * hidden * moe_intermediate`` weights; a token visits
    ``num_experts_per_tok`` of ``n_routed_experts`` in each MoE layer (layers from ``first_k_dense_replace``).
    """
    total = count_parameters(config) if total is None else total
    experts = config.get("n_routed_experts")
    if not experts:
        return total
    moe_layers = config["num_hidden_layers"] - config.get("first_k_dense_replace", 0)
    per_expert = 3 * config["hidden_size"] * config["moe_intermediate_size"]
    return total - moe_layers * (experts - config["num_experts_per_tok"]) * per_expert
