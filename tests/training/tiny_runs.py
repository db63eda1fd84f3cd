"""The small SFT run the training tests share: reservoir Q&A data, a config over it, and the trained weights
of a run's final directory."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from dsft.config import load_config


CHECKPOINT_FILES = {"optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json"}


def write_data(path: Path, n: int = 48) -> Path:
    rows = []
    for i in range(n):
        year = 1950 + (i * 7) % 50
        rows.append({"messages": [
            {"role": "user", "content": f"Reservoir R{i} was completed in which year?"},
            {"role": "assistant", "content": f"R{i} was completed in {year}.",
             "reasoning_content": f"R{i} -> {year}."},
        ]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def make_cfg(data: Path, model: str = "tiny-deepseek-v3", *extra: str):
    return load_config(None, [
        f"model.name_or_path={model}", f"data.train=[{data}]", "data.val_ratio=0.125",
        "train.max_steps=8", "train.save_steps=4", "train.micro_batch_size=2", "train.max_seq_len=128",
        "train.lr=5e-3", "train.warmup_ratio=0", "train.lr_scheduler=constant", "eval.steps=4",
        "eval.load_best=false", "lora.r=8", *extra,
    ])


def trainable_snapshot(final_dir: Path) -> dict[str, torch.Tensor]:
    for name in ("adapter_model.safetensors", "model.safetensors"):
        if (final_dir / name).is_file():
            return load_file(str(final_dir / name))
    raise AssertionError(f"no weights in {final_dir}")
