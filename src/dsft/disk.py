"""Output directories and disk space: problems with where output goes become one message naming the path.

* :func:`output_dir` checks an ``--out`` directory before any work (a file of that name, an
  unwritable parent) and creates it; :func:`check_output_dir` checks alone, for commands that check
  their other inputs before creating anything; :func:`check_fresh_output_dir` also refuses a directory
  that already holds files unless ``--overwrite`` is given, for commands whose files would replace the user's.
* :func:`require_free_space` refuses to start a write the file system has no room for, saying how much
  is needed and how much is free.
* :func:`partial_output_removed` wraps a write into an output directory: when the disk fills up (or
  the file system is read-only) what the write left is removed and the error names the path and the
  space needed.
* :func:`removed_when_stopped` wraps a whole command that writes into an output directory: stopped
  (SIGTERM, Ctrl-C), what it had written is removed, so the same command (or the dashboard, with the same
  name) can simply be run again.
* :func:`contents` and :func:`remove_new_files` are the two halves of both: what a directory held before a
  write, and removing what the write added. Only what the command created goes: a directory that existed
  before it (even empty, made by the user for the output) stays.
* :func:`describe_os_error` is the one line the CLI prints for any file-system error that reaches it.
* :func:`replaced_atomically` writes a file through a temporary one renamed over it, so a reader (or another
  process of a launched job writing the same file) never meets it half-written.
* :func:`not_a_file_reason` says why an input path is not a file that can be read (missing, a directory,
  a device or pipe, a dangling link), for the messages that refuse it; :func:`file_as_directory_reason` why a
  file's name ending in ``/`` is refused.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator
from typing import IO
from pathlib import Path

from dsft.errors import STOPS, DsftError

# errno values that mean "the place you chose to write cannot take it": the user's to fix.
NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
USER_FILESYSTEM_ERRORS = NO_SPACE | {
    errno.EROFS, errno.EACCES, errno.EPERM, errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.ENOENT,
    errno.ENAMETOOLONG,
}


def human_bytes(count: float) -> str:
    """``1536`` -> ``'1.5 KiB'``.

    >>> human_bytes(3 * 1024**3)
    '3.0 GiB'
    """
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def check_output_dir(path: Path, flag: str = "--out") -> None:
    """Raise the error :func:`output_dir` would raise for ``path`` that cannot be made an output directory,
    creating nothing: commands that check other inputs before writing call this first and
    :func:`output_dir` after, so a refused command leaves no empty directory behind."""
    if path.exists() and not path.is_dir():
        raise DsftError(f"{flag} {path}: exists and is not a directory; choose a directory path")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise DsftError(f"{flag} {path}: cannot create the directory ({existing} is not a directory)")
    if (refusal := creation_refused(existing)) is not None:
        raise DsftError(f"{flag} {path}: " + (f"the directory is not writable ({refusal})" if existing == path
                                              else f"cannot create the directory ({existing} is not writable: "
                                                   f"{refusal})"))


WRITE_CHECK_PREFIX = ".dsft-write-check-"


def creation_refused(directory: Path) -> str | None:
    """Why nothing can be created in existing ``directory`` (the error's text), else None. Tried, not asked:
    ``os.access`` says yes to root everywhere, /proc and /sys included, where creating still fails, so a command
    run as root went on to its work (a benchmark, minutes) and failed only when it wrote. The entry made to find
    out is removed at once."""
    if not os.access(directory, os.W_OK | os.X_OK):
        return "permission denied"
    try:
        made = tempfile.mkdtemp(prefix=WRITE_CHECK_PREFIX, dir=directory)
    except OSError as exc:
        return exc.strerror or str(exc)
    os.rmdir(made)
    return None


def check_fresh_output_dir(path: Path, overwrite: bool, flag: str = "--out", rerun_markers: tuple[str, ...] = ()) -> None:
    """The output-directory rule of every command that writes into a user-named ``--out`` (README, "Output
    directories"): :func:`check_output_dir`, and a directory that already holds files is refused unless
    ``overwrite``, since commands write fixed file names (``Dockerfile``, ``rejects.jsonl``) that would silently
    replace a file of the user's. With ``overwrite`` the command replaces its own files and leaves the others.

    ``rerun_markers``: only for the commands whose everyday workflow is a rerun into their own output (``data
    prepare`` after changing a setting, ``data distill`` / ``data augment`` resuming from their response cache):
    the files only that command writes there; a directory holding one is its earlier output, rewritten without
    ``--overwrite``."""
    check_output_dir(path, flag)
    if not path.is_dir() or overwrite or not any(path.iterdir()):
        return
    if any((path / marker).is_file() for marker in rerun_markers):
        return
    own = f" and holds no {' or '.join(rerun_markers)} (not an earlier output of this command)" if rerun_markers else ""
    names = sorted(p.name for p in path.iterdir())
    held = ", ".join(names[:5]) + (f", ... ({len(names)} entries)" if len(names) > 5 else "")
    raise DsftError(f"{flag} {path}: directory is not empty{own}; it holds {held}; choose a new one or pass "
                    "--overwrite (which replaces only the files this command writes)")


def output_dir(path: Path, flag: str = "--out") -> Path:
    """Create output directory ``path`` (and parents); a clear error when it cannot be one."""
    check_output_dir(path, flag)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DsftError(f"{flag} {path}: cannot create the directory ({exc.strerror})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise DsftError(f"{flag} {path}: the directory is not writable")
    return path


REPLACEMENT_SUFFIX = ".tmp"


def is_replacement_in_flight(path: Path) -> bool:
    """Whether ``path`` is the temporary file of a :func:`replaced_atomically` write (another process's, maybe,
    renamed in a moment): something a check of a directory's contents must not count as the user's.

    >>> is_replacement_in_flight(Path("run/.config.yaml.4711-140234.tmp")), is_replacement_in_flight(Path("notes.tmp"))
    (True, False)
    """
    stem, _, ids = path.name.removesuffix(REPLACEMENT_SUFFIX).rpartition(".")
    pid, _, thread = ids.partition("-")
    return (path.name.endswith(REPLACEMENT_SUFFIX) and path.name.startswith(".") and len(stem) > 1
            and pid.isdigit() and thread.isdigit())


@contextlib.contextmanager
def replaced_atomically(path: Path, errors: str = "strict") -> Iterator[IO[str]]:
    """A UTF-8 text handle whose content replaces ``path`` in one rename when the block ends without error.

    Every process of a launched job prepares the same run directory at once; with ``open(path, "w")`` one
    process's truncation could meet another's read (a torn ``config.yaml`` or ``run.json``) or a write stopped
    half-way could leave half a file. The temporary file is this process's and thread's own (both in the name),
    in the same directory (one file system), and is removed when the block fails.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}{REPLACEMENT_SUFFIX}")
    try:
        with open(temporary, "w", encoding="utf-8", errors=errors) as handle:
            yield handle
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def not_a_file_reason(path: Path) -> str:
    """Why ``path``, which is not a regular file, cannot be read as one; the message names the path first.

    >>> not_a_file_reason(Path("/dev/null"))
    'exists but is not a regular file (a device, pipe or socket)'
    """
    if path.is_dir():
        return "is a directory, not a file"
    if path.exists():
        return "exists but is not a regular file (a device, pipe or socket)"
    if path.is_symlink():
        return f"a symbolic link to {os.readlink(path)}, which does not exist"
    if str(path).startswith("~") and path.expanduser().exists():  # quoted, or in a config file: no shell expanded it
        return (f"no such file or directory; '~' is expanded by a shell only where it is unquoted, not here: write "
                f"{path.expanduser()}")
    return "no such file or directory"


def file_as_directory_reason(name: str) -> str | None:
    """Why ``name``, a file's name ending in ``/`` (``data.jsonl/``), is refused, or None for any other name:
    ``Path`` drops the slash, so it was read as the file, where ``open()``, ``ls`` and every other tool refuse it
    (a trailing slash names a directory: ``Not a directory``).

    >>> import tempfile
    >>> folder = tempfile.mkdtemp(); _ = open(f"{folder}/a.jsonl", "w").close()
    >>> file_as_directory_reason(f"{folder}/a.jsonl/").replace(folder, "D")
    "a file named with a trailing '/', which names a directory; write D/a.jsonl"
    >>> file_as_directory_reason(f"{folder}/a.jsonl"), file_as_directory_reason(f"{folder}/")
    (None, None)
    """
    separators = (os.sep, os.altsep) if os.altsep else (os.sep,)
    if not name.endswith(separators) or not Path(name).is_file():
        return None
    return f"a file named with a trailing '{name[-1]}', which names a directory; write {name.rstrip(''.join(separators))}"


def free_bytes(path: Path) -> int:
    """Free bytes on the file system that holds ``path`` (or its nearest existing parent)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def tree_bytes(paths: Iterable[Path]) -> int:
    """Total size of the files under ``paths`` (files or directories), in bytes."""
    total = 0
    for path in paths:
        if path.is_file():
            total += path.stat().st_size
        elif path.is_dir():
            total += sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return total


def require_free_space(path: Path, needed: int, what: str) -> None:
    """Raise when the file system of ``path`` has less than ``needed`` bytes free for ``what``."""
    free = free_bytes(path)
    if free < needed:
        raise DsftError(f"{path}: {what} needs about {human_bytes(needed)}; the file system has "
                        f"{human_bytes(free)} free. Free some space or choose another location")


def disk_error(exc: OSError, path: Path, needed: int | None = None) -> DsftError:
    """The one-line error for a failed write under ``path``."""
    if exc.errno in NO_SPACE:
        need = f"; it needs about {human_bytes(needed)}" if needed else ""
        return DsftError(f"{path}: no space left on the device ({human_bytes(free_bytes(path))} free){need}. "
                         "The partial output was removed; free some space or choose another location")
    return DsftError(f"{path}: {describe_os_error(exc)}")


def describe_os_error(exc: OSError) -> str:
    """``strerror: filename`` for a file-system error (what the CLI prints)."""
    where = exc.filename if exc.filename is not None else ""
    if exc.filename2 is not None:
        where = f"{where} -> {exc.filename2}"
    reason = exc.strerror or str(exc)
    return f"{where}: {reason}" if where else reason


@contextlib.contextmanager
def partial_output_removed(out: Path, needed: int | None = None, what: str = "the output", *,
                           created: bool = False) -> Iterator[None]:
    """Run a write into directory ``out``; a file-system error removes what it wrote and names the path.

    ``needed`` (bytes, an estimate) is checked against the free space first. On a full disk, a
    read-only file system or a permission error the files created inside ``out`` during the block are
    deleted, and ``out`` itself when the command created it (absent as the block began, or ``created``: made
    by the command just before); a directory that existed before the command stays. The :class:`DsftError`
    raised names ``out`` and, for a full disk, the space needed. Other errors leave what was written, so it
    can be inspected.
    """
    if needed:
        require_free_space(out, needed, what)
    before = None if created else contents(out)
    try:
        yield
    except OSError as exc:
        if exc.errno not in USER_FILESYSTEM_ERRORS:
            raise
        remove_new_files(out, before)
        raise disk_error(exc, out, needed) from None


@contextlib.contextmanager
def removed_when_stopped(out: Path) -> Iterator[None]:
    """Run a command writing into directory ``out``; a stop (SIGTERM, Ctrl-C) removes the files it created
    there (``out`` itself too when it did not exist before), then lets the stop go on. Errors leave them."""
    before = contents(out)
    try:
        yield
    except STOPS:
        remove_new_files(out, before)
        raise


@contextlib.contextmanager
def refused_output_removed(out: Path) -> Iterator[None]:
    """Run a command writing into directory ``out``; a refusal (:class:`DsftError`) raised before anything was
    written there removes ``out`` when the command created it, so a refused command leaves no empty ``--out`` behind
    (``dsft eval`` with data holding no usable record did). What was written stays, to be inspected."""
    existed = out.exists()
    try:
        yield
    except DsftError:
        if not existed and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise


def contents(out: Path) -> set[Path] | None:
    """Every path under directory ``out`` now, or None when ``out`` is no directory (yet): the ``before`` of
    :func:`remove_new_files`."""
    return set(out.rglob("*")) if out.is_dir() else None


def remove_new_files(out: Path, before: set[Path] | None) -> None:
    """Remove what was added under ``out`` since :func:`contents` returned ``before``; ``out`` itself when it
    did not exist then (``before`` is None). A directory that existed stays, even when it was empty."""
    if not out.is_dir():
        return
    if before is None:
        shutil.rmtree(out, ignore_errors=True)
        return
    for path in sorted(set(out.rglob("*")) - before, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
