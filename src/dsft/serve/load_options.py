"""Checks of the model-loading flags of ``dsft serve`` and ``dsft chat`` (``--quantize``, ``--dtype``,
``--adapter``) and of ``dsft chat --temperature``. Light to import (no torch): the commands call them before
anything heavy loads."""

from __future__ import annotations

from pathlib import Path

from dsft.errors import DsftError
from dsft.models.loading import DTYPES
from dsft.serve.protocol import TEMPERATURE_MAX
from dsft.training.rundir import RunDir

QUANTIZE_CHOICES = ("int8",)


def check_load_options(quantize: str | None, dtype: str) -> None:
    """Refuse an unknown ``--quantize`` or ``--dtype`` before anything loads."""
    problems = []
    if quantize is not None and quantize not in QUANTIZE_CHOICES:
        problems.append(f"--quantize {quantize}: only int8 (dynamic, CPU) is supported for serving; 4-bit needs a "
                        "GPU engine (`dsft serve --engine vllm`) or a GGUF export (`dsft export --format gguf`)")
    if dtype not in DTYPES:
        problems.append(f"--dtype {dtype}: choose one of {', '.join(DTYPES)}")
    if problems:
        raise DsftError("invalid model options", problems) if len(problems) > 1 else DsftError(problems[0])


def check_temperature(temperature: float | None) -> None:
    """Refuse a ``--temperature`` outside 0..2 (the API's range), NaN and infinity included: typer's own range
    check called NaN "not less than or equal to 2"."""
    if temperature is not None and not 0.0 <= temperature <= TEMPERATURE_MAX:  # False for NaN
        raise DsftError(f"--temperature {temperature:g}: must be a number from 0 (greedy) to {TEMPERATURE_MAX:g}")


def parse_adapter_args(specs: list[str]) -> dict[str, Path]:
    """``["sql=runs/a/final", ...]`` -> ``{"sql": Path(...)}``; each must hold an adapter_config.json."""
    adapters: dict[str, Path] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise DsftError(f"--adapter {spec!r}: expected NAME=PATH")
        if name in adapters:
            raise DsftError(f"--adapter {name}: given twice")
        adapter_dir = Path(path).expanduser()
        if RunDir.is_run(adapter_dir):
            adapter_dir = RunDir(adapter_dir).final_path  # a run directory: its adapter lives in final/
        if not adapter_dir.is_dir():
            reason = "not a directory" if adapter_dir.exists() else "no such directory"
            raise DsftError(f"--adapter {name}={path}: {reason} (a PEFT adapter directory or a LoRA run directory "
                            "is needed)")
        if not (adapter_dir / "adapter_config.json").is_file():
            raise DsftError(f"--adapter {name}={path}: no adapter_config.json there (a PEFT adapter directory "
                            "or a LoRA run directory is needed)")
        adapters[name] = adapter_dir
    return adapters
