"""Under DeepSpeed-Ulysses every model's attention output is saved twice, and `dsft plan --sp K` counts it so.

Without sequence parallelism the kernel's output ([batch, tokens, heads, head_dim]) is what FlashAttention saves
for its backward and, reshaped as a view, the input o_proj saves: one tensor. Under Ulysses the kernel runs on
all tokens of heads / K heads and saves that output; an all-to-all then hands back the rank's tokens of every
head as a new tensor, which the model makes contiguous for o_proj, and o_proj saves it. Per layer that is one
more tensor of tokens per GPU x heads x head_dim elements (tokens x heads / K x K on the kernel's side: the
same bytes). Multi-head latent attention already had this copy traced (its values are padded around the
all-to-all and the output sliced back: tests/plan/test_mla_padding_and_loss_backward.py); this is the rest.
"""

from __future__ import annotations

import pytest
from transformers import LlamaConfig, Qwen2Config

from dsft.plan.memory import PlanRequest
from dsft.plan.planner import REFERENCE_TOKENS, estimate_memory, profile_from_config, tokens_per_gpu

BF16, FP32 = 2, 4
# Widths chosen so that no two terms coincide: hidden 96, 4 heads of 24, 2 key/value heads, MLP 160.
SHAPE = {"vocab_size": 256, "hidden_size": 96, "intermediate_size": 160, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2}


@pytest.mark.parametrize("config_class", [Qwen2Config, LlamaConfig])
@pytest.mark.parametrize("precision,width", [("bf16", BF16), ("fp32", FP32)])
def test_ulysses_saves_one_more_attention_output_per_layer(config_class, precision: str, width: int) -> None:
    config = config_class(**SHAPE)
    profile = profile_from_config(config)
    plain, ulysses = profile.layer_activations(precision, sp=1), profile.layer_activations(precision, sp=2)
    head_dim = config.hidden_size // config.num_attention_heads
    output = REFERENCE_TOKENS * config.num_attention_heads * head_dim * width  # the all-to-all's tensor for o_proj
    assert [(count, b.saved_bytes - a.saved_bytes) for (a, count), (b, _) in zip(plain, ulysses)] == [(2, output)]
    assert [b.input_bytes for b, _ in ulysses] == [a.input_bytes for a, _ in plain]
    assert profile.layer_activations(precision, sp=4) is ulysses  # one trace, whatever the degree


def _extra_activations(config: Qwen2Config, more_sp: int, fewer_sp: int) -> tuple[int, int]:
    """Tokens per GPU and the activation bytes SP ``more_sp`` keeps beyond SP ``fewer_sp`` at those same tokens
    per GPU (rows of 2,048 x SP tokens, full fine-tuning, ZeRO-3, 4 GPUs)."""
    profile = profile_from_config(config)
    more, fewer = (PlanRequest(method="full", gpus_per_node=4, zero=3, seq_len=2048 * sp, sp=sp)  # type: ignore[arg-type]
                   for sp in (more_sp, fewer_sp))
    tokens = tokens_per_gpu(more)
    assert tokens == tokens_per_gpu(fewer) == 2048
    return tokens, (estimate_memory(profile, more).breakdown["activations"]
                    - estimate_memory(profile, fewer).breakdown["activations"])


def test_the_plan_of_a_ulysses_run_counts_the_second_output_in_every_layer() -> None:
    """Without checkpointing every layer keeps its saved tensors until backward: 4,096-token rows at K = 2 hold
    num_hidden_layers x 2,048 tokens x hidden bytes more activations than 2,048-token rows without Ulysses,
    the same tokens per GPU (heads x head_dim = hidden here)."""
    config = Qwen2Config(**SHAPE)
    tokens, extra = _extra_activations(config, 2, 1)
    assert extra == config.num_hidden_layers * tokens * config.hidden_size * BF16


def test_key_value_heads_fewer_than_the_sp_ranks_are_replicated_to_one_per_rank() -> None:
    """Ulysses gives each rank heads / K query heads and, where K exceeds the key/value heads, repeats those
    heads until each rank has one (deepspeed's UlyssesSPAttentionHF: kv_replication_factor = K // kv heads,
    one local kv head): the kernel then saves key and value over every token of the row, tokens per GPU x K x
    head_dim elements each, where K <= kv heads saves tokens per GPU x kv heads x head_dim. Same tokens per
    GPU at K = 4 and K = 2 (2 kv heads): 2 x 2,048 x 24 x (4 - 2) bf16 elements more in each of the 2 layers."""
    config = Qwen2Config(**{**SHAPE, "num_attention_heads": 8, "hidden_size": 192})  # 8 heads of 24, 2 kv heads
    tokens, extra = _extra_activations(config, 4, 2)
    head_dim = config.hidden_size // config.num_attention_heads
    assert extra == config.num_hidden_layers * 2 * tokens * head_dim * (4 - 2) * BF16
