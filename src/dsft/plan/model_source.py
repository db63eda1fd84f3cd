"""Which model the planner sizes: a real-model preset, a tiny preset, or any HF config.json.

Presets come from ``dsft.models.presets.REAL_MODEL_PRESETS``, the one table of real-model architectures
(numbers only); the planner adds ``deepseek-`` aliases and later releases of the same architecture. Hub ids
match by their last path component, case-insensitively (``deepseek-ai/DeepSeek-R1-Distill-Qwen-7B`` ->
``deepseek-r1-distill-qwen-7b``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dsft.errors import DsftError
from dsft.models.loading import read_config_json
from dsft.models.ollama_tags import ollama_tag_problem
from dsft.models.presets import REAL_MODEL_PRESETS, native_equivalent
from dsft.models.resolve import below_a_file, is_hub_id, resolve_model

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


def names_a_path(model: str) -> bool:
    """Whether ``model`` is a local path, as model loading reads it, rather than a preset name or a hub id.

    A path starts with ``./``, ``../``, ``/`` or ``~``, or holds a separator without the shape of a hub id
    (``a/b/c``); ``runs/x`` beside a local ``runs/`` directory is a (mistyped) path too.

    >>> [names_a_path(name) for name in ("deepseek-v3", "deepseek-ai/DeepSeek-V3", "./x/deepseek-v3", "a/b/c")]
    [False, False, True, True]
    """
    name = model.rstrip("/")
    if name.startswith("~"):
        return True
    if not any(sep in name for sep in ("/", os.sep, os.altsep) if sep):
        return False  # a preset name (deepseek-v3, deepseek-v3/)
    return not is_hub_id(name) or Path(name.split("/", 1)[0]).is_dir()


def resolve_planner_config(model: str, given_as: str = "--model") -> tuple[str, Any]:
    """(display name, transformers config) for a preset name, hub id, tiny preset or config path; errors name
    ``model`` as ``given_as`` gave it (the flag, or a config file's key: ``c.yaml: model.name_or_path``)."""
    if problem := below_a_file(model):  # some.gguf/deepseek-v3 is no preset's hub id
        raise DsftError(f"{given_as} {problem}")
    path = Path(model).expanduser()
    if path.is_dir():
        path = path / "config.json"
    if path.suffix == ".json" or path.is_file():
        if not path.is_file():
            raise DsftError(f"{given_as} {model}: no config.json at {path}")
        return str(path), _config_from_dict(read_config_json(path), str(path))
    if problem := ollama_tag_problem(model, not_read_by="the planner"):  # deepseek-r1:32b: it reads no GGUF
        raise DsftError(f"{given_as} {model}: {problem}")
    table = preset_table()
    if names_a_path(model):  # ./x/deepseek-v3 is a path that names nothing, not the preset its last part spells
        raise DsftError(f"{given_as} {model}: no such model directory or config.json (a path, read as one: not a "
                        "preset or a hub id, nothing is downloaded)", [f"presets: {', '.join(sorted(table))}"])
    key = model.rstrip("/").split("/")[-1].lower()
    if key in table:
        return key, _config_from_dict(table[key], f"preset {key}")
    if key.startswith("tiny-"):
        directory = resolve_model(key)
        return key, _config_from_dict(json.loads((directory / "config.json").read_text(encoding="utf-8")), key)
    if is_hub_id(model.rstrip("/")):  # the planner downloads nothing, it reads the last part
        what = (f"a hub id whose last part, {key!r}, is no preset (the planner downloads nothing); pass the "
                f"model's config.json or a directory holding it")
    else:
        what = ("not a preset, a tiny preset, a model directory, a config.json path or a hub id whose last part is "
                "a preset (e.g. deepseek-ai/DeepSeek-R1-Distill-Qwen-7B); `dsft models list` shows the presets")
    raise DsftError(f"{given_as} {model}: {what}", [f"presets: {', '.join(sorted(table))}"])
