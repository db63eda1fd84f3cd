"""Which process of a launched job says what.

Under torchrun (or the deepspeed launcher) every process runs the same ``dsft train``. What the whole job says
once (the run summary, the notices about settings the run does not apply, the warnings about its data, model
and checkpoints: :func:`warn_for_job`) comes from its main process: global rank 0, or the one process no
launcher started. What each machine finds of itself (a missing package) comes from the first process of each
node (:func:`warn_for_node`). A config error is found before the processes meet, by every
one of them alike (the same config, machine and ``WORLD_SIZE``): the first process of each node says it (one
line per node's log; a node whose packages differ still says its own). Any other error is said by each rank it
stops, since it may be that rank's alone (its disk, its GPU).

Light to import (no torch): the CLI asks it when it prints an error.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from dsft.errors import ConfigError


def is_main_process(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process speaks for the whole job: ``RANK`` 0, or no launcher (no ``RANK``).

    >>> is_main_process({}), is_main_process({"RANK": "0"}), is_main_process({"RANK": "1"})
    (True, True, False)
    """
    return _rank(environ, "RANK") == 0


def says_error(exc: BaseException, environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process prints ``exc``: a :class:`ConfigError` once per node (``LOCAL_RANK`` 0), anything
    else on every rank it stops.

    >>> says_error(ConfigError("x"), {"RANK": "1", "LOCAL_RANK": "1"}), says_error(OSError(), {"LOCAL_RANK": "1"})
    (False, True)
    """
    return not isinstance(exc, ConfigError) or _rank(environ, "LOCAL_RANK") == 0


def warn_for_job(log: logging.Logger, message: str, *args: object) -> None:
    """``log.warning(message, *args)`` from the main process only: a fact of the whole job, which every process
    finds alike (its config, data, model, checkpoints, the metrics gathered from every rank)."""
    if is_main_process():
        log.warning(message, *args)


def warn_for_node(log: logging.Logger, message: str, *args: object) -> None:
    """``log.warning(message, *args)`` from the first process of each node (``LOCAL_RANK`` 0): a fact of the
    machine (its packages, its devices), which another node may not share."""
    if _rank(None, "LOCAL_RANK") == 0:
        log.warning(message, *args)


def _rank(environ: Mapping[str, str] | None, name: str) -> int:
    return int((os.environ if environ is None else environ).get(name, "0"))
