"""Checkpoints that survive being killed mid-save, and ``--resume auto``.

transformers' Trainer writes ``checkpoint-N`` in place, so a process killed while saving leaves a
half-written directory that ``get_last_checkpoint`` would pick. dsft stages every checkpoint under
``checkpoints/.staging/`` and renames it into place when complete (one ``os.replace`` on the same
file system), so any ``checkpoint-N`` directory is complete by construction; leftovers in the staging
area are deleted on the next start.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from dsft.errors import DsftError

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
STAGING = ".staging"


def list_checkpoints(checkpoint_root: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    if not checkpoint_root.is_dir():
        return []
    found = [p for p in checkpoint_root.iterdir() if p.is_dir() and CHECKPOINT_RE.match(p.name)]
    return sorted(found, key=lambda p: int(CHECKPOINT_RE.match(p.name).group(1)))  # type: ignore[union-attr]


def checkpoint_step(path: Path) -> int:
    match = CHECKPOINT_RE.match(path.name)
    if match is None:
        state = path / "trainer_state.json"
        if state.is_file():
            return int(json.loads(state.read_text())["global_step"])
        raise DsftError(f"{path}: not a checkpoint directory (expected checkpoint-N with trainer_state.json)")
    return int(match.group(1))


def resolve_resume(resume: str | None, checkpoint_root: Path) -> Path | None:
    """``None`` -> start fresh; ``auto`` -> newest complete checkpoint (or fresh if none); else a path."""
    clean_staging(checkpoint_root)
    if resume is None:
        return None
    if resume == "auto":
        found = list_checkpoints(checkpoint_root)
        return found[-1] if found else None
    path = Path(resume)
    if not (path / "trainer_state.json").is_file():
        raise DsftError(f"--resume {resume}: not a complete checkpoint (no trainer_state.json in it)")
    return path


def clean_staging(checkpoint_root: Path) -> None:
    staging = checkpoint_root / STAGING
    if staging.exists():
        shutil.rmtree(staging, ignore_errors=True)


def save_checkpoint_atomically(trainer: Any, model: Any, trial: Any, save: Any) -> None:
    """Run the Trainer's own checkpoint writer (``save``, see trainer_hooks.py) into a staging dir, then
    rename it into place.

    Every rank takes part (DeepSpeed/FSDP write per-rank shards); the main process renames once all ranks
    are done, then applies ``save_total_limit`` to the complete checkpoints.
    """
    from transformers.trainer_utils import rotate_checkpoints

    args = trainer.args
    root = Path(args.output_dir)
    staging_root = root / STAGING
    name = f"checkpoint-{trainer.state.global_step}"
    final = root / name
    args.output_dir = str(staging_root)
    try:
        save(model, trial)
    finally:
        args.output_dir = str(root)
    state = trainer.state
    if state.best_model_checkpoint and Path(state.best_model_checkpoint).parent == staging_root:
        state.best_model_checkpoint = str(root / Path(state.best_model_checkpoint).name)
    trainer.accelerator.wait_for_everyone()
    if args.should_save:
        staged = staging_root / name
        # The state file inside must name the final path, not the staging one.
        state.save_to_json(str(staged / "trainer_state.json"))
        if final.exists():
            shutil.rmtree(final)
        os.replace(staged, final)
        shutil.rmtree(staging_root, ignore_errors=True)
        rotate_checkpoints(
            output_dir=str(root), save_total_limit=args.save_total_limit,
            best_model_checkpoint=state.best_model_checkpoint, use_mtime=False,
        )
    trainer.accelerator.wait_for_everyone()
