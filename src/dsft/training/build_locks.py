"""Stale build locks of torch C++ extensions, which make every later DeepSpeed run wait for ever.

DeepSpeed compiles its ops (its Adam, communication kernels) on first use through torch's extension
loader, which guards each build directory with a ``lock`` file created at the start of the build and
removed at its end; a second process waits while the file exists, without a time limit. A build that was
killed (Ctrl-C, a timeout, the out-of-memory killer) leaves the file behind, and from then on every
DeepSpeed run on the machine hangs silently before its first step.

The builder keeps the lock file open while it builds, so a lock that no process on this host holds open
and that is older than any build takes was left by a killed build and is removed, with a warning naming it.
A younger lock is kept: it may belong to a build on another host sharing the directory.

The build itself prints nothing: a run offloading its optimizer to the CPU (DeepSpeed's CPU Adam) sat silent for
minutes before its first step the first time on a machine. :func:`say_cpu_adam_build` says so first.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

from dsft.training.ranks import warn_for_node

log = logging.getLogger(__name__)

# Far longer than any DeepSpeed op build takes (a few minutes on two cores).
STALE_AFTER_S = 30 * 60


def extensions_root() -> Path:
    """Where torch builds extensions: ``TORCH_EXTENSIONS_DIR`` or its default under the cache directory."""
    configured = os.environ.get("TORCH_EXTENSIONS_DIR")
    if configured:
        return Path(configured)
    from torch.utils.cpp_extension import get_default_build_root  # imported on use: torch loads late

    return Path(get_default_build_root())


def extension_build_dir(name: str) -> Path:
    """The directory torch's extension loader builds ``name`` in, laid out as ``torch.utils.cpp_extension`` lays it
    out: under ``TORCH_EXTENSIONS_DIR`` itself, else under its default root in a folder per Python version and
    accelerator (``py311_cpu``, ``py311_cu124``)."""
    configured = os.environ.get("TORCH_EXTENSIONS_DIR")
    if configured:
        return Path(configured) / name
    import torch  # imported on use: torch loads late

    if torch.version.hip is not None:
        accelerator = f"rocm{torch.version.hip.replace('.', '')}"
    elif torch.version.cuda is not None:
        accelerator = f"cu{torch.version.cuda.replace('.', '')}"
    else:
        accelerator = "cpu"
    python = f"py{sys.version_info.major}{sys.version_info.minor}{getattr(sys, 'abiflags', '')}"
    return extensions_root() / f"{python}_{accelerator}" / name


def say_cpu_adam_build() -> None:
    """Say, once per node, that DeepSpeed will compile its CPU Adam (the optimizer of a run that offloads it to the
    CPU) when training starts, where it is not built yet: neither shipped built with the installed DeepSpeed nor
    left by an earlier build in :func:`extension_build_dir`. The compile takes minutes and prints nothing."""
    from deepspeed.git_version_info import installed_ops  # heavy: only for a DeepSpeed run
    from deepspeed.ops.op_builder import CPUAdamBuilder

    name = CPUAdamBuilder.NAME
    directory = extension_build_dir(name)
    if installed_ops.get(name) or (directory / f"{name}.so").is_file():
        return
    warn_for_node(log, "building DeepSpeed's CPU Adam (the optimizer train.offload moves to the CPU) into %s when "
                  "training starts: a C++ compile that takes minutes the first time on this machine, then is reused",
                  directory)


def open_files() -> set[Path]:
    """Every file some process on this host (that this user may inspect) holds open."""
    held: set[Path] = set()
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            entries = list(fd_dir.iterdir())
        except OSError:
            continue
        for entry in entries:
            try:
                held.add(Path(os.readlink(entry)))
            except OSError:
                continue
    return held


def stale_locks(root: Path, now: float | None = None) -> list[Path]:
    """Lock files under ``root`` (one per build directory) that no process holds and that are old."""
    now = time.time() if now is None else now
    candidates = [lock for lock in root.glob("*/*/lock") if lock.is_file()]
    candidates += [lock for lock in root.glob("*/lock") if lock.is_file()]
    if not candidates:
        return []
    held = open_files()
    stale = []
    for lock in candidates:
        try:
            age = now - lock.stat().st_mtime
        except OSError:
            continue
        if age > STALE_AFTER_S and lock.resolve() not in held:
            stale.append(lock)
    return stale


def remove_stale_locks(root: Path | None = None) -> list[Path]:
    """Remove the stale build locks under ``root`` (default: torch's extension directory); the removed ones."""
    root = extensions_root() if root is None else root
    if not Path("/proc/self/fd").is_dir() or not root.is_dir():
        return []  # no way to tell which locks are held: leave them
    removed = []
    for lock in stale_locks(root):
        try:
            lock.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:  # every process of this node finds it alike (its disk): its first one says it
            warn_for_node(log, "%s: a build lock left by a killed build; DeepSpeed will wait on it for ever; "
                          "remove it (%s)", lock, exc)
            continue
        log.warning("removed %s: a build lock left by a killed build (no process holds it), on which "
                    "DeepSpeed would have waited for ever", lock)
        removed.append(lock)
    return removed
