"""Where the CPU limit of a LoRA step lies: the body's matmul shapes and the attention kernel, one by one.

Not a test: run it by hand and quote the figures with the machine and load they ran at.

    OMP_NUM_THREADS=1 python benchmarks/bench_cpu_kernels.py [--dtype bf16|fp32] [--threads 1] [--rows 1024]

Defaults are SmolLM2-135M's shapes (hidden 576, MLP 1,536, 9 query and 3 key/value heads of 64, vocabulary
49,152). Every figure is the best of 6 runs per second of process CPU time, as ``dsft bench train`` measures
its matmul peak (a 2,048-square matmul), so the two compare:

1. each decoder-layer matmul at ``--rows`` rows, forward (``x @ W.T``) and input gradient (``g @ W``), the
   two products a LoRA step runs on a frozen weight, as a fraction of the square peak;
2. the CPU flash-attention kernel sdpa uses (causal, one segment), forward and backward, in ``--dtype`` and
   with the segment upcast to fp32 (the casts counted), at segment lengths 32 to 2,000; GFLOP/s counts the
   causal half of the score and value products (forward 2 x 2 x n^2/2 x 64 x heads, backward twice that).
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import torch

FLASH = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
FLASH_BACKWARD = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward


def best_cpu_seconds(run: Callable[[], object], repeats: int = 6) -> float:
    run()
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        run()
        best = min(best, time.process_time() - start)
    return max(best, 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rows", type=int, default=1024)
    parser.add_argument("--hidden", type=int, default=576)
    parser.add_argument("--intermediate", type=int, default=1536)
    parser.add_argument("--heads", type=int, default=9)
    parser.add_argument("--kv-heads", type=int, default=3)
    parser.add_argument("--head-dim", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32

    side = 2048
    a, b = torch.randn(side, side, dtype=dtype), torch.randn(side, side, dtype=dtype)
    peak = 2 * side**3 / best_cpu_seconds(lambda: a @ b)
    print(f"{args.dtype} square matmul peak: {peak / 1e9:.1f} GFLOP/s per CPU-second, {args.threads} thread(s)")

    hidden, kv = args.hidden, args.kv_heads * args.head_dim
    shapes = [("q", hidden, args.heads * args.head_dim), ("k", hidden, kv), ("v", hidden, kv),
              ("o", args.heads * args.head_dim, hidden), ("gate", hidden, args.intermediate),
              ("up", hidden, args.intermediate), ("down", args.intermediate, hidden)]
    total_flops = total_seconds = 0.0
    for name, inputs, outputs in shapes:
        x, weight = torch.randn(args.rows, inputs, dtype=dtype), torch.randn(outputs, inputs, dtype=dtype)
        grad = torch.randn(args.rows, outputs, dtype=dtype)
        forward, backward = best_cpu_seconds(lambda: x @ weight.t()), best_cpu_seconds(lambda: grad @ weight)
        flops = 2 * args.rows * inputs * outputs
        total_flops, total_seconds = total_flops + 2 * flops, total_seconds + forward + backward
        print(f"  {name:5s} {inputs:5d} -> {outputs:5d}: forward {flops / forward / peak:4.0%}, "
              f"input gradient {flops / backward / peak:4.0%} of the peak")
    print(f"decoder-layer matmuls together: {total_flops / total_seconds / 1e9:.1f} GFLOP/s, "
          f"{total_flops / total_seconds / peak:.0%} of the peak")

    print(f"flash attention, one causal segment, {args.heads} query / {args.kv_heads} key-value heads of "
          f"{args.head_dim} (ms per CPU-second; GFLOP/s of forward + backward):")
    for length in (32, 64, 150, 300, 500, 700, 1000, 1500, 2000):
        query = torch.randn(1, args.heads, length, args.head_dim, dtype=dtype)
        key, value = (torch.randn(1, args.kv_heads, length, args.head_dim, dtype=dtype) for _ in range(2))
        out, lse = FLASH(query, key, value, 0.0, True)
        grad = torch.ones_like(out)
        forward = best_cpu_seconds(lambda: FLASH(query, key, value, 0.0, True))
        backward = best_cpu_seconds(lambda: FLASH_BACKWARD(grad, query, key, value, out, lse, 0.0, True))
        line = f"  n={length:5d}: {args.dtype} forward {forward * 1e3:7.2f} backward {backward * 1e3:7.2f}"
        flops = 3 * 2 * 2 * length * length / 2 * args.head_dim * args.heads
        line += f" ({flops / (forward + backward) / 1e9:5.1f} GFLOP/s)"
        if dtype != torch.float32:
            forward32 = best_cpu_seconds(lambda: FLASH(query.float(), key.float(), value.float(), 0.0, True)[0]
                                         .to(dtype))
            backward32 = best_cpu_seconds(lambda: [
                part.to(dtype) for part in FLASH_BACKWARD(grad.float(), query.float(), key.float(), value.float(),
                                                          out.float(), lse, 0.0, True)[:3]])
            line += (f" | upcast to fp32: forward {forward32 * 1e3:7.2f} backward {backward32 * 1e3:7.2f} "
                     f"({flops / (forward32 + backward32) / 1e9:5.1f} GFLOP/s)")
        print(line, flush=True)


if __name__ == "__main__":
    main()
