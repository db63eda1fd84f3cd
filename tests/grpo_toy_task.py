"""A GRPO task small enough to learn on a CPU in a few steps, written as a user would: a reward module, prompt
files and a config. Shared by the GRPO training test and the GRPO sweep test (each states what it varies).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

REWARD = "toy_rewards:even_tokens"

# Completions this short are far too short for reasoning: allowed on purpose (grpo.allow_short_completions),
# and warned about at every step.
COMPLETION_TOKENS = 8

# A reward a tiny random model can learn in a few steps: the share of sampled tokens with an even id. Its base
# rate is ~0.5, so every group has reward variance from the first step; sampling at a low temperature makes
# the same few candidate tokens recur, so pushing up the even ones generalises within a dozen steps.
REWARD_MODULE = textwrap.dedent("""
    def even_tokens(prompts, completions, completion_ids, **kwargs):
        return [sum(1 for t in ids if t % 2 == 0) / max(len(ids), 1) for ids in completion_ids]
""")


def _write_prompts(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_toy_grpo_config(directory: Path, monkeypatch: pytest.MonkeyPatch, model: str, *,
                          train: dict[str, Any], evaluation: dict[str, Any], grpo: dict[str, Any] | None = None) -> Path:
    """Write the task into ``directory`` and return its config, ``grpo.yaml``.

    The reward module becomes importable (``directory`` goes on ``sys.path`` for the test); the data are 8
    prompts with answers to train on and 4 held-out validation prompts. ``train``, ``evaluation`` (the ``eval`` section) and ``grpo`` are
    the test's own settings, over what every run of the task shares (full fine-tune, 4 prompts a step with 4
    completions each, a constant learning rate, :data:`COMPLETION_TOKENS` per completion, never stopped for
    degenerate steps).
    """
    (directory / "toy_rewards.py").write_text(REWARD_MODULE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(directory))
    prompts = _write_prompts(directory / "prompts.jsonl", [
        {"prompt": f"Say something about the number {i}.", "answer": str(i)} for i in range(8)])
    val = _write_prompts(directory / "val.jsonl", [
        {"prompt": f"Tell me about the colour {c}.", "answer": c} for c in ("red", "blue", "green", "amber")])
    config = {
        "model": {"name_or_path": model},
        "data": {"train": [str(prompts)], "val": [str(val)]},
        "train": {"objective": "grpo", "method": "full", "micro_batch_size": 4, "warmup_ratio": 0,
                  "lr_scheduler": "constant", "max_seq_len": 128, **train},
        "eval": evaluation,
        "grpo": {"num_generations": 4, "max_completion_len": COMPLETION_TOKENS, "allow_short_completions": True,
                 "stop_after_degenerate_steps": 0, "rewards": [{"name": REWARD}], **(grpo or {})},
    }
    path = directory / "grpo.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path
