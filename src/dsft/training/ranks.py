"""Which process of a launched job says what.

Under torchrun (or the deepspeed launcher) every process runs the same ``dsft train``. What the whole job says
once (the run summary, the notices about settings the run does not apply, the warnings about its data, model
and checkpoints: :func:`warn_for_job`; those the data readers log themselves: :func:`warnings_for_job`) comes
from its main process: global rank 0, or the one process no
launcher started. What each machine finds of itself (a missing package) comes from the first process of each
node (:func:`warn_for_node`).

An error that stops the job is said once per node, by its first process (``LOCAL_RANK`` 0), when every process
meets it alike: a job-wide error (:attr:`dsft.errors.DsftError.job_wide`), such as a config error (the same
config, machine and ``WORLD_SIZE``), data that leaves no example to train on (every process prepares the same
data), a non-finite loss (the ranks' losses are gathered before any stops) or a GRPO run with nothing to learn
from (its rewards are gathered from every rank). Once per node, not once per job: a node's log is all its
operator may see, and without the line it would show only the launcher's report of an exit code; a node whose
packages or files differ still says its own. Any other error is said by each rank it stops, since it may be
that rank's alone (its disk, its GPU). The exit code is the error's on every rank. A process that does not say
a job-wide error waits before it exits (:func:`leave_the_error_to_the_node`): launchers end every other process
as soon as one exits, and the one that says it must not be ended before its line.

Light to import (no torch): the CLI asks it when it prints an error.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from dsft.errors import STOPS, DsftError


def is_main_process(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process speaks for the whole job: ``RANK`` 0, or no launcher (no ``RANK``).

    >>> is_main_process({}), is_main_process({"RANK": "0"}), is_main_process({"RANK": "1"})
    (True, True, False)
    """
    return _rank(environ, "RANK") == 0


def says_error(exc: BaseException, environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process prints ``exc``: a job-wide error once per node (``LOCAL_RANK`` 0), anything else on
    every rank it stops.

    >>> rank_1 = {"RANK": "1", "LOCAL_RANK": "1"}
    >>> says_error(DsftError("x", job_wide=True), rank_1), says_error(DsftError("x"), rank_1)
    (False, True)
    >>> says_error(OSError(), rank_1)
    True
    """
    job_wide = isinstance(exc, DsftError) and exc.job_wide
    return not job_wide or _rank(environ, "LOCAL_RANK") == 0


SAYER_WAIT_S = 10.0  # at most: the launcher ends this wait as soon as the process that says the error has exited


def leave_the_error_to_the_node(exc: BaseException) -> None:
    """On a process that does not say ``exc`` (:func:`says_error`), wait before exiting, at most
    :data:`SAYER_WAIT_S`: the node's first process meets the same error a moment earlier or later, and torchrun
    ends every other process within 0.1 s of the first exit, so a silent rank that exited first cut its line
    and the job failed with the launcher's report alone. Once the first process has said it and exited, the
    launcher ends this one (a stop during the wait ends it quietly)."""
    if says_error(exc):
        return
    try:
        time.sleep(SAYER_WAIT_S)
    except STOPS:  # the launcher's SIGTERM (the CLI's Stopped), Ctrl-C: the error's exit code all the same
        pass


def warn_for_job(log: logging.Logger, message: str, *args: object) -> None:
    """``log.warning(message, *args)`` from the main process only: a fact of the whole job, which every process
    finds alike (its config, data, model, checkpoints, the metrics gathered from every rank)."""
    if is_main_process():
        log.warning(message, *args)


@contextmanager
def warnings_for_job(*loggers: str) -> Iterator[None]:
    """While it lasts, the named loggers (and those below them) warn from the main process only: for code that
    logs what it finds itself, knowing nothing of ranks, where every process finds it alike (the data readers'
    warnings about a file every process of the job reads: its comment lines, a ',' between records). Elsewhere
    they say only errors (their level raised to ERROR, then put back)."""
    if is_main_process():
        yield
        return
    quieted = [logging.getLogger(name) for name in loggers]
    levels = [logger.level for logger in quieted]
    for logger in quieted:
        logger.setLevel(max(logger.getEffectiveLevel(), logging.ERROR))
    try:
        yield
    finally:
        for logger, level in zip(quieted, levels):
            logger.setLevel(level)


def warn_for_node(log: logging.Logger, message: str, *args: object) -> None:
    """``log.warning(message, *args)`` from the first process of each node (``LOCAL_RANK`` 0): a fact of the
    machine (its packages, its devices), which another node may not share."""
    if _rank(None, "LOCAL_RANK") == 0:
        log.warning(message, *args)


def _rank(environ: Mapping[str, str] | None, name: str) -> int:
    return int((os.environ if environ is None else environ).get(name, "0"))
