"""Errors users can act on.

Library code raises :class:`DsftError` (or a subclass) for anything a user can fix: bad config,
missing file, unsupported hardware. The CLI prints its message on one line per problem and exits
with code 2; no traceback unless ``--debug``. Internal invariants use ``assert``.

Under a launcher (torchrun, deepspeed) every process runs the same command. An error that every one of them
meets alike, from the same config, data, model or run directory, or from values gathered from every rank, is
*job-wide* (:attr:`DsftError.job_wide`): the first process of each node says it, not every process
(``dsft.training.ranks.says_error``). The raise that knows the decision was the same everywhere says so.
"""

from __future__ import annotations

import signal


class DsftError(Exception):
    """A problem the user can fix. ``problems`` lists every issue found, each naming what and where.

    ``job_wide=True``: every process of a launched job meets this error alike (see the module docstring); a
    class whose every raise is such sets the class attribute instead.
    """

    exit_code = 2
    job_wide = False  # may be this process's alone (its disk, its GPU): every process it stops says it

    def __init__(self, message: str, problems: list[str] | None = None, *, job_wide: bool | None = None) -> None:
        self.problems = list(problems or [])
        if job_wide is not None:
            self.job_wide = job_wide
        super().__init__(message)

    def __str__(self) -> str:
        head = super().__str__()
        if not self.problems:
            return head
        return head + "\n" + "\n".join(f"  - {p}" for p in self.problems)


class ConfigError(DsftError):
    """The config (file or ``--set`` overrides) is invalid."""

    job_wide = True  # every process reads the same config (and WORLD_SIZE)


class DataError(DsftError):
    """Input data could not be read or failed validation under ``on_error: fail``."""


class UnsupportedError(DsftError):
    """The request is valid but this machine or library version cannot do it; the message says how."""


class Stopped(BaseException):
    """The command was asked to stop by a signal (SIGTERM: ``kill``, the dashboard's Stop, a scheduler).

    Raised by the CLI's handler wherever the command happens to be, like Ctrl-C's KeyboardInterrupt, and, like
    it, not an :class:`Exception`, so no ``except Exception`` swallows it: cleanup paths catch :data:`STOPS`.
    """

    def __init__(self, signum: int, name: str | None = None) -> None:
        self.signum = signum
        super().__init__(name or ("Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name))


# What a cleanup that must also run when the user stops a command catches (Ctrl-C, SIGTERM).
STOPS = (KeyboardInterrupt, Stopped)
