"""Tiny, seeded, randomly initialised models of the real DeepSeek architectures.

Each preset is built by one function per architecture and written as an ordinary Hugging Face
checkpoint (config.json, model.safetensors, tokenizer.json + tokenizer_config.json with the family's
chat template, generation_config.json), so everything downstream loads it through the same code as a
real checkpoint. Sizes: hidden 64, a few layers; the real vocabularies dominate the parameter count
(untied embeddings and lm_head, as in the real V3, R1-Distill-Qwen-1.5B and DeepSeek-LLM).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsft.errors import DsftError
from dsft.models import tokenizers
from dsft.models.loading import use_cpu_accelerator_without_cuda


# Weight init std (config.initializer_range), as in the real configs. At hidden size 64 it bounds every
# logit to about +-1.3 (sqrt(64) * 0.02 * sqrt(64)) behind the final RMSNorm, so LoRA, which leaves lm_head
# and the norms frozen, lowers the loss of a memorised sentence by only ~1 nat (measured, 30 AdamW steps at
# lr 5e-3, r 8: 11.76 -> 10.58 at 0.02; 11.83 -> 6.13 at 0.1). Export tests bound absolute logit errors
# of quantized files on the 0.02 scale, so raise this only together with them.
TINY_INIT_STD = 0.02

# The families' released generation_config.json (special ids and DeepSeek's recommended sampling).
R1_GENERATION = {"bos_token_id": 0, "eos_token_id": 1, "do_sample": True, "temperature": 0.6, "top_p": 0.95}
R1_DISTILL_QWEN_GENERATION = {"bos_token_id": 151646, "eos_token_id": 151643, "do_sample": True,
                              "temperature": 0.6, "top_p": 0.95}
DEEPSEEK_LLM_GENERATION = {"bos_token_id": 100000, "eos_token_id": 100001}


@dataclass(frozen=True)
class TinyPreset:
    """A tiny preset: what it mimics and the function that writes it."""

    name: str
    architecture: str
    mimics: str
    tokenizer: str
    build: Callable[[Path, int], None]
    config: Callable[[], dict[str, Any]]


def _deepseek_v3_config() -> dict[str, Any]:
    """DeepseekV3 with MLA (q_lora_rank set) and MoE: 1 dense layer + 2 MoE layers, 1 shared + 8 routed experts."""
    return {
        "architectures": ["DeepseekV3ForCausalLM"],
        "model_type": "deepseek_v3",
        "vocab_size": 129280,
        "hidden_size": 64,
        "intermediate_size": 128,  # dense MLP of the first layer
        "moe_intermediate_size": 32,  # per routed/shared expert
        "num_hidden_layers": 3,
        "first_k_dense_replace": 1,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "q_lora_rank": 48,
        "kv_lora_rank": 32,
        "qk_nope_head_dim": 16,
        "qk_rope_head_dim": 8,
        "v_head_dim": 16,
        "n_shared_experts": 1,
        "n_routed_experts": 8,
        "num_experts_per_tok": 2,
        # Group-limited routing as in V3: 4 groups of 2 experts, best 2 groups, then top-2 experts.
        "n_group": 4,
        "topk_group": 2,
        "norm_topk_prob": True,
        "routed_scaling_factor": 2.5,
        "scoring_func": "sigmoid",
        "topk_method": "noaux_tc",
        "hidden_act": "silu",
        "max_position_embeddings": 163840,
        "rope_parameters": {
            "rope_type": "yarn", "rope_theta": 10000.0, "factor": 40.0,
            "original_max_position_embeddings": 4096, "beta_fast": 32.0, "beta_slow": 1.0,
            "mscale": 1.0, "mscale_all_dim": 1.0,
        },
        "rope_interleave": True,
        "rms_norm_eps": 1e-6,
        "attention_bias": False,
        "tie_word_embeddings": False,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "use_cache": True,  # as released; training turns it off
        "initializer_range": TINY_INIT_STD,
    }


def _qwen2_config() -> dict[str, Any]:
    """Qwen2 as in R1-Distill-Qwen-1.5B: q/k/v bias, GQA, untied, vocab 151936 (config.json's BOS trap kept)."""
    return {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "vocab_size": 151936,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "hidden_act": "silu",
        "max_position_embeddings": 131072,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
        "sliding_window": 4096,
        "use_sliding_window": False,
        "max_window_layers": 2,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": False,
        # The released config.json says bos 151643 although the tokenizer's BOS is 151646; kept on purpose
        # so the loader's fix is exercised (see dsft.models.loading.align_special_tokens).
        "bos_token_id": 151643,
        "eos_token_id": 151643,
        "use_cache": True,
        "initializer_range": TINY_INIT_STD,
    }


def _llama_config() -> dict[str, Any]:
    """Llama as in DeepSeek-LLM-7B: no biases, MHA, untied, vocab 102400."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": 102400,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "hidden_act": "silu",
        "max_position_embeddings": 4096,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
        "rms_norm_eps": 1e-6,
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": False,
        "bos_token_id": 100000,
        "eos_token_id": 100001,
        "use_cache": True,
        "initializer_range": TINY_INIT_STD,
    }


def write_random_checkpoint(out_dir: Path, config: dict[str, Any], generation: dict[str, Any], seed: int,
                            dtype: str = "float32", device: str = "cpu") -> None:
    """Instantiate the architecture from ``config`` with seeded random weights (built on ``device``) and save
    it as ``dtype`` safetensors, with the family's generation config."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    use_cpu_accelerator_without_cuda()
    model_type = config["model_type"]
    hf_config = AutoConfig.for_model(model_type, **{k: v for k, v in config.items() if k != "model_type"})
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(hf_config, dtype=getattr(torch, dtype))
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a tiny write needs no "Writing model shards" bar
    try:
        model.save_pretrained(out_dir)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    # save_pretrained also writes a generation_config derived from config; replace it with the
    # family's released one (sampling defaults included).
    (out_dir / "generation_config.json").write_text(json.dumps(generation, indent=2), encoding="utf-8")


def build_tiny_deepseek_v3(out_dir: Path, seed: int) -> None:
    """DeepseekV3ForCausalLM (MLA + MoE) with DeepSeek-R1's tokenizer and chat template."""
    write_random_checkpoint(out_dir, _deepseek_v3_config(), R1_GENERATION, seed)
    tokenizers.write_tokenizer_files(*tokenizers.r1_tokenizer_files(), out_dir)


def build_tiny_r1_distill_qwen(out_dir: Path, seed: int) -> None:
    """Qwen2ForCausalLM with the R1-Distill-Qwen tokenizer (Qwen2 BPE + DeepSeek specials) and template."""
    write_random_checkpoint(out_dir, _qwen2_config(), R1_DISTILL_QWEN_GENERATION, seed)
    tokenizers.write_tokenizer_files(*tokenizers.r1_distill_qwen_tokenizer_files(), out_dir)


def build_tiny_deepseek_llm(out_dir: Path, seed: int) -> None:
    """LlamaForCausalLM with the (stand-in) DeepSeek-LLM tokenizer and the deepseek-llm chat template."""
    write_random_checkpoint(out_dir, _llama_config(), DEEPSEEK_LLM_GENERATION, seed)
    tokenizers.write_tokenizer_files(*tokenizers.deepseek_llm_tokenizer_files(), out_dir)


TINY_PRESETS: dict[str, TinyPreset] = {
    preset.name: preset
    for preset in (
        TinyPreset("tiny-deepseek-v3", "DeepseekV3ForCausalLM", "DeepSeek-V3 / R1 (MLA + MoE)",
                   "DeepSeek-R1 (real vocab)", build_tiny_deepseek_v3, _deepseek_v3_config),
        TinyPreset("tiny-r1-distill-qwen", "Qwen2ForCausalLM", "DeepSeek-R1-Distill-Qwen-1.5B",
                   "R1-Distill-Qwen (real vocab)", build_tiny_r1_distill_qwen, _qwen2_config),
        TinyPreset("tiny-deepseek-llm", "LlamaForCausalLM", "DeepSeek-LLM-7B-Chat",
                   "stand-in (real special ids)", build_tiny_deepseek_llm, _llama_config),
    )
}


def write_tiny(name: str, out_dir: str | Path, seed: int = 0) -> Path:
    """Write tiny preset ``name`` to ``out_dir`` (created; must be empty or absent) and return the directory.

    >>> write_tiny("tiny-deepseek-v3", "/tmp/tiny-v3")  # doctest: +SKIP
    PosixPath('/tmp/tiny-v3')
    """
    preset = TINY_PRESETS.get(name)
    if preset is None:
        raise DsftError(f"unknown tiny preset {name!r}; choose one of: {', '.join(TINY_PRESETS)}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DsftError(f"{out}: exists and is not a directory; choose a new directory for the tiny model")
    if out.exists() and any(out.iterdir()):
        raise DsftError(f"{out}: directory is not empty; choose a new directory for the tiny model")
    out.mkdir(parents=True, exist_ok=True)
    preset.build(out, seed)
    return out
