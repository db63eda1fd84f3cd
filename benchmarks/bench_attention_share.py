"""Share of a dsft training step spent in attention, with masked sdpa or dsft's segment attention.

Not a test: run it by hand and quote the figure with the machine it ran on.

    python benchmarks/bench_attention_share.py [--attn sdpa|dsft_segments] [--model tiny-deepseek-v3]
                                               [--rows 2] [--seq-len 2048] [--threads 1]

One LoRA training step (forward, dsft's chunked loss, backward) on packed rows of the benchmark's synthetic
reasoning data, profiled with torch.profiler after one warm-up step. Prints the step's process CPU time and
the share of the profiled self time spent in attention kernels (sdpa's math path: bmm + softmax and their
backward; its flash path: the flash kernels and their backward). A ratio within one process, so a busy
machine distorts it less than wall-clock time.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.profiler import ProfilerActivity, profile

from dsft.config.schema import LoraConfig
from dsft.models.loading import load_model, load_tokenizer
from dsft.models.lora import apply_lora
from dsft.models.resolve import resolve_model
from dsft.training.bench.synthetic import make_examples
from dsft.training.collators import PackedCollator, pack_row
from dsft.training.loss import supervised_cross_entropy
from dsft.training.packing import pack_best_fit
from dsft.training.segment_attention import SEGMENT_ATTENTION
from dsft.training.trainer import forward_hidden_states

ATTENTION_KERNELS = (
    "aten::bmm", "aten::baddbmm", "aten::_softmax", "aten::_softmax_backward_data",
    "aten::_scaled_dot_product_flash_attention_for_cpu", "aten::_scaled_dot_product_flash_attention_for_cpu_backward",
)
MODEL_INPUTS = ("input_ids", "position_ids", "cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attn", default=SEGMENT_ATTENTION, choices=["sdpa", SEGMENT_ATTENTION])
    parser.add_argument("--model", default="tiny-deepseek-v3")
    parser.add_argument("--rows", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model_dir = resolve_model(args.model)
    tokenizer = load_tokenizer(model_dir)
    model = load_model(model_dir, device="cpu")
    model.config.use_cache = False
    model.config._attn_implementation = args.attn
    model = apply_lora(model, LoraConfig())
    model.train()
    examples = make_examples(tokenizer, 12 * args.rows, seed=0)
    packed = pack_best_fit([len(e.input_ids) for e in examples], args.seq_len)[: args.rows]
    rows = [pack_row([{"input_ids": examples[i].input_ids, "labels": examples[i].labels} for i in row])
            for row in packed]
    batch = PackedCollator(pad_id=0, flatten=args.attn == SEGMENT_ATTENTION)(rows)
    inputs = {key: value for key, value in batch.items() if key in MODEL_INPUTS}
    weight = model.get_output_embeddings().weight

    def step() -> None:
        hidden, _ = forward_hidden_states(model, inputs)
        supervised_cross_entropy(hidden, weight, batch["labels"], None, chunk_size=64).backward()

    step()  # warm-up
    started = time.process_time()
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        step()
    cpu_seconds = time.process_time() - started
    events = profiler.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    attention = sum(e.self_cpu_time_total for e in events if e.key in ATTENTION_KERNELS)
    real_tokens = sum(len(r["input_ids"]) for r in rows)
    print(f"{args.attn}: {len(rows)} rows, {real_tokens} real tokens, step {cpu_seconds:.2f} CPU s, "
          f"attention {attention / total:.1%} of the profiled time")


if __name__ == "__main__":
    main()
