"""Whether the process that wrote a run is still alive, so a killed run is not shown as running for ever.

A training process records itself in ``run.json`` (:func:`process_record`) when it starts its steps; the
dashboard records the processes it starts the same way. Later readers ask :func:`process_alive`: ``False``
when that process has ended on this host (or its pid now belongs to a process started at another time),
``None`` when it cannot be told (another host, a system without ``/proc``).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (``/proc/PID/stat`` field 22), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); the start time is field 22.
    return int(fields[19]) if len(fields) > 19 else None


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie, ended but not yet reaped, counts as ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _launch_id() -> str | None:
    """What the processes of one distributed launch share (every rank writes ``run.json``), or None."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    return os.environ.get("TORCHELASTIC_RUN_ID") or f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}"


def process_record(pid: int | None = None) -> dict[str, Any]:
    """A process as recorded for :func:`process_alive`: pid, host, start time and (this process only) its
    distributed launch. This process by default (``run.json``); ``pid``: a child this process started (the
    dashboard's launch and job records)."""
    if pid is None:
        return {**process_record(os.getpid()), "launch": _launch_id()}
    return {"pid": pid, "host": socket.gethostname(), "start_ticks": _start_ticks(pid), "launch": None}


def another_live_process(record: dict[str, Any] | None) -> bool:
    """Whether the recorded process still runs and is not this process or a rank of this launch."""
    if not isinstance(record, dict) or record.get("pid") == os.getpid():
        return False
    launch = _launch_id()
    if launch is not None and record.get("launch") == launch:
        return False
    return bool(process_alive(record))


def process_alive(record: dict[str, Any] | None) -> bool | None:
    """Whether the recorded process still runs; None when it cannot be told from here."""
    if not isinstance(record, dict) or not isinstance(record.get("pid"), int):
        return None
    if record.get("host") != socket.gethostname():
        return None
    pid = record["pid"]
    if not pid_alive(pid):
        return False
    recorded, now = record.get("start_ticks"), _start_ticks(pid)
    if recorded is not None and now is not None and recorded != now:
        return False  # the pid was reused by a later process
    return True
