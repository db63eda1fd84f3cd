"""The tiny sweep configuration the sweep tests (and the CLI's no-accelerator-warning test) run: twenty
reservoir Q&A rows and two optimizer steps of tiny-deepseek-llm per trial."""

from __future__ import annotations

import json
from pathlib import Path

import yaml


def write_config(tmp_path: Path, **eval_keys: object) -> Path:
    rows = []
    for i in range(20):
        year = 1950 + (i * 7) % 50
        rows.append({"messages": [{"role": "user", "content": f"Reservoir R{i} was completed in which year?"},
                                  {"role": "assistant", "content": f"R{i} was completed in {year}."}]})
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    config = {
        "model": {"name_or_path": "tiny-deepseek-llm"},
        "data": {"train": [str(data)], "val_ratio": 0.2},
        "train": {"max_steps": 2, "micro_batch_size": 4, "max_seq_len": 128, "warmup_ratio": 0,
                  "lr_scheduler": "constant", "save_steps": 100},
        "lora": {"r": 4},
        "eval": {"steps": 2, "load_best": False, **eval_keys},
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path
