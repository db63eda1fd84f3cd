"""The planner against measured peak memory of real CPU training steps (within 15 %).

Each case trains a real architecture for two optimizer steps on CPU in fp32, the way dsft trains
(body forward without logits, chunked supervised loss, AdamW), under ``PeakTensorMemory``, which sees
every tensor the steps allocate. Two steps, because the steady state (Adam moments alive during the
forward) is what a long run sees. The planner is asked the same question with ``device="cpu"`` (no
CUDA context) and ``precision="fp32"``. The small models are sized so that activations and the loss
buffer, not the embedding table, dominate; the tiny preset checks the embedding-dominated case.

DeepseekV3 on CPU: q/k head dim (24) differs from v's (16), so PyTorch's SDPA uses its math kernel,
which keeps the s x s probabilities; the planner is told so (``attention="math"``). GPU runs use
FlashAttention or the memory-efficient kernel (the planner's default).
"""

from __future__ import annotations

import pytest
import torch

from dsft.plan.memory import PlanRequest
from dsft.plan.planner import estimate_memory, profile_from_config
from peak_memory import PeakTensorMemory

TOLERANCE = 0.15
SMALL = {"hidden_size": 128, "intermediate_size": 256, "vocab_size": 4096, "bos_token_id": 1, "eos_token_id": 2}
SMALL_MLA = {"moe_intermediate_size": 64, "q_lora_rank": 48, "kv_lora_rank": 32, "qk_nope_head_dim": 16,
             "qk_rope_head_dim": 8, "v_head_dim": 16}


def _config(preset: str, small: bool, tiny_model_dir):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(tiny_model_dir(preset))
    if small:
        for key, value in {**SMALL, **(SMALL_MLA if config.model_type == "deepseek_v3" else {})}.items():
            setattr(config, key, value)
    return config


def measure_training_peak(config, method: str, checkpointing: bool, micro_batch: int, seq_len: int) -> int:
    """Peak tensor bytes over two dsft-style training steps of ``config`` on CPU."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from dsft.models.lora import discover_lora_targets
    from dsft.training.loss import supervised_cross_entropy
    from dsft.training.trainer import forward_hidden_states, unwrap_causal_lm

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.config.use_cache = False
    if method == "lora":
        targets = discover_lora_targets(model)
        model = get_peft_model(model, LoraConfig(r=8, target_modules=targets.modules,
                                                 target_parameters=targets.parameters or None))
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if method == "lora":
            model.enable_input_require_grads()
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    input_ids = torch.randint(0, config.vocab_size, (micro_batch, seq_len))
    tracker = PeakTensorMemory(model)
    with tracker:
        for _ in range(2):
            hidden, outputs = forward_hidden_states(model, {"input_ids": input_ids})
            head = unwrap_causal_lm(model).get_output_embeddings()
            loss = supervised_cross_entropy(hidden, head.weight, input_ids, None, 1024)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            del hidden, outputs, loss
    return tracker.peak


CASES = [
    ("tiny-r1-distill-qwen", False, "full", False, 2, 256),
    ("tiny-r1-distill-qwen", True, "full", False, 2, 512),
    ("tiny-r1-distill-qwen", True, "full", True, 2, 512),
    ("tiny-r1-distill-qwen", True, "lora", False, 2, 512),
    ("tiny-r1-distill-qwen", True, "lora", True, 2, 512),
    ("tiny-deepseek-v3", True, "full", False, 2, 512),
    ("tiny-deepseek-v3", True, "lora", True, 2, 512),
]


@pytest.mark.slow
@pytest.mark.parametrize("preset,small,method,checkpointing,micro_batch,seq_len", CASES)
def test_planner_matches_measured_cpu_peak(preset, small, method, checkpointing, micro_batch, seq_len,
                                           tiny_model_dir, record_property) -> None:
    config = _config(preset, small, tiny_model_dir)
    measured = measure_training_peak(config, method, checkpointing, micro_batch, seq_len)
    request = PlanRequest(method=method, seq_len=seq_len, micro_batch=micro_batch, grad_checkpointing=checkpointing,
                          lora_rank=8, precision="fp32", device="cpu", loss_chunk=1024,
                          attention="math" if config.model_type == "deepseek_v3" else "flash")
    planned = estimate_memory(profile_from_config(config), request).per_gpu_bytes
    error = (planned - measured) / measured
    record_property("planner_error", round(error, 4))
    print(f"{preset} small={small} {method} ckpt={checkpointing}: measured {measured / 2**20:.1f} MiB, "
          f"planned {planned / 2**20:.1f} MiB, error {error:+.1%}")
    assert abs(error) <= TOLERANCE
