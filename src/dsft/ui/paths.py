"""Keep every request inside the runs root: resolve, then check the prefix (symlinks included)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from dsft.errors import DsftError


class OutsideRoot(DsftError):
    """A request named a path that is not inside the runs root (or does not exist there)."""


def inside_root(root: Path, relative: str, must_exist: bool = True) -> Path:
    """``root / relative`` resolved; refused when absolute, empty, or resolving (through ``..`` or a
    symlink) to anywhere outside ``root``."""
    if not relative or "\x00" in relative:
        raise OutsideRoot("empty path")
    pure = PurePosixPath(relative.replace("\\", "/"))
    if pure.is_absolute() or (pure.parts and ":" in pure.parts[0]):
        raise OutsideRoot(f"{relative}: give a path relative to the runs root")
    base = root.resolve()
    target = (base / pure).resolve()
    if target != base and base not in target.parents:
        raise OutsideRoot(f"{relative}: outside the runs root")
    if must_exist and not target.exists():
        raise OutsideRoot(f"{relative}: no such file or directory under the runs root")
    return target


def relative_name(root: Path, path: Path) -> str:
    """``path`` as the posix path relative to ``root`` that requests use."""
    return path.resolve().relative_to(root.resolve()).as_posix()
