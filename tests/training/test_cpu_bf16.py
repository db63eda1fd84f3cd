"""``train.precision: bf16`` on a CPU with bf16 matrix instructions: the frozen base in bf16 (LoRA) or fp32
master weights (full), autocast for the matmuls, and packed attention that takes autocast's mixed dtypes."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import TrainerCallback

from dsft.training.environment import cpu_multiplies_bf16
from dsft.training.monitoring import read_metrics
from dsft.training.run import run_training
from dsft.training.segment_attention import segment_attention_forward

from tiny_runs import make_cfg, write_data

CPU_BF16 = pytest.mark.skipif(
    torch.cuda.is_available() or not cpu_multiplies_bf16(),
    reason="needs a CPU without CUDA that has bf16 matrix instructions (AVX512-BF16 or AMX); elsewhere "
           "train.precision=bf16 is refused (test_guide_defects) or means GPU training")


def test_packed_attention_under_autocast_takes_an_fp32_query_beside_a_bf16_value() -> None:
    # Full fine-tuning under autocast: RoPE leaves query and key in fp32, the value comes from a bf16 matmul.
    torch.manual_seed(0)
    query, key = torch.randn(1, 4, 12, 8), torch.randn(1, 2, 12, 8)
    value = torch.randn(1, 2, 12, 8).to(torch.bfloat16)
    position_ids = torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 6]])  # two examples in one row
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = segment_attention_forward(torch.nn.Module(), query, key, value, None, position_ids=position_ids)
    assert out.dtype == torch.bfloat16 and out.shape == (1, 12, 4, 8)
    # Each example on its own, causal, in fp32 from the same bf16-rounded inputs.
    q, k, v = (t.to(torch.bfloat16).float() for t in (query, key.repeat_interleave(2, 1), value.repeat_interleave(2, 1)))
    expected = torch.cat([F.scaled_dot_product_attention(q[:, :, a:b], k[:, :, a:b], v[:, :, a:b], is_causal=True)
                          for a, b in ((0, 5), (5, 12))], dim=2).transpose(1, 2)
    torch.testing.assert_close(out.float(), expected, atol=2e-2, rtol=2e-2)  # bf16 output: 8 significant bits


class DtypeProbe(TrainerCallback):
    """Records the Trainer's precision, the parameters' dtypes and what the first attention output
    projection computed in."""

    def __init__(self) -> None:
        self.seen: dict[str, object] = {}

    def on_train_begin(self, args, state, control, model=None, **kwargs):  # noqa: ANN001, ANN003, ANN201
        self.seen["bf16"] = args.bf16
        self.seen["trained"] = {p.dtype for p in model.parameters() if p.requires_grad}
        projection = next(m for n, m in model.named_modules() if n.endswith("layers.0.self_attn.o_proj"))
        self.seen["o_proj_weight"] = getattr(projection, "base_layer", projection).weight.dtype
        projection.register_forward_hook(self.record)

    def record(self, module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        self.seen.setdefault("o_proj", output.dtype)


@CPU_BF16
@pytest.mark.parametrize(("method", "base", "trained"), [
    # The frozen base in bf16 (transformers keeps DeepSeek-V3's router in fp32), the adapters fp32 (peft's default).
    ("lora", torch.bfloat16, {torch.float32}),
    ("full", torch.float32, {torch.float32}),  # fp32 master weights
])
def test_bf16_on_a_cpu_with_bf16_instructions_trains_under_autocast(
    tmp_path: Path, tiny_model_dir, method: str, base: torch.dtype, trained: set,
) -> None:
    tiny_model_dir("tiny-deepseek-v3")
    cfg = make_cfg(write_data(tmp_path / "data.jsonl", n=16), "tiny-deepseek-v3", "train.precision=bf16",
                   f"train.method={method}", "train.max_steps=2", "train.save_steps=2", "eval.steps=2")
    probe = DtypeProbe()
    run_training(cfg, tmp_path / "run", progress=False, extra_callbacks=[probe])
    assert probe.seen["bf16"] is True
    assert probe.seen["o_proj_weight"] == base and probe.seen["trained"] == trained
    assert probe.seen["o_proj"] == torch.bfloat16  # the matmuls ran in bf16
    losses = [row["loss"] for row in read_metrics(tmp_path / "run" / "metrics.jsonl") if "loss" in row]
    evals = [row["eval_loss"] for row in read_metrics(tmp_path / "run" / "metrics.jsonl") if "eval_loss" in row]
    assert losses and evals and all(math.isfinite(x) for x in losses + evals)
