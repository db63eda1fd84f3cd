"""The chunked supervised loss alone, side by side: the previous four-pass fp32 loss, the fused fp32 loss
and the fused loss with bf16 lm_head matmuls, on real lm_head shapes.

    python benchmarks/bench_loss.py [--rows 256] [--repeats 3] [--threads 1] [--out FILE.json]

Each repeat times every variant once, interleaved, on the same inputs (forward + gradients, as a training
step computes them), in wall-clock and process CPU time (the steadier figure on a shared machine): LoRA
(frozen lm_head: gradient to the hidden states only) and full fine-tuning (also the weight gradient). The best of the repeats is reported, with the loss and hidden-gradient
difference of each variant from the previous fp32 loss. Chunk sizes are ``train.loss_chunk_size: auto``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import torch

from dsft.training.loss import auto_chunk_size, supervised_cross_entropy

# (name, hidden, vocab): the lm_heads of tiny-deepseek-v3, SmolLM2-135M, a Qwen2 body scaled to hidden
# 1,024 with Qwen2's vocabulary, and small heads (down to a unit test's) for where bf16 starts to pay.
SHAPES = [("tiny-deepseek-v3", 64, 129_280), ("smollm2-135m", 576, 49_152), ("qwen2-h1024", 1024, 151_936),
          ("small-32x32000", 32, 32_000), ("small-128x32000", 128, 32_000), ("test-32x600", 32, 600),
          ("small-64x8000", 64, 8_000), ("small-64x32000", 64, 32_000)]


def previous_fp32_loss(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int,
                       want_weight: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The loss as it was before the fused pass: max, subtract, exp and sum over each chunk, one pass each."""
    total = torch.zeros(())
    grad_hidden = torch.empty_like(hidden)
    grad_weight = torch.zeros_like(weight) if want_weight else None
    buffer = torch.empty((min(chunk, hidden.shape[0]), weight.shape[0]))
    for start in range(0, hidden.shape[0], chunk):
        h, t = hidden[start : start + chunk], targets[start : start + chunk]
        logits = torch.mm(h, weight.t(), out=buffer[: h.shape[0]])
        target_logits = logits.gather(1, t[:, None]).squeeze(1)
        row_max = logits.amax(dim=-1, keepdim=True)
        exp_shifted = logits.sub_(row_max).exp_()
        normalizer = exp_shifted.sum(dim=-1, keepdim=True)
        total += (normalizer.log().squeeze(1) + row_max.squeeze(1) - target_logits).sum()
        if grad_weight is None:
            projected = (exp_shifted @ weight).div_(normalizer)
            grad_hidden[start : start + chunk] = projected - weight[t]
            continue
        grad_logits = exp_shifted.div_(normalizer)
        grad_logits[torch.arange(t.shape[0]), t] -= 1.0
        grad_hidden[start : start + chunk] = grad_logits @ weight
        grad_weight += grad_logits.t() @ h
    return total, grad_hidden, grad_weight


def fused_loss(dtype: torch.dtype) -> Any:
    def run(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int,
            want_weight: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        h = hidden.detach().requires_grad_()
        w = weight.detach().requires_grad_(want_weight)
        labels = torch.cat([torch.full((1,), -100), targets])[None]  # position t predicts label t + 1
        h_row = torch.cat([h, h[:1]])[None]
        loss = supervised_cross_entropy(h_row, w, labels, num_items_in_batch=1, chunk_size=chunk,
                                        compute_dtype=dtype)
        grads = torch.autograd.grad(loss, [h, w] if want_weight else [h])
        return loss.detach(), grads[0], grads[1] if want_weight else None
    return run


VARIANTS = {"previous fp32 (four passes)": previous_fp32_loss, "fused fp32": fused_loss(torch.float32),
            "fused bf16 matmuls": fused_loss(torch.bfloat16)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=256, help="supervised positions per loss call")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--shapes", default="", help="comma-separated shape names (default: all)")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    chosen = [s for s in SHAPES if not args.shapes or s[0] in args.shapes.split(",")]
    report: dict[str, Any] = {"rows": args.rows, "threads": args.threads, "load_average_at_start": os.getloadavg(),
                              "torch": torch.__version__, "results": []}
    for name, hidden_size, vocab in chosen:
        generator = torch.Generator().manual_seed(0)
        hidden = torch.randn(args.rows, hidden_size, generator=generator)
        weight = torch.randn(vocab, hidden_size, generator=generator) * (2.0 / hidden_size**0.5)
        targets = torch.randint(0, vocab, (args.rows,), generator=generator)
        chunk = auto_chunk_size(vocab, "cpu")
        for mode, want_weight in (("lora", False), ("full", True)):
            best = {v: float("inf") for v in VARIANTS}
            best_cpu = {v: float("inf") for v in VARIANTS}
            outputs: dict[str, Any] = {}
            for _ in range(args.repeats):
                for variant, run in VARIANTS.items():
                    start, cpu_start = time.perf_counter(), time.process_time()
                    outputs[variant] = run(hidden, weight, targets, chunk, want_weight)
                    best[variant] = min(best[variant], time.perf_counter() - start)
                    best_cpu[variant] = min(best_cpu[variant], time.process_time() - cpu_start)
            ref_loss, ref_grad, _ = outputs["previous fp32 (four passes)"]
            flops = 2 * args.rows * hidden_size * vocab * (3 if want_weight else 2)
            for variant in VARIANTS:
                loss, grad, _ = outputs[variant]
                row = {"shape": name, "hidden": hidden_size, "vocab": vocab, "chunk": chunk, "mode": mode,
                       "variant": variant, "ms": round(best[variant] * 1e3, 1),
                       "matmul_gflop_per_s": round(flops / best[variant] / 1e9, 1),
                       "speedup_vs_previous": round(best["previous fp32 (four passes)"] / best[variant], 2),
                       "cpu_ms": round(best_cpu[variant] * 1e3, 1),
                       "cpu_speedup_vs_previous": round(best_cpu["previous fp32 (four passes)"] / best_cpu[variant], 2),
                       "loss_rel_diff": float((loss - ref_loss).abs() / ref_loss.abs()),
                       "grad_hidden_rel_diff": float((grad - ref_grad).norm() / ref_grad.norm())}
                report["results"].append(row)
                print(json.dumps(row), flush=True)
    report["load_average_at_end"] = os.getloadavg()
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=1)


if __name__ == "__main__":
    main()
