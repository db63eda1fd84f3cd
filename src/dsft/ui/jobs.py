"""Detached ``dsft`` commands the dashboard starts for a user: data preparation, compare, export.

Each job is the CLI command itself (``dsft data prepare``, ``dsft compare``, ``dsft export``) run in its own
process session, so it does exactly what the terminal does and keeps going if the dashboard stops or
restarts. Everything about a job lives in files under the root's ``.dsft-ui/jobs/``: ``ID.json`` (kind,
target, command, process record, start time, and the time of a stop), ``ID.log`` (its output) and ``ID.rc``
(its exit status, written by the small shell wrapper it runs under), so a restarted dashboard reads the same
status as the one that started it. A failed command's message is the CLI's one ``error:`` line. A stop
sends SIGTERM to the job's process group (the wrapper and the command): the command removes what it had
written and exits 143 (:mod:`dsft.cli.stopping`), the wrapper records that, and the job reads ``stopped``.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dsft.training.base_model import printed_with_hint
from dsft.ui import processes, runs
from dsft.ui.paths import shown

# A CLI command ended by a stop signal cleans up and exits 128 + the signal (SIGTERM, Ctrl-C).
STOPPED_EXIT_STATUSES = {str(128 + signal.SIGTERM), str(128 + signal.SIGINT)}
JOBS = "jobs"  # under runs.LAUNCHES
# Runs ARGS, then records their exit status in RC (written whole: a reader never sees half a number). A stop
# signals the whole group: the trap keeps the shell waiting while the command cleans up and ends (143), so the
# job reads `running` until its partial output is gone, then `stopped` with the command's status.
WRAPPER = 'trap : TERM; rc="$1"; shift; "$@"; status=$?; echo "$status" > "$rc.tmp" && mv "$rc.tmp" "$rc"'
LOG_LINES = 40
# One start at a time: a start checks that no job of its kind runs into its output, then starts one. Two
# requests at once (a double-click, two tabs) would both pass the check and write the same directory.
STARTING = threading.Lock()


@dataclass
class Job:
    id: str
    kind: str  # prepare | compare | export
    target: str  # the run (compare, export) or the prepared directory (prepare), root-relative
    out: str  # what it writes, root-relative
    started: str
    status: str  # running | finished | failed | stopped
    error: str | None = None
    log: str = ""
    stopped: str | None = None  # when a stop was asked

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def jobs_dir(root: Path) -> Path:
    return root.resolve() / runs.LAUNCHES / JOBS


def start_job(root: Path, kind: str, target: str, out: str, args: list[str],
              base_model_hint: str | None = None) -> str:
    """Start ``dsft ARGS`` detached (cwd = the root); returns the job id. ``base_model_hint``: what the dashboard
    says to do where the run's base model is not found, said in place of the command's own (its ``--base-model``
    flag) if the job fails so: the check before the start found the base, but it may go before the command looks."""
    directory = jobs_dir(root)
    directory.mkdir(parents=True, exist_ok=True)
    job_id = f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    log, rc = directory / f"{job_id}.log", directory / f"{job_id}.rc"
    command = [sys.executable, "-m", "dsft", *args]
    with log.open("ab") as handle:
        # A wide console: the CLI's tables and its one error line stay unwrapped in the log.
        process = subprocess.Popen(["sh", "-c", WRAPPER, "sh", str(rc), *command], stdin=subprocess.DEVNULL,
                                   stdout=handle, stderr=subprocess.STDOUT, start_new_session=True, cwd=str(root),
                                   env={**os.environ, "COLUMNS": "160"})
    # Reap it when it ends while the dashboard runs (after a dashboard restart, init does).
    threading.Thread(target=process.wait, daemon=True).start()
    record = {"id": job_id, "kind": kind, "target": target, "out": out, "command": command,
              **processes.record(process.pid), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
              **({"base_model_hint": base_model_hint} if base_model_hint else {})}
    _write_record(directory / f"{job_id}.json", record)
    return job_id


def _write_record(path: Path, record: dict[str, Any]) -> None:
    """Written whole (a reader never sees half a record)."""
    partial = path.with_name(f".{path.name}.tmp")
    partial.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    partial.replace(path)


def _error_line(log: str) -> str | None:
    """The CLI's ``error:`` message (with its problem lines), else the last line of the log."""
    lines = log.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith("error:"):
            return "\n".join([lines[i].removeprefix("error:").strip()] + lines[i + 1:]).strip()
    return lines[-1].strip() if lines else None


def _read_record(root: Path, job_id: str) -> dict[str, Any] | None:
    if "/" in job_id or "\\" in job_id or "\x00" in job_id or job_id.startswith("."):  # a name, never a path
        return None
    try:
        return json.loads((jobs_dir(root) / f"{job_id}.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def read_job(root: Path, job_id: str) -> Job | None:
    directory = jobs_dir(root)
    record = _read_record(root, job_id)
    if record is None:
        return None
    log_path, rc_path = directory / f"{job_id}.log", directory / f"{job_id}.rc"
    # As bytes: a text read would make each carriage return of a progress bar a line of its own.
    text = log_path.read_bytes().decode("utf-8", errors="replace") if log_path.is_file() else ""
    tail = shown(root, "\n".join(processes.terminal_lines(text)[-LOG_LINES:]))
    rc = rc_path.read_text().strip() if rc_path.is_file() else None
    stopped = record.get("stopped")
    if rc is None and processes.alive(record) is not False:  # None: on another host; its exit status will tell
        status, error = "running", None
    elif rc == "0":
        status, error = "finished", None
    elif stopped or rc in STOPPED_EXIT_STATUSES:  # stopped here, or by kill / Ctrl-C elsewhere
        status, error = "stopped", None
    elif rc is None:
        status, error = "failed", "the process ended without an exit status (killed?)"
    else:
        status, error = "failed", _error_line(text) or f"exit status {rc}"
        if record.get("base_model_hint"):
            error = printed_with_hint(error, record["base_model_hint"]) or error
    # The command got absolute paths: its message names them relative to the root, as the forms do.
    return Job(record["id"], record["kind"], record["target"], record["out"], record["started"], status,
               shown(root, error) if error else None, tail, stopped)


def stop_job(root: Path, job_id: str, wait_s: float = 5.0) -> Job | None:
    """SIGTERM to a running job's process group, recorded with the time; waits up to ``wait_s`` for it to
    end. None for an unknown job; :class:`dsft.ui.processes.CannotStop` when it has already ended."""
    record, job = _read_record(root, job_id), read_job(root, job_id)
    if record is None or job is None:
        return None
    if job.status != "running":
        raise processes.CannotStop(f"job {job_id}: already {job.status}; nothing to stop")
    processes.stop(record, f"job {job_id}", group=True)
    _write_record(jobs_dir(root) / f"{job_id}.json", {**record, "stopped": time.strftime("%Y-%m-%d %H:%M:%S")})
    deadline = time.monotonic() + wait_s
    while processes.alive(record) and time.monotonic() < deadline:
        time.sleep(0.05)
    return read_job(root, job_id)


def list_jobs(root: Path, target: str | None = None, kind: str | None = None) -> list[Job]:
    """Jobs, newest first; only those for ``target`` / of ``kind`` when given."""
    directory = jobs_dir(root)
    found = []
    for path in sorted(directory.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True) \
            if directory.is_dir() else []:
        job = read_job(root, path.stem)
        if job and (target is None or job.target == target) and (kind is None or job.kind == kind):
            found.append(job)
    found.sort(key=lambda j: j.started, reverse=True)  # a stop rewrites the record: its time is no start
    return found


def running_for(root: Path, target: str, kind: str) -> Job | None:
    return next((j for j in list_jobs(root, target, kind) if j.status == "running"), None)
