"""LLaMA-Factory's neat_packing path on dsft's benchmark data, for a side-by-side with ``dsft bench train``.

LLaMA-Factory 0.9.5 cannot be installed beside dsft (it caps transformers <= 5.6.0, trl <= 0.24.0,
peft <= 0.18.1, accelerate <= 1.11.0, datasets <= 4.0.0), so it runs in its own virtualenv and process:

    python benchmarks/llamafactory/write_data.py --model tiny-deepseek-v3 --lengths short --out lf/   # dsft's venv
    python -m venv lf-venv && . lf-venv/bin/activate
    pip install torch==2.13.0 llamafactory==0.9.5 && pip uninstall -y torchvision torchaudio
    PYTHONPATH=benchmarks/llamafactory/shim OMP_NUM_THREADS=1 python benchmarks/llamafactory/run_timed.py lf/train.yaml

(No torchaudio build exists for torch 2.13, and LLaMA-Factory imports it at module level only to decode
audio: ``shim/torchaudio`` stands in. The torchvision wheel the resolver picks does not load on torch
2.13 either; a text SFT run needs neither.) The data are the conversations ``dsft bench train`` generates
for the same mix, seed and step count; LLaMA-Factory tokenizes them with its own ``deepseek3`` template,
packs them with neat_packing (block-diagonal attention, knapsack rows of ``cutoff_len``) and trains LoRA
r=16 on all linear layers, as dsft's bench does. Count its supervised tokens from its own tokenized rows
(``tokenized_path``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dsft.models.loading import load_tokenizer
from dsft.models.resolve import resolve_model
from dsft.training.bench.settings import conversation_count
from dsft.training.bench.synthetic import make_examples

CONFIG = """model_name_or_path: {model}
stage: sft
do_train: true
finetuning_type: lora
lora_target: all
lora_rank: 16
lora_alpha: 32
dataset: bench
dataset_dir: {out}
tokenized_path: {out}/tokenized
template: deepseek3
cutoff_len: {seq_len}
packing: true
neat_packing: true
preprocessing_num_workers: 1
output_dir: {out}/run
overwrite_output_dir: true
logging_steps: 1
per_device_train_batch_size: 1
gradient_accumulation_steps: 2
learning_rate: 2.0e-4
num_train_epochs: 1.0
lr_scheduler_type: constant
save_strategy: "no"
report_to: none
bf16: false
dataloader_num_workers: 0
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-deepseek-v3")
    parser.add_argument("--lengths", default="short")
    parser.add_argument("--steps", type=int, default=3, help="as dsft bench train --steps (sets the example count)")
    parser.add_argument("--examples-per-step", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    model_dir = resolve_model(args.model)
    count = conversation_count(args.steps, args.examples_per_step, 1)  # as dsft bench train
    examples = make_examples(load_tokenizer(model_dir), count, 0, 1.0, mix=args.lengths)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps([{"messages": e.messages} for e in examples], ensure_ascii=False),
                                         encoding="utf-8")
    tags = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}
    (args.out / "dataset_info.json").write_text(json.dumps({"bench": {
        "file_name": "bench.json", "formatting": "sharegpt", "columns": {"messages": "messages"}, "tags": tags}}))
    (args.out / "train.yaml").write_text(CONFIG.format(model=model_dir, out=args.out.resolve(), seq_len=args.seq_len))
    print(f"{len(examples)} conversations; config: {args.out / 'train.yaml'}")


if __name__ == "__main__":
    main()
