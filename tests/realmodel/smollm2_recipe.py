"""The bounded fine-tuning recipe of the real-model tier (``--set`` overrides), measured on a 2-core machine
(see docs/models.md for the figures): 4 epochs of 7 steps (the 40 records pack into 28 rows of at most 128
tokens, 4 rows a step).

Used by test_finetune.py, which measures what it learns, and by test_demo.py, which checks that ``dsft demo
--model smollm2`` trains with it. A module of its own, imported by name: a test file never imports another
test file.
"""

from __future__ import annotations

TRAIN = ["train.epochs=4", "train.micro_batch_size=4", "train.max_seq_len=128", "train.lr_scheduler=constant",
         "train.warmup_ratio=0.0", "train.save_steps=1000", "eval.steps=10", "eval.load_best=false",
         "train.report_to=[]", "train.logging_steps=10"]
FULL = ["train.method=full", "train.lr=3e-4"]
LORA = ["train.method=lora", "train.lr=2e-3", "lora.r=16", "lora.alpha=32"]
