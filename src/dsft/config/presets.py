"""Size presets: starting hyper-parameters by model size, each saying where its values come from.

A preset is a set of ``--set``-style overrides applied over the config file and under explicit ``--set``
flags (``dsft train CONFIG --preset 7b --set train.lr=5e-5`` keeps the ``--set`` value).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from dsft.errors import ConfigError

GUIDE_001 = ("guide 001 (DeepSeek fine-tuning in practice), section 2.1, parameter table by model size "
             "(learning rate, LoRA rank, batch size)")


@dataclass(frozen=True)
class SizePreset:
    name: str
    values: dict[str, Any]
    source: str
    note: str

    def overrides(self) -> list[str]:
        """The preset as ``key=value`` overrides, in the order they are listed."""
        return [f"{key}={value}" for key, value in self.values.items()]


_BATCH_NOTE = ("the guide's batch size is sequences per optimizer step on one GPU: train.micro_batch_size "
               "with train.grad_accum 1 (with packing, the default, each sequence is a row of up to "
               "train.max_seq_len tokens holding several examples)")

PRESETS: dict[str, SizePreset] = {
    "7b": SizePreset("7b", {"train.lr": 3e-5, "lora.r": 32, "train.micro_batch_size": 16, "train.grad_accum": 1},
                     GUIDE_001, "7B parameters: one A100 40GB in the guide; " + _BATCH_NOTE),
    "13b": SizePreset("13b", {"train.lr": 2e-5, "lora.r": 48, "train.micro_batch_size": 8, "train.grad_accum": 1},
                      GUIDE_001, "13B parameters: two A100s in the guide; " + _BATCH_NOTE),
    "34b": SizePreset("34b", {"train.lr": 1e-5, "lora.r": 64, "train.micro_batch_size": 4, "train.grad_accum": 1},
                      GUIDE_001, "34B parameters: four A100s in the guide; " + _BATCH_NOTE),
}


def get_preset(name: str) -> SizePreset:
    preset = PRESETS.get(name.lower())
    if preset is None:
        raise ConfigError(f"--preset {name}: unknown size preset; choose one of {', '.join(PRESETS)}")
    return preset


def preset_yaml(preset: SizePreset) -> str:
    """The preset as a YAML fragment with its source as comments (``dsft config preset NAME``)."""
    tree: dict[str, dict[str, Any]] = {}
    for key, value in preset.values.items():
        section, field = key.split(".", 1)
        tree.setdefault(section, {})[field] = value
    header = f"# size preset {preset.name}: {preset.source}\n# {preset.note}\n"
    return header + yaml.safe_dump(tree, sort_keys=False)
