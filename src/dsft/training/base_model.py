"""Where a run's base model is on this machine: what training records of it in ``run.json``, and how a run directory
that may have moved (another path, another machine) finds it again from that record.

:class:`~dsft.training.rundir.RunDir` writes the record (:func:`base_model_record`) and answers
``run.base_model()`` from it; this module owns the order tried and the error that names what was tried:

>>> record = BaseModelRecord.of(Path("runs/r1-lora"), {"base_model": "/gone/tiny", "model_name_or_path": "/gone/tiny"})
>>> record.absolute, record.name
('/gone/tiny', '/gone/tiny')
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsft.config import DsftConfig
from dsft.errors import DsftError
from dsft.models.resolve import check_model_name, resolve_model


def base_model_record(run_path: Path, cfg: DsftConfig, model_dir: Path) -> dict[str, Any]:
    """The run.json keys :class:`BaseModelRecord` finds a moved run's base model from."""
    try:
        relative: str | None = os.path.relpath(Path(model_dir).resolve(), run_path.resolve())
    except ValueError:  # another drive (Windows): no relative path exists
        relative = None
    return {"base_model": str(Path(model_dir).resolve()), "base_model_relative": relative,
            "model_name_or_path": cfg.model.name_or_path, "model_revision": cfg.model.revision}


@dataclass(frozen=True)
class BaseModelRecord:
    """What a run's ``run.json`` says of its base model, read relative to where the run directory is now.

    Tried in order: the absolute path recorded at training time; the same directory found relative to the run
    directory (a run and its base copied together keep their relative layout); ``model.name_or_path`` as the config
    gave it (a tiny preset is rebuilt, a hub id is downloaded or found in the cache, a relative path is taken from
    the current directory). ``whose`` begins the error when none is found (the run, or a checkpoint of it).
    """

    absolute: str | None  # run.json's base_model
    relative: str | None  # run.json's base_model_relative, resolved against where the run directory is now
    name: str | None
    revision: str | None

    @classmethod
    def of(cls, run_path: Path, info: dict[str, Any]) -> BaseModelRecord:
        relative = info.get("base_model_relative")
        return cls(info.get("base_model"), str((run_path / relative).resolve()) if relative else None,
                   info.get("model_name_or_path"), info.get("model_revision"))

    def find(self, whose: str, cache_dir: str | Path | None = None) -> Path:
        """The base model's directory (preparing a preset or downloading a hub id if it comes to that)."""
        found, tried = self._recorded()
        if found is not None:
            return found
        if self.name:
            try:
                return resolve_model(self.name, cache_dir=cache_dir, revision=self.revision)
            except DsftError as exc:
                tried.append(self._failed_name(exc, tried))
        raise _not_found(whose, tried)

    def check(self, whose: str) -> None:
        """Raise the error :meth:`find` would raise, without writing a preset or downloading anything. A hub id is
        taken as found: only the download can tell."""
        found, tried = self._recorded()
        if found is not None:
            return
        if self.name:
            try:
                check_model_name(self.name)
                return
            except DsftError as exc:
                tried.append(self._failed_name(exc, tried))
        raise _not_found(whose, tried)

    def _recorded(self) -> tuple[Path | None, list[str]]:
        """The recorded base directory (absolute, then relative to the run) that exists, and those that do not."""
        tried: list[str] = []
        for recorded in (self.absolute, self.relative):
            if recorded:
                if (Path(recorded) / "config.json").is_file():
                    return Path(recorded), tried
                if str(recorded) not in tried:  # the relative path of a run that has not moved is the same one
                    tried.append(str(recorded))
        return None, tried

    def _failed_name(self, exc: DsftError, tried: list[str]) -> str:
        """How ``model.name_or_path`` failed, for the tried list; empty where it is a path the list already names."""
        assert self.name is not None
        if str(Path(self.name).expanduser().resolve()) in tried:
            return ""
        return f"{self.name} ({exc})"


# What to do, in words any caller can act on; a front end says it its own way (BaseModelNotFound.with_hint): the
# command line names its --base-model flag (dsft.cli.base_model), the dashboard its page's ways out (dsft.ui.chat).
HINT = ("put the base model back where the first path tried says, or give the run another base model (a model "
        "directory, hub id or tiny preset)")


_NOT_FOUND = " was not found on this machine; tried: "


class BaseModelNotFound(DsftError):
    """A run's base model is found nowhere its record says: the error names whose base it is and every place tried.
    What to do about it says no front end's flag by default (:data:`HINT`); a front end says its own
    (:meth:`with_hint`): the command line its ``--base-model``, the dashboard, which has no such field, its page's."""

    def __init__(self, whose: str, tried: list[str], hint: str = HINT) -> None:
        self.whose, self.tried = whose, [t for t in tried if t]
        super().__init__(f"{whose}{_NOT_FOUND}{'; '.join(self.tried) or 'nothing recorded'}", [hint])

    def with_hint(self, hint: str) -> BaseModelNotFound:
        """The same error (whose base, the places tried) with another front end's hint."""
        return BaseModelNotFound(self.whose, self.tried, hint)


def printed_with_hint(printed: str, hint: str) -> str | None:
    """A :class:`BaseModelNotFound` as a command printed it (its message, then its hint as a problem line) with
    ``hint`` in its hint's place; None when ``printed`` is another error. For a front end that runs another: the
    dashboard's jobs are CLI commands, whose hint names the ``--base-model`` flag.

    >>> printed = str(BaseModelNotFound("run r's base model", ["/m"], "pass --base-model"))
    >>> print(printed_with_hint(printed, "put it back"))
    run r's base model was not found on this machine; tried: /m
      - put it back
    >>> printed_with_hint("data.train: no such file", "put it back") is None
    True
    """
    head, _, hints = printed.partition("\n")
    if _NOT_FOUND not in head or not all(line.startswith("  - ") for line in hints.splitlines()):
        return None
    return str(DsftError(head, [hint]))


def _not_found(whose: str, tried: list[str]) -> BaseModelNotFound:
    return BaseModelNotFound(whose, tried)
