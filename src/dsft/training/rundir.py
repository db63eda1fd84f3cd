"""The run directory: what it holds, and refusing to mix two different runs in one place."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import yaml

from dsft import __version__
from dsft.config import DsftConfig, dump_config
from dsft.errors import DsftError

# Changing any of these makes it a different run; other keys (steps, lr, logging, eval cadence)
# may change on --resume, e.g. to extend a run or to lower the lr after a NaN stop.
IDENTITY_KEYS = ("model", "data", "template", "lora", "train.method", "train.max_seq_len", "train.packing",
                 "train.seed")


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def config_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Dotted keys whose values differ between two resolved configs."""
    a, b = _flatten(old), _flatten(new)
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def prepare_run_dir(run_dir: Path, cfg: DsftConfig, resuming: bool) -> None:
    """Create or re-open ``run_dir``; refuse a directory that holds another run or unrelated files."""
    saved = run_dir / "config.yaml"
    if run_dir.exists() and not run_dir.is_dir():
        raise DsftError(f"--out {run_dir}: exists and is not a directory")
    if run_dir.is_dir() and any(run_dir.iterdir()) and not saved.is_file():
        raise DsftError(f"--out {run_dir}: exists, is not empty and holds no dsft run (no config.yaml); "
                        "choose a new directory")
    new = cfg.model_dump(mode="json")
    if saved.is_file():
        old = yaml.safe_load(saved.read_text(encoding="utf-8")) or {}
        diffs = config_differences(old, new)
        identity = [d for d in diffs if any(d == k or d.startswith(k + ".") for k in IDENTITY_KEYS)]
        has_checkpoints = any((run_dir / "checkpoints").glob("checkpoint-*"))
        # A run that stopped during setup (a config or data error) never wrote run.json: nothing of it
        # is worth keeping but its config, which is backed up below; the corrected config may take over.
        started = (run_dir / "run.json").is_file() or has_checkpoints or (run_dir / "final").exists()
        if identity and started:
            raise DsftError(
                f"--out {run_dir}: already holds a different run (config differs in: {', '.join(identity)}); "
                "choose a new --out directory"
            )
        if has_checkpoints and not resuming:
            raise DsftError(f"--out {run_dir}: already holds checkpoints of this run; pass --resume auto to "
                            "continue it, or choose a new --out directory")
        if diffs:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            (run_dir / f"config.before-{stamp}.yaml").write_text(saved.read_text(encoding="utf-8"), encoding="utf-8")
    run_dir.mkdir(parents=True, exist_ok=True)
    saved.write_text(dump_config(cfg), encoding="utf-8")


def write_run_info(run_dir: Path, **info: Any) -> dict[str, Any]:
    """``run.json``: what export, eval and serve need to reuse the run without guessing (template, base)."""
    record = {"dsft_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **info}
    (run_dir / "run.json").write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return record

