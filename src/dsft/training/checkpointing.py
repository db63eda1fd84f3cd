"""Checkpoints that survive being killed mid-save, that are known good, and ``--resume auto``.

transformers' Trainer writes ``checkpoint-N`` in place, so a process killed while saving leaves a
half-written directory that ``get_last_checkpoint`` would pick. dsft stages every checkpoint under
``checkpoints/.staging/`` and renames it into place when complete (one ``os.replace`` on the same
file system), so any ``checkpoint-N`` directory is complete by construction; leftovers in the staging
area are deleted on the next start.

Complete is not the same as intact: a disk can truncate or zero a file later. Each checkpoint gets a
``manifest.json`` (every file's size and xxh3-128 hash, read back from disk), written last, once the
rest is in place. ``--resume auto`` verifies the newest checkpoint against its manifest and the state
files a resume needs (weights, optimizer, scheduler, trainer state); a damaged one is skipped, with the
reason, in favour of the newest intact one.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xxhash

from dsft.disk import USER_FILESYSTEM_ERRORS, disk_error, require_free_space, tree_bytes
from dsft.errors import DsftError
from dsft.training.ranks import warn_for_job

log = logging.getLogger(__name__)

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
STAGING = ".staging"
MANIFEST = "manifest.json"
_HASH_CHUNK = 8 * 1024 * 1024  # bytes read at a time while hashing
# Weight files, one of which a checkpoint must hold (DeepSpeed and FSDP keep theirs in subdirectories).
WEIGHT_FILES = ("adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json",
                "adapter_model.bin", "pytorch_model.bin", "pytorch_model.bin.index.json")


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


def file_hash(path: Path) -> str:
    """xxh3-128 of a file's bytes, as hex (fast enough to hash a full checkpoint at every save)."""
    digest = xxhash.xxh3_128()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(checkpoint: Path) -> dict[str, Any]:
    """Record every file of ``checkpoint`` (size and hash, read back from disk) in ``manifest.json``.

    Written last, through a temporary file and a rename, so a manifest exists only for a checkpoint
    whose every file was written and read back. Raises :class:`DsftError` when a state file a resume
    needs is missing (the save did not produce a resumable checkpoint).
    """
    problems = missing_state_files(checkpoint)
    if problems:
        raise DsftError(f"{checkpoint}: the checkpoint just written is not resumable", problems)
    files = sorted(p for p in checkpoint.rglob("*") if p.is_file() and p.name != MANIFEST)
    manifest = {"format": 1, "files": {
        str(p.relative_to(checkpoint)): {"bytes": p.stat().st_size, "xxh3_128": file_hash(p)} for p in files}}
    temporary = checkpoint / f".{MANIFEST}.tmp"
    temporary.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    os.replace(temporary, checkpoint / MANIFEST)
    return manifest


def missing_state_files(checkpoint: Path) -> list[str]:
    """What a resume needs and ``checkpoint`` lacks: weights, optimizer and scheduler state, trainer state."""
    names = [p.name for p in checkpoint.iterdir()]
    # DeepSpeed keeps weights and optimizer state in global_stepN/, FSDP in *fsdp* files or directories.
    deepspeed = any(name.startswith("global_step") for name in names)
    problems = []
    if "trainer_state.json" not in names:
        problems.append("trainer_state.json is missing")
    if not deepspeed and not any(name in WEIGHT_FILES or "fsdp" in name for name in names):
        problems.append(f"no weights ({' or '.join(WEIGHT_FILES[:2])})")
    if not deepspeed and not any(name.startswith("optimizer") for name in names):
        problems.append("optimizer.pt is missing (the optimizer state: a resume would restart Adam's moments)")
    if not deepspeed and "scheduler.pt" not in names:
        problems.append("scheduler.pt is missing (a resume would restart the learning-rate schedule)")
    return problems


def verify_checkpoint(checkpoint: Path) -> list[str]:
    """Every reason ``checkpoint`` cannot be resumed from exactly; an empty list means it is intact.

    Checks the state files a resume needs, that ``trainer_state.json`` parses and names this step, and
    every file against ``manifest.json`` (present, same size, same hash). A checkpoint written before
    manifests existed is checked without one.
    """
    if not checkpoint.is_dir():
        return [f"{checkpoint} is not a directory"]
    problems = missing_state_files(checkpoint)
    state = checkpoint / "trainer_state.json"
    if state.is_file():
        try:
            step = int(json.loads(state.read_text(encoding="utf-8"))["global_step"])
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            problems.append(f"trainer_state.json is unreadable ({type(exc).__name__}: {exc})")
        else:
            match = CHECKPOINT_RE.match(checkpoint.name)
            if match and int(match.group(1)) != step:
                problems.append(f"trainer_state.json says step {step}, the directory name step {match.group(1)}")
    manifest_path = checkpoint / MANIFEST
    if not manifest_path.is_file():
        return problems
    try:
        entries = json.loads(manifest_path.read_text(encoding="utf-8"))["files"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        return problems + [f"{MANIFEST} is unreadable ({type(exc).__name__})"]
    for name, entry in entries.items():
        path = checkpoint / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif path.stat().st_size != entry["bytes"]:
            problems.append(f"{name} has {path.stat().st_size} bytes, {entry['bytes']} when written")
        elif file_hash(path) != entry["xxh3_128"]:
            problems.append(f"{name} differs from what was written (hash mismatch)")
    return problems


@dataclass
class ResumePoint:
    """The checkpoint a run resumes from, and the newer ones skipped as damaged (with their problems)."""

    checkpoint: Path | None
    skipped: list[tuple[Path, list[str]]] = field(default_factory=list)

    def describe_skipped(self) -> list[str]:
        return [f"{path.name}: {'; '.join(problems)}" for path, problems in self.skipped]


def resolve_resume(resume: str | None, checkpoint_root: Path) -> ResumePoint:
    """``None`` -> start fresh; ``auto`` -> the newest intact checkpoint (or fresh if none); else a path.

    ``auto`` skips damaged checkpoints (see :func:`verify_checkpoint`), newest first, and says so; when
    every checkpoint is damaged it is an error listing each. A checkpoint named by path must be intact.
    """
    clean_staging(checkpoint_root)
    if resume is None:
        return ResumePoint(None)
    if resume == "auto":
        found = list_checkpoints(checkpoint_root)
        point = ResumePoint(None)
        for checkpoint in reversed(found):
            problems = verify_checkpoint(checkpoint)
            if not problems:
                point.checkpoint = checkpoint
                break
            point.skipped.append((checkpoint, problems))
        if point.skipped:
            if point.checkpoint is None:
                raise DsftError(f"--resume auto: no intact checkpoint in {checkpoint_root}", point.describe_skipped(),
                                job_wide=True)  # every process checks the same checkpoints
            for line in point.describe_skipped():  # every process checks the same checkpoints
                warn_for_job(log, "skipping damaged checkpoint %s; resuming from %s", line, point.checkpoint.name)
        return point
    path = Path(resume)
    if not (path / "trainer_state.json").is_file():
        raise DsftError(f"--resume {resume}: not a complete checkpoint (no trainer_state.json in it)", job_wide=True)
    problems = verify_checkpoint(path)
    if problems:
        raise DsftError(f"--resume {resume}: the checkpoint is damaged; resume from another one (or --resume auto)",
                        problems, job_wide=True)
    return ResumePoint(path)


def resumed_past(resume: str, checkpoint_root: Path, step: int) -> Path | None:
    """The checkpoint :func:`resolve_resume` would pick for ``resume``, when it is past ``step``; else None.

    A check before anything loads: it writes nothing (the staging area is left to ``resolve_resume``) and
    verifies only checkpoints past ``step``, so a resume that goes on hashes no checkpoint twice. A damaged one
    past ``step`` is passed over as ``--resume auto`` would; one named by path is left to ``resolve_resume``
    to name what is wrong with it.
    """
    if resume == "auto":
        for checkpoint in reversed(list_checkpoints(checkpoint_root)):
            if checkpoint_step(checkpoint) <= step:
                return None  # the newest intact one is here or older: at or below step
            if not verify_checkpoint(checkpoint):
                return checkpoint
        return None
    path = Path(resume)
    try:
        past = checkpoint_step(path) > step
    except (DsftError, OSError, ValueError, KeyError, TypeError):  # no or unreadable trainer_state.json
        return None
    return path if past and not verify_checkpoint(path) else None


def check_same_checkpoint(checkpoint: Path | None) -> None:
    """Refuse, on every rank, a launched job whose processes chose different checkpoints to resume from.

    Every process resolves ``--resume`` itself, before the processes meet; on one filesystem they find the same
    checkpoints. A run directory on each node's own disk holds checkpoints only where the main process renamed
    them into place, so another node would start from step 0 beside a resumed one (and its collectives would
    no longer match). Called once the Trainer's process group exists; one process alone has nothing to compare.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return
    chosen: list[str | None] = [None] * dist.get_world_size()
    dist.all_gather_object(chosen, str(checkpoint) if checkpoint is not None else None)
    if len(set(chosen)) > 1:
        raise DsftError(
            "the processes of this job would resume from different checkpoints; put the run directory on a "
            "filesystem every node shares (see docs/distributed.md)",
            [f"rank {rank}: {name or 'none (step 0)'}" for rank, name in enumerate(chosen)], job_wide=True,
        )  # every rank gathered the same list


def clean_staging(checkpoint_root: Path) -> None:
    # Only leftovers of a killed save: no checkpoint is listed or resumed from .staging, and no process saves
    # before every process has passed this point (the Trainer's process group forms first), so the processes
    # of a job removing it at once harm none.
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
    previous = list_checkpoints(root)
    # The next checkpoint is about the size of the last one: refuse to start a save that cannot fit.
    needed = tree_bytes(previous[-1:]) if previous else None
    if needed:  # every rank checks (each node its own disk), so none waits at a barrier for a failed one
        require_free_space(root, needed, f"writing {name}")
    args.output_dir = str(staging_root)
    try:
        save(model, trial)
    except OSError as exc:
        shutil.rmtree(staging_root, ignore_errors=True)
        if exc.errno in USER_FILESYSTEM_ERRORS:
            raise disk_error(exc, root, needed) from None
        raise
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
        write_manifest(staged)  # last: every file is written and was read back whole
        if final.exists():
            shutil.rmtree(final)
        os.replace(staged, final)
        shutil.rmtree(staging_root, ignore_errors=True)
        rotate_checkpoints(
            output_dir=str(root), save_total_limit=args.save_total_limit,
            best_model_checkpoint=state.best_model_checkpoint, use_mtime=False,
        )
    trainer.accelerator.wait_for_everyone()
