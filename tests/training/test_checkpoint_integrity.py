"""Checkpoints are known good: a manifest written last, verified at resume, damaged ones skipped and named.

Unit level (no training): each kind of damage the field has seen (truncated or zeroed weights, a
truncated optimizer, a broken trainer state, a truncated adapter, missing optimizer or scheduler state)
is found, and ``--resume auto`` falls back to the newest intact checkpoint and says why.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from dsft.errors import DsftError
from dsft.training.checkpointing import MANIFEST, resolve_resume, resumed_past, verify_checkpoint, write_manifest
from fake_checkpoints import fake_checkpoint


def _truncate(name: str) -> Callable[[Path], None]:
    def damage(checkpoint: Path) -> None:
        data = (checkpoint / name).read_bytes()
        (checkpoint / name).write_bytes(data[: len(data) // 2])
    return damage


def _zero(name: str) -> Callable[[Path], None]:
    def damage(checkpoint: Path) -> None:
        (checkpoint / name).write_bytes(bytes((checkpoint / name).stat().st_size))
    return damage


def _delete(name: str) -> Callable[[Path], None]:
    return lambda checkpoint: (checkpoint / name).unlink()


def _broken_state(checkpoint: Path) -> None:
    (checkpoint / "trainer_state.json").write_text('{"global_step": 4, "log_hist')


DAMAGE = {
    "truncated weights": (_truncate("adapter_model.safetensors"), "adapter_model.safetensors"),
    "zeroed weights": (_zero("adapter_model.safetensors"), "adapter_model.safetensors differs"),
    "truncated optimizer": (_truncate("optimizer.pt"), "optimizer.pt has"),
    "broken trainer state": (_broken_state, "trainer_state.json is unreadable"),
    "missing optimizer": (_delete("optimizer.pt"), "optimizer.pt is missing"),
    "missing scheduler": (_delete("scheduler.pt"), "scheduler.pt is missing"),
    "missing manifest entry file": (_delete("rng_state.pth"), "rng_state.pth is missing"),
}


def test_an_intact_checkpoint_verifies(tmp_path: Path) -> None:
    checkpoint = fake_checkpoint(tmp_path, 4)
    manifest = json.loads((checkpoint / MANIFEST).read_text())
    assert set(manifest["files"]) == {"adapter_model.safetensors", "adapter_config.json", "optimizer.pt",
                                      "scheduler.pt", "rng_state.pth", "trainer_state.json"}
    assert verify_checkpoint(checkpoint) == []


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_each_kind_of_damage_is_found_and_auto_resume_falls_back(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "checkpoints"
    older = fake_checkpoint(root, 2)
    newest = fake_checkpoint(root, 4)
    damage, expected = DAMAGE[kind]
    damage(newest)
    problems = verify_checkpoint(newest)
    assert any(expected in p for p in problems), problems
    point = resolve_resume("auto", root)
    assert point.checkpoint == older
    assert point.skipped and point.skipped[0][0] == newest
    assert any(expected in line for line in point.describe_skipped())
    with pytest.raises(DsftError, match="damaged"):
        resolve_resume(str(newest), root)


def test_no_intact_checkpoint_is_an_error_naming_each(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    for step in (2, 4):
        _delete("optimizer.pt")(fake_checkpoint(root, step))
    with pytest.raises(DsftError) as info:
        resolve_resume("auto", root)
    message = str(info.value)
    assert "no intact checkpoint" in message
    assert "checkpoint-2: optimizer.pt is missing" in message and "checkpoint-4: optimizer.pt is missing" in message


def test_a_save_without_optimizer_state_is_refused_when_written(tmp_path: Path) -> None:
    checkpoint = tmp_path / "checkpoint-1"
    checkpoint.mkdir()
    (checkpoint / "model.safetensors").write_bytes(b"w")
    (checkpoint / "trainer_state.json").write_text('{"global_step": 1}')
    with pytest.raises(DsftError, match="not resumable"):
        write_manifest(checkpoint)
    assert not (checkpoint / MANIFEST).exists()


def test_staging_leftovers_are_cleaned_and_ignored(tmp_path: Path) -> None:
    """A save that never finished (killed mid-save) stays in .staging and never counts as a checkpoint."""
    root = tmp_path / "checkpoints"
    intact = fake_checkpoint(root, 2)
    (root / ".staging" / "checkpoint-4").mkdir(parents=True)
    assert resolve_resume("auto", root).checkpoint == intact
    assert not (root / ".staging").exists()


def test_the_checkpoint_a_resume_picks_past_a_step_is_found_writing_nothing(tmp_path: Path) -> None:
    """dsft train compares the checkpoint a resume would pick with the steps asked for before anything loads:
    the same checkpoint resolve_resume picks, damaged ones passed over, the staging area left alone."""
    root = tmp_path / "checkpoints"
    older, newest = fake_checkpoint(root, 2), fake_checkpoint(root, 4)
    (root / ".staging").mkdir()
    assert resumed_past("auto", root, 3) == newest and resumed_past("auto", root, 4) is None
    assert resumed_past(str(newest), root, 3) == newest and resumed_past(str(older), root, 3) is None
    _truncate("optimizer.pt")(newest)
    assert resumed_past("auto", root, 3) is None and resumed_past("auto", root, 1) == older  # as resolve_resume
    assert resumed_past(str(newest), root, 3) is None  # damaged: resolve_resume says so
    assert resumed_past("auto", tmp_path / "none", 0) is None and (root / ".staging").is_dir()
