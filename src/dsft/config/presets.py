"""Size presets: starting hyper-parameters by model size, each saying where its values come from.

A preset is a set of ``--set``-style overrides applied over the config file and under explicit ``--set``
flags (``dsft train CONFIG --preset 7b --set train.lr=5e-5`` keeps the ``--set`` value). A value of the file
that it replaces is named (:func:`replaced_by_preset`): the flag asked for it, but the file's value was written
on purpose too.
"""

from __future__ import annotations

from collections.abc import Iterable
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


def get_preset(name: str, label: str = "--preset") -> SizePreset:
    """The size preset ``name``; a :class:`ConfigError` naming ``label`` (the flag or argument it came from)."""
    preset = PRESETS.get(name.lower())
    if preset is None:
        shown = name if name.strip() else repr(name)
        raise ConfigError(f"{label} {shown}: unknown size preset; choose one of {', '.join(PRESETS)}")
    return preset


def preset_yaml(preset: SizePreset) -> str:
    """The preset as a YAML fragment with its source as comments (``dsft config preset NAME``)."""
    tree: dict[str, dict[str, Any]] = {}
    for key, value in preset.values.items():
        section, field = key.split(".", 1)
        tree.setdefault(section, {})[field] = value
    header = f"# size preset {preset.name}: {preset.source}\n# {preset.note}\n"
    return header + yaml.safe_dump(tree, sort_keys=False)


def replaced_by_preset(raw: dict[str, Any], preset: SizePreset, kept: Iterable[str], source: str) -> str | None:
    """The notice naming each value of a config file (``raw``, read from ``source``) that ``preset`` replaces with
    another; None when it replaces none. Keys in ``kept`` (those a ``--set`` gives, which both yield to) are left
    out.

    >>> print(replaced_by_preset({"train": {"lr": 1e-4, "micro_batch_size": 16}, "lora": {"r": 8}}, PRESETS["7b"],
    ...                          ["lora.r"], "c.yaml"))  # doctest: +NORMALIZE_WHITESPACE
    --preset 7b replaces what c.yaml sets: train.lr 0.0001 -> 3e-05 (a preset is applied over the config file;
    keep the file's value with --set KEY=VALUE, or remove it from the file)
    """
    kept = {text.split("=", 1)[0].strip() for text in kept}
    replaced = []
    for key, value in preset.values.items():
        section, field = key.split(".", 1)
        node = raw.get(section)
        if key in kept or not isinstance(node, dict) or field not in node:
            continue
        if _as_number(node[field]) != value:
            replaced.append(f"{key} {node[field]!r} -> {value!r}")
    if not replaced:
        return None
    return (f"--preset {preset.name} replaces what {source} sets: {', '.join(replaced)} (a preset is applied over the "
            "config file; keep the file's value with --set KEY=VALUE, or remove it from the file)")


def _as_number(value: Any) -> Any:
    """A YAML value as ``--set`` reads it: ``1e-4`` (a string to YAML, without a dot) is the number."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value
