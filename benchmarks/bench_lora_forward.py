"""peft's LoRA forward and the stock RMSNorm against dsft's (``lean_lora``, ``lean_rmsnorm``), paired in one process.

Not a test: run it by hand and quote the figures with the machine they ran on.

    python benchmarks/bench_lora_forward.py --model PATH_OR_PRESET [--seq-len 2048] [--rounds 3] [--threads 1]

One packed row of ``--seq-len`` tokens of the benchmark's short-answer data, one LoRA training step
(forward, dsft's chunked loss, backward) per variant, alternated for ``--rounds`` rounds after one warm-up
step each, so the variants see the same load. Variants: ``peft`` (peft's own forward, the stock RMSNorm),
``lean`` (the fused scaling and sum, and the cast skip), ``lean+norm`` (and RMSNorm on torch's fused kernel,
which exists on CUDA only: on CPU this variant runs the stock norm, a null check of the pairing); the last
is what ``dsft train`` installs. On CPU the weights are fp32 and
the step is timed in process CPU seconds; on a GPU the base is bf16 under bf16 autocast (as the Trainer
runs mixed precision) and the step is timed in wall seconds after a synchronize. dsft's other lean blocks
(the SwiGLU MLP on CPU, segment attention) are on in every variant.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch

from dsft.config.schema import LoraConfig
from dsft.models.loading import load_model, load_tokenizer
from dsft.models.lora import apply_lora
from dsft.models.resolve import resolve_model
from dsft.training.bench.synthetic import first_packed_row
from dsft.training.lean_activations import use_lean_activations
from dsft.training.lean_lora import use_lean_lora
from dsft.training.lean_rmsnorm import RMS_NORM_CLASSES, use_lean_rms_norm
from dsft.training.loss import auto_chunk_size, resolve_loss_dtype, supervised_cross_entropy
from dsft.training.segment_attention import select_segment_attention
from dsft.training.trainer import forward_hidden_states

MODEL_INPUTS = ("input_ids", "position_ids", "cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")


def set_variant(model: torch.nn.Module, lean_lora: bool, fused_norm: bool) -> None:
    """Install dsft's LoRA forward and cast skip and its RMSNorm, or remove them (the stock methods again)."""
    for module in model.modules():
        if hasattr(module, "lora_A") or type(module).__name__ in RMS_NORM_CLASSES:
            vars(module).pop("forward", None)
            vars(module).pop("_cast_input_dtype", None)
    if lean_lora:
        use_lean_lora(model)
    if fused_norm:
        use_lean_rms_norm(model)


VARIANTS = {"peft": (False, False), "lean": (True, False), "lean+norm": (True, True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    model_dir = resolve_model(args.model)
    tokenizer = load_tokenizer(model_dir)
    model = load_model(model_dir, device=device, dtype="bfloat16" if cuda else "float32")
    model.config.use_cache = False
    select_segment_attention(model, packing=True)
    use_lean_activations(model)
    model = apply_lora(model, LoraConfig())
    model.train()
    batch = {k: v.to(device) if torch.is_tensor(v) else v
             for k, v in first_packed_row(tokenizer, args.seq_len, candidates=200).items()}
    inputs = {key: value for key, value in batch.items() if key in MODEL_INPUTS}
    weight = model.get_output_embeddings().weight
    chunk, loss_dtype = auto_chunk_size(weight.shape[0], device), resolve_loss_dtype("auto", weight)

    def step() -> float:
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter() if cuda else time.process_time()
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()
        with autocast:
            hidden, _ = forward_hidden_states(model, inputs)
            loss = supervised_cross_entropy(hidden, weight, batch["labels"], None, chunk_size=chunk,
                                            compute_dtype=loss_dtype)
        loss.backward()
        model.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        return (time.perf_counter() if cuda else time.process_time()) - start

    times: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for variant in times:
        set_variant(model, *VARIANTS[variant])
        step()  # warm-up
    for _ in range(args.rounds):
        for variant, values in times.items():
            set_variant(model, *VARIANTS[variant])
            values.append(step())
    unit = "wall s" if cuda else "CPU s"
    tokens = int(batch["input_ids"].numel())
    print(f"{model_dir.name}: one packed row of {tokens} tokens, LoRA r=16 on all linear layers, "
          f"{'bf16 autocast on ' + torch.cuda.get_device_name() if cuda else 'fp32 CPU, ' + str(args.threads) + ' thread(s)'}")
    for variant, values in times.items():
        print(f"  {variant:9s} {unit} per step: median {statistics.median(values):.4f} "
              f"({', '.join(f'{v:.4f}' for v in values)})")
    peft = statistics.median(times["peft"])
    for variant in ("lean", "lean+norm"):
        print(f"  peft / {variant}: {peft / statistics.median(times[variant]):.3f}x")


if __name__ == "__main__":
    main()
