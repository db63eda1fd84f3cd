"""Full-size models with random weights, shaped by a real-model config preset.

For benchmarks and memory checks where the real weights are not needed (and a GPU machine may have no
hub access): ``write_random_model("r1-distill-qwen-7b", DIR, dtype="bfloat16")`` writes an ordinary
Hugging Face checkpoint with the preset's exact config, the family's tokenizer and chat template (the
same offline tokenizer files the tiny presets use), and seeded random weights, built on the GPU when
there is one. ``overrides`` change config fields (e.g. fewer layers for a quick check).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dsft.dtype_names import WEIGHT_DTYPES
from dsft.errors import DsftError
from dsft.models import tokenizers
from dsft.models.presets import REAL_MODEL_PRESETS, real_model_config
from dsft.models.tiny import (
    DEEPSEEK_LLM_GENERATION,
    R1_DISTILL_QWEN_GENERATION,
    R1_GENERATION,
    write_random_checkpoint,
)

DTYPES = WEIGHT_DTYPES

# Preset-name prefix -> (tokenizer files, generation config) available offline.
_FAMILIES: dict[str, tuple[Callable[[], tuple[dict[str, Any], dict[str, Any]]], dict[str, Any]]] = {
    "r1-distill-qwen-": (tokenizers.r1_distill_qwen_tokenizer_files, R1_DISTILL_QWEN_GENERATION),
    # V3 and V3.1 share R1's vocabulary but not its chat template: only R1 is written (with R1's).
    "deepseek-r1": (tokenizers.r1_tokenizer_files, R1_GENERATION),
    "deepseek-llm-": (tokenizers.deepseek_llm_tokenizer_files, DEEPSEEK_LLM_GENERATION),
}


def _family(preset: str) -> tuple[Callable[[], tuple[dict[str, Any], dict[str, Any]]], dict[str, Any]]:
    for prefix, family in _FAMILIES.items():
        if preset.startswith(prefix):
            return family
    supported = [name for name in REAL_MODEL_PRESETS if any(name.startswith(p) for p in _FAMILIES)]
    raise DsftError(f"no offline tokenizer for real-model preset {preset!r}; random models can be written for: "
                    f"{', '.join(supported)}")


def write_random_model(preset: str, out_dir: str | Path, dtype: str = "bfloat16", seed: int = 0,
                       overrides: dict[str, Any] | None = None, device: str | None = None) -> Path:
    """Write ``preset``'s architecture with seeded random weights to ``out_dir`` (empty or absent)."""
    if dtype not in DTYPES:
        raise DsftError(f"--dtype {dtype}: choose one of {', '.join(DTYPES)}")
    config = real_model_config(preset)
    files, generation = _family(preset)
    unknown = sorted(set(overrides or {}) - set(config))
    if unknown:
        raise DsftError(f"--set {', '.join(unknown)}: not a field of the {preset} config "
                        f"(fields: {', '.join(sorted(config))})")
    for key, value in (overrides or {}).items():
        _check_field_value(key, value, config[key])
    config.update(overrides or {})
    # The tokenizer first: a missing tokenizer package must stop the command before gigabytes of weights.
    tokenizer_files = files()
    _check_vocab_holds_tokenizer(config, tokenizer_files[0])
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DsftError(f"--out {out}: exists and is not a directory; choose a new directory")
    if out.exists() and any(out.iterdir()):
        raise DsftError(f"--out {out}: directory is not empty; choose a new directory")
    import torch  # once every argument is checked: a refusal costs no torch import

    if overrides:
        _check_config_accepts(preset, config, overrides)
    out.mkdir(parents=True, exist_ok=True)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    write_random_checkpoint(out, config, generation, seed, dtype=dtype, device=device)
    tokenizers.write_tokenizer_files(*tokenizer_files, out)
    return out


def _check_field_value(key: str, value: Any, preset_value: Any) -> None:
    """A ``--set`` value of the preset field's type (a whole number for an int field, a finite number for a float
    one, true/false for a bool), before torch: transformers' config classes refused the rest with a traceback.

    >>> _check_field_value("num_hidden_layers", "８", 28)
    Traceback (most recent call last):
    dsft.errors.DsftError: --set num_hidden_layers='８': must be a whole number, as the preset's 28 is
    """
    if isinstance(preset_value, bool):
        fits, kind = isinstance(value, bool), "true or false"
    elif isinstance(preset_value, int):
        fits, kind = isinstance(value, int) and not isinstance(value, bool), "a whole number"
    elif isinstance(preset_value, float):
        fits = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        kind = "a finite number"
    elif isinstance(preset_value, str):
        fits, kind = isinstance(value, str) and value != "", "a text"
    else:  # a list, a mapping or null in the preset: the config class judges it
        return
    if not fits:
        raise DsftError(f"--set {key}={value!r}: must be {kind}, as the preset's {preset_value!r} is")


def tokenizer_ids(tokenizer_json: dict[str, Any]) -> int:
    """How many ids a ``tokenizer.json`` hands out: one past its largest (vocabulary and added tokens).

    >>> tokenizer_ids({"model": {"vocab": {"a": 0, "b": 1}}, "added_tokens": [{"id": 5}]})
    6
    """
    ids = list(tokenizer_json["model"]["vocab"].values()) + [entry["id"] for entry in tokenizer_json["added_tokens"]]
    return max(ids) + 1


def _check_vocab_holds_tokenizer(config: dict[str, Any], tokenizer_json: dict[str, Any]) -> None:
    """An embedding of fewer rows than the tokenizer has ids (transformers only warned): a text holding a later id
    indexes past it."""
    needed = tokenizer_ids(tokenizer_json)
    if config["vocab_size"] < needed:
        raise DsftError(f"--set vocab_size={config['vocab_size']}: the family's tokenizer hands out {needed:,} ids; "
                        f"vocab_size must be at least {needed} (a larger one adds unused rows, as released models do)")


def _check_config_accepts(preset: str, config: dict[str, Any], overrides: dict[str, Any]) -> None:
    """The config class's own checks of the ``--set`` values (a negative layer count ...), as one message naming
    them, before ``--out`` is created. Imports transformers (and torch)."""
    from huggingface_hub.errors import StrictDataclassError
    from transformers import AutoConfig

    try:
        AutoConfig.for_model(config["model_type"], **{k: v for k, v in config.items() if k != "model_type"})
    except (StrictDataclassError, ValueError, TypeError) as exc:
        cause = exc.__cause__ or exc
        sets = ", ".join(f"--set {key}={value!r}" for key, value in overrides.items())
        raise DsftError(f"{sets}: the {preset} config refuses it: {cause}") from None
