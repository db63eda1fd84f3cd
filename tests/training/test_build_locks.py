"""A build lock left by a killed extension build is removed before a DeepSpeed run (it would wait on it for
ever); a lock a live build holds, or a young one, is kept."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dsft.config.schema import TrainConfig
from dsft.training.build_locks import STALE_AFTER_S, extension_build_dir, remove_stale_locks, stale_locks
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


CPU_ADAM_SAID = "building DeepSpeed's CPU Adam (the optimizer train.offload moves to the CPU) into {dir} when training " \
                "starts: a C++ compile that takes minutes the first time on this machine, then is reused"


def _said_of_cpu_adam(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "CPU Adam" in r.getMessage()]


@pytest.mark.parametrize("offload", ["optimizer", "optimizer+param"])
def test_a_first_cpu_adam_build_is_said_before_training_starts(tmp_path: Path, monkeypatch, caplog,
                                                               offload: str) -> None:
    """DeepSpeed compiles its CPU Adam when the Trainer starts, for minutes the first time, printing nothing: the
    run looked hung before its first step. The setup says it first, where no build is there yet (the build itself,
    minutes of C++, is not run here)."""
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "ext"))
    cfg = TrainConfig(distributed="deepspeed", zero_stage=3, offload=offload)
    with caplog.at_level(logging.WARNING, logger="dsft"):
        distributed_training_args(cfg, None, tmp_path, world_size=2)
    assert _said_of_cpu_adam(caplog) == [CPU_ADAM_SAID.format(dir=tmp_path / "ext" / "cpu_adam")]


def test_a_cpu_adam_already_built_or_not_used_is_not_said(tmp_path: Path, monkeypatch, caplog) -> None:
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "ext"))
    with caplog.at_level(logging.WARNING, logger="dsft"):
        distributed_training_args(TrainConfig(distributed="deepspeed", zero_stage=2), None, tmp_path, world_size=2)
        built = tmp_path / "ext" / "cpu_adam" / "cpu_adam.so"
        built.parent.mkdir(parents=True)
        built.write_bytes(b"")
        distributed_training_args(TrainConfig(distributed="deepspeed", zero_stage=2, offload="optimizer"), None,
                                  tmp_path, world_size=2)
    assert _said_of_cpu_adam(caplog) == []


def test_the_build_directory_is_where_torch_builds(tmp_path: Path, monkeypatch) -> None:
    """Without TORCH_EXTENSIONS_DIR torch builds in a folder per Python and accelerator under its default root."""
    from torch.utils import cpp_extension

    monkeypatch.delenv("TORCH_EXTENSIONS_DIR", raising=False)
    monkeypatch.setattr(cpp_extension, "get_default_build_root", lambda: str(tmp_path))
    assert extension_build_dir("cpu_adam") == Path(cpp_extension._get_build_directory("cpu_adam", False))
