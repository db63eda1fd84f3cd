"""Which model the planner sizes: a real-model preset, a tiny preset, or any HF config.json.

Presets come from ``dsft.models.presets.REAL_MODEL_PRESETS``; the table below is the planner's own
copy of the reference architectures (numbers only), used for names that module lacks and for
deepseek-moe-16b, whose remote-code model type transformers cannot build. Hub ids match by their last path component, case-insensitively
(``deepseek-ai/DeepSeek-R1-Distill-Qwen-7B`` -> ``deepseek-r1-distill-qwen-7b``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dsft.errors import DsftError


def _llama(hidden: int, layers: int, heads: int, kv: int, inter: int, vocab: int, **extra: Any) -> dict[str, Any]:
    return {"model_type": "llama", "hidden_size": hidden, "num_hidden_layers": layers,
            "num_attention_heads": heads, "num_key_value_heads": kv, "intermediate_size": inter,
            "vocab_size": vocab, "tie_word_embeddings": False, "rms_norm_eps": 1e-6, **extra}


def _qwen2(hidden: int, layers: int, heads: int, kv: int, inter: int, vocab: int) -> dict[str, Any]:
    return {"model_type": "qwen2", "hidden_size": hidden, "num_hidden_layers": layers,
            "num_attention_heads": heads, "num_key_value_heads": kv, "intermediate_size": inter,
            "vocab_size": vocab, "tie_word_embeddings": False}


def _mla_moe(model_type: str, hidden: int, layers: int, heads: int, inter: int, moe_inter: int, routed: int,
             shared: int, top_k: int, dense: int, q_rank: int | None, vocab: int) -> dict[str, Any]:
    return {"model_type": model_type, "hidden_size": hidden, "num_hidden_layers": layers,
            "num_attention_heads": heads, "num_key_value_heads": heads, "intermediate_size": inter,
            "moe_intermediate_size": moe_inter, "n_routed_experts": routed, "n_shared_experts": shared,
            "num_experts_per_tok": top_k, "first_k_dense_replace": dense, "q_lora_rank": q_rank,
            "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128,
            "vocab_size": vocab, "tie_word_embeddings": False}


_V3 = _mla_moe("deepseek_v3", 7168, 61, 128, 18432, 2048, 256, 1, 8, 3, 1536, 129280)
_V3.update({"n_group": 8, "topk_group": 4})
_V2 = _mla_moe("deepseek_v2", 5120, 60, 128, 12288, 1536, 160, 2, 6, 1, 1536, 102400)
_V2.update({"n_group": 8, "topk_group": 3})

PLANNER_PRESETS: dict[str, dict[str, Any]] = {
    "deepseek-llm-7b": _llama(4096, 30, 32, 32, 11008, 102400),
    "deepseek-llm-67b": _llama(8192, 95, 64, 8, 22016, 102400),
    "deepseek-r1-distill-qwen-1.5b": _qwen2(1536, 28, 12, 2, 8960, 151936),
    "deepseek-r1-distill-qwen-7b": _qwen2(3584, 28, 28, 4, 18944, 152064),
    "deepseek-r1-distill-qwen-14b": _qwen2(5120, 48, 40, 8, 13824, 152064),
    "deepseek-r1-distill-qwen-32b": _qwen2(5120, 64, 40, 8, 27648, 152064),
    "deepseek-r1-distill-llama-8b": _llama(4096, 32, 32, 8, 14336, 128256),
    "deepseek-r1-distill-llama-70b": _llama(8192, 80, 64, 8, 28672, 128256),
    # deepseek-moe-16b ships remote code (model_type "deepseek"); Qwen2-MoE has the same layout:
    # MHA, one dense first layer, 64 routed experts (top 6) plus shared experts of 2 x 1408.
    "deepseek-moe-16b": {"model_type": "qwen2_moe", "hidden_size": 2048, "num_hidden_layers": 28,
                         "num_attention_heads": 16, "num_key_value_heads": 16, "intermediate_size": 10944,
                         "moe_intermediate_size": 1408, "shared_expert_intermediate_size": 2816,
                         "num_experts": 64, "num_experts_per_tok": 6, "mlp_only_layers": [0],
                         "qkv_bias": False, "vocab_size": 102400, "tie_word_embeddings": False},
    "deepseek-v2-lite": _mla_moe("deepseek_v2", 2048, 27, 16, 10944, 1408, 64, 2, 6, 1, None, 102400),
    "deepseek-v2": _V2,
    "deepseek-v2.5": dict(_V2),
    "deepseek-v3": _V3,
    "deepseek-v3-0324": dict(_V3),
    "deepseek-r1": dict(_V3),
    "deepseek-r1-0528": dict(_V3),
    "deepseek-v3.1": dict(_V3),
}


def preset_table() -> dict[str, dict[str, Any]]:
    """Every preset the planner knows: the models package's real-model presets where transformers has the
    architecture natively (deepseek-moe-16b's remote-code type has no class, so the table above stands in),
    under both their own names and ``deepseek-``-prefixed aliases."""
    from transformers import CONFIG_MAPPING

    table = {name: dict(cfg) for name, cfg in PLANNER_PRESETS.items()}
    try:
        from dsft.models.presets import REAL_MODEL_PRESETS
    except ImportError:
        return table
    for name, cfg in REAL_MODEL_PRESETS.items():
        if not isinstance(cfg, dict) or cfg.get("model_type") not in CONFIG_MAPPING:
            continue
        table[name.lower()] = dict(cfg)
        table["deepseek-" + name.lower().removeprefix("deepseek-")] = dict(cfg)  # the alias (itself for deepseek-*)
    return table


def _config_from_dict(values: dict[str, Any], where: str) -> Any:
    from transformers import AutoConfig

    values = dict(values)
    model_type = values.pop("model_type", None)
    if not model_type:
        raise DsftError(f"{where}: no model_type in the config")
    values.pop("quantization_config", None)  # FP8 checkpoints: the planner sizes the BF16 model
    try:
        return AutoConfig.for_model(model_type, **values)
    except ValueError:
        raise DsftError(f"{where}: transformers {_transformers_version()} has no model_type {model_type!r} "
                        "(remote-code architectures cannot be planned; use a preset with the same layout)") from None


def _transformers_version() -> str:
    import transformers

    return transformers.__version__


def resolve_planner_config(model: str) -> tuple[str, Any]:
    """(display name, transformers config) for a preset name, hub id, tiny preset or config path."""
    path = Path(model).expanduser()
    if path.is_dir():
        path = path / "config.json"
    if path.suffix == ".json" or path.is_file():
        if not path.is_file():
            raise DsftError(f"--model {model}: no config.json at {path}")
        return str(path), _config_from_dict(json.loads(path.read_text(encoding="utf-8")), str(path))
    table = preset_table()
    key = model.rstrip("/").split("/")[-1].lower()
    if key in table:
        return key, _config_from_dict(table[key], f"preset {key}")
    if key.startswith("tiny-"):
        from dsft.models.resolve import resolve_model

        directory = resolve_model(key)
        return key, _config_from_dict(json.loads((directory / "config.json").read_text(encoding="utf-8")), key)
    raise DsftError(
        f"--model {model}: not a preset, tiny preset or path to a config.json",
        [f"presets: {', '.join(sorted(table))}"],
    )
