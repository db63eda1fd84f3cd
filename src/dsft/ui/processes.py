"""The processes the dashboard starts (training runs, jobs): how they are recorded, whether they still run,
and how they are stopped.

A record is :func:`dsft.training.liveness.process_record` of the child (pid, host, start time), so
:func:`dsft.training.liveness.process_alive` answers for it as for a training process: a pid that now
belongs to another process (after a reboot or a pid wrap) is not taken for the one recorded.
"""

from __future__ import annotations

import os
import signal
import socket
from typing import Any

from dsft.errors import DsftError
from dsft.training.liveness import process_alive, process_record


class CannotStop(DsftError):
    """A stop asked of a process that has already ended or runs on another host (answered 409)."""


def record(pid: int) -> dict[str, Any]:
    """What a launch or job record keeps of the child ``pid`` this process has just started."""
    return process_record(pid)


def alive(recorded: dict[str, Any]) -> bool | None:
    """Whether the recorded process still runs; None when it runs on another host (it cannot be told from
    here). A record written before hosts and start times were kept is taken as this host's, by pid alone."""
    return process_alive({"host": socket.gethostname(), **recorded})


def terminal_lines(text: str) -> list[str]:
    """The lines of a process's log as a terminal shows them: a line redrawn with carriage returns (a progress
    bar) is its last drawing, not one line per redraw."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r").rsplit("\r", 1)[-1] for line in lines]


def stop(recorded: dict[str, Any], what: str, group: bool) -> None:
    """SIGTERM to the recorded process (``group``: to its whole process group, the session it leads);
    :class:`CannotStop` when it has already ended or runs elsewhere."""
    now = alive(recorded)
    if now is None:
        raise CannotStop(f"{what}: runs on host {recorded.get('host')}; stop it there")
    if not now:
        raise CannotStop(f"{what}: its process has already ended")
    pid = int(recorded["pid"])
    try:
        if group:
            os.killpg(pid, signal.SIGTERM)  # started with its own session: the group id is its pid
        else:
            os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        raise CannotStop(f"{what}: its process has already ended") from None
