"""A build lock left by a killed extension build is removed before a DeepSpeed run (it would wait on it for
ever); a lock a live build holds, or a young one, is kept."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from dsft.config.schema import TrainConfig
from dsft.training.build_locks import STALE_AFTER_S, remove_stale_locks, stale_locks
from dsft.training.distributed import distributed_training_args


def make_lock(root: Path, name: str, age_s: float) -> Path:
    lock = root / "py311_cpu" / name / "lock"
    lock.parent.mkdir(parents=True)
    lock.touch()
    old = time.time() - age_s
    os.utime(lock, (old, old))
    return lock


def test_an_old_lock_no_process_holds_is_removed(tmp_path: Path) -> None:
    lock = make_lock(tmp_path, "fused_adam", STALE_AFTER_S + 60)
    assert remove_stale_locks(tmp_path) == [lock]
    assert not lock.exists()


def test_a_lock_that_cannot_be_removed_is_said_by_the_first_process_of_each_node(tmp_path: Path, monkeypatch,
                                                                                  caplog) -> None:
    """Every process of a node looks at the same extension directory: one line per node, not one per GPU."""
    lock = make_lock(tmp_path, "fused_adam", STALE_AFTER_S + 60)

    def refuse(self: Path, missing_ok: bool = False) -> None:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "unlink", refuse)
    for rank, local_rank, says in (("0", "0", 1), ("1", "1", 0), ("8", "0", 1)):
        monkeypatch.setenv("RANK", rank)
        monkeypatch.setenv("LOCAL_RANK", local_rank)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="dsft.training.build_locks"):
            assert remove_stale_locks(tmp_path) == []
        assert sum("DeepSpeed will wait on it for ever" in r.getMessage() for r in caplog.records) == says, rank
    assert lock.exists()


def test_a_young_lock_is_kept(tmp_path: Path) -> None:
    lock = make_lock(tmp_path, "fused_adam", 60)
    assert remove_stale_locks(tmp_path) == []
    assert lock.exists()


def test_a_lock_held_open_by_a_live_build_is_kept(tmp_path: Path) -> None:
    lock = make_lock(tmp_path, "cpu_adam", STALE_AFTER_S + 60)
    # Like torch's FileBaton: the builder keeps the lock file open for the whole build.
    holder = subprocess.Popen([sys.executable, "-c", f"import os, time; fd = os.open({str(lock)!r}, os.O_RDONLY); "
                               "print('held', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert stale_locks(tmp_path) == []
        assert remove_stale_locks(tmp_path) == [] and lock.exists()
    finally:
        holder.kill()
        holder.wait()
    assert remove_stale_locks(tmp_path) == [lock]


def test_the_deepspeed_setup_clears_a_stale_lock(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "ext"))
    lock = make_lock(tmp_path / "ext", "fused_adam", STALE_AFTER_S + 60)
    kwargs = distributed_training_args(TrainConfig(distributed="deepspeed"), None, tmp_path, world_size=2)
    assert kwargs["deepspeed"] and not lock.exists()
