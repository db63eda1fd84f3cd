"""Which model the planner sizes: a real-model preset, a tiny preset, or any HF config.json.

Presets come from ``dsft.models.presets.REAL_MODEL_PRESETS``, the one table of real-model architectures
(numbers only); the planner adds ``deepseek-`` aliases and later releases of the same architecture. Hub ids
match by their last path component, case-insensitively (``deepseek-ai/DeepSeek-R1-Distill-Qwen-7B`` ->
``deepseek-r1-distill-qwen-7b``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dsft.errors import DsftError
from dsft.models.presets import REAL_MODEL_PRESETS, native_equivalent
from dsft.models.resolve import is_hub_id, read_config_json, resolve_model

# Later releases with the architecture (and config) of a preset, under the names people plan them by.
RELEASE_ALIASES = {"deepseek-v2.5": "deepseek-v2", "deepseek-v3-0324": "deepseek-v3", "deepseek-r1-0528": "deepseek-r1"}


def _planner_presets() -> dict[str, dict[str, Any]]:
    """The real-model presets of :mod:`dsft.models.presets` (the one architecture table), each also as
    ``deepseek-NAME``, plus :data:`RELEASE_ALIASES`. Remote-code DeepSeek-MoE is planned as its native
    look-alike (Qwen2-MoE layout), the same stand-in the presets module counts parameters with."""
    table: dict[str, dict[str, Any]] = {}
    for name, config in REAL_MODEL_PRESETS.items():
        native = native_equivalent(config)
        table[name.lower()] = dict(native)
        # Every preset is also reachable as deepseek-NAME (a model-name alias, not a template family).
        table.setdefault("deepseek-" + name.lower().removeprefix("deepseek-"), dict(native))
    for alias, name in RELEASE_ALIASES.items():
        table[alias] = dict(table[name])
    return table


PLANNER_PRESETS: dict[str, dict[str, Any]] = _planner_presets()


def preset_table() -> dict[str, dict[str, Any]]:
    """Every preset the planner knows (copies of :data:`PLANNER_PRESETS`)."""
    return {name: dict(config) for name, config in PLANNER_PRESETS.items()}


def _config_from_dict(values: dict[str, Any], where: str) -> Any:
    from transformers import AutoConfig

    values = dict(values)
    model_type = values.pop("model_type", None)
    if not model_type:
        raise DsftError(f"{where}: no model_type in the config")
    values.pop("quantization_config", None)  # FP8 checkpoints: the planner sizes the BF16 model
    try:
        return AutoConfig.for_model(model_type, **values)
    except ValueError:
        raise DsftError(f"{where}: transformers {_transformers_version()} has no model_type {model_type!r} "
                        "(remote-code architectures cannot be planned; use a preset with the same layout)") from None


def _transformers_version() -> str:
    import transformers

    return transformers.__version__


def resolve_planner_config(model: str) -> tuple[str, Any]:
    """(display name, transformers config) for a preset name, hub id, tiny preset or config path."""
    path = Path(model).expanduser()
    if path.is_dir():
        path = path / "config.json"
    if path.suffix == ".json" or path.is_file():
        if not path.is_file():
            raise DsftError(f"--model {model}: no config.json at {path}")
        return str(path), _config_from_dict(read_config_json(path), str(path))
    table = preset_table()
    key = model.rstrip("/").split("/")[-1].lower()
    if key in table:
        return key, _config_from_dict(table[key], f"preset {key}")
    if key.startswith("tiny-"):
        directory = resolve_model(key)
        return key, _config_from_dict(json.loads((directory / "config.json").read_text(encoding="utf-8")), key)
    local_org = Path(model.split("/", 1)[0]).is_dir()  # runs/my-rnu: a mistyped local path, as resolve_model reads it
    if is_hub_id(model.rstrip("/")) and not local_org:  # the planner downloads nothing, it reads the last part
        what = (f"a hub id whose last part, {key!r}, is no preset (the planner downloads nothing); pass the "
                f"model's config.json or a directory holding it")
    elif "/" in model or model.startswith("~"):  # a path: ./model, /abs/model, runs/typo
        what = "no such model directory or config.json (a path, read as one: not a hub id, nothing is downloaded)"
    else:
        what = ("not a preset, a tiny preset, a model directory, a config.json path or a hub id whose last part is "
                "a preset (e.g. deepseek-ai/DeepSeek-R1-Distill-Qwen-7B); `dsft models list` shows the presets")
    raise DsftError(f"--model {model}: {what}", [f"presets: {', '.join(sorted(table))}"])
