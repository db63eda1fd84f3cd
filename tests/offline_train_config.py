"""A `dsft train` config that gets through every check before the model and stops there, for tests of what a
run says before anything loads (its notices): one conversation of data, and a hub id that an offline machine
(``HF_HUB_OFFLINE=1``) cannot fetch.

A module of its own, imported by name (see tests/jsonl_files.py): test files never import one another.
"""

from __future__ import annotations

import json
from pathlib import Path

UNREACHABLE_MODEL = "no-such-org/no-such-model"
# What `dsft train` prints when it reaches the model: the first error, after the notices.
MODEL_ERROR = f"error: model '{UNREACHABLE_MODEL}'"


def write_offline_train_config(directory: Path, lines: str) -> Path:
    """``directory/config.yaml``: the unreachable model, ``directory/train.jsonl`` (written here) as its data,
    and ``lines`` (YAML, one key per line, e.g. ``"train: {method: lora}\\nlora: {r: 8}\\n"``)."""
    data = directory / "train.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "Hi"},
                                             {"role": "assistant", "content": "Hello."}]}) + "\n", encoding="utf-8")
    config = directory / "config.yaml"
    config.write_text(f"model: {{name_or_path: {UNREACHABLE_MODEL}}}\ndata: {{train: [{data}]}}\n{lines}",
                      encoding="utf-8")
    return config
