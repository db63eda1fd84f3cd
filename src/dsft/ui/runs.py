"""Reading run directories for the dashboard: the one place in ``dsft.ui`` that opens a run's files.

A run is a directory holding ``run.json`` (written by ``dsft train``) or a ``config.yaml`` that a run
started from this dashboard has not yet followed with ``run.json``. Runs are found at any depth up to
:data:`MAX_DEPTH` under the root (a sweep's trials sit one level down); a run's own sub-directories are
never searched for more runs.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dsft.errors import DsftError
from dsft.training.rundir import RunDir
from dsft.ui.paths import relative_name

MAX_DEPTH = 3
LAUNCHES = ".dsft-ui"  # under the root: what this dashboard started (pid, command, log)
METRIC_COLUMNS = ("loss", "eval_loss", "lr", "grad_norm", "tokens_per_s")
REPORT_SUFFIXES = (".md", ".html")
MAX_LISTED = 20  # rejects / removals shown per file


@dataclass
class RunSummary:
    name: str
    status: str
    method: str | None = None
    objective: str | None = None
    model: str | None = None
    step: int | None = None
    max_steps: int | None = None
    best_metric: dict[str, float] | None = None
    started: str | None = None
    template: str | None = None
    has_final: bool = False
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_run(path: Path) -> bool:
    return (path / "run.json").is_file() or (path / "config.yaml").is_file()


def find_runs(root: Path) -> list[Path]:
    """Every run directory under ``root`` (hidden directories and symlinks leaving the root skipped)."""
    base = root.resolve()
    found: list[Path] = []

    def walk(directory: Path, depth: int) -> None:
        try:
            children = sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError:
            return
        for child in children:
            resolved = child.resolve()
            if base not in resolved.parents:
                continue  # a symlink out of the root
            if is_run(child):
                found.append(child)
            elif depth < MAX_DEPTH:
                walk(child, depth + 1)

    walk(base, 1)
    return found


def read_info(run_dir: Path) -> dict[str, Any] | None:
    """``run.json``, or None when the run has not written it yet."""
    if not RunDir.is_run(run_dir):
        return None
    return RunDir(run_dir).info


def read_config(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "config.yaml"
    if not path.is_file():
        return {}
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise DsftError(f"{path}: unreadable YAML ({exc})") from exc


def config_text(run_dir: Path) -> str:
    path = run_dir / "config.yaml"
    return path.read_text(encoding="utf-8") if path.is_file() else ""


def read_metrics_from(run_dir: Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Complete ``metrics.jsonl`` rows from byte ``offset`` on, and the offset after the last complete line
    (a line still being written is left for the next read)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return [], offset
    with path.open("rb") as handle:
        handle.seek(offset)
        chunk = handle.read()
    end = chunk.rfind(b"\n") + 1
    rows = []
    for line in chunk[:end].splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a torn line from a crash: skip it, as read_metrics does
    return rows, offset + end


def launch_path(root: Path, name: str) -> Path:
    return root.resolve() / LAUNCHES / (name.replace("/", "__") + ".json")


def read_launch(root: Path, name: str) -> dict[str, Any] | None:
    path = launch_path(root, name)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def write_launch(root: Path, name: str, record: dict[str, Any]) -> None:
    path = launch_path(root, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


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
    except PermissionError:
        return True
    return True


def run_status(info: dict[str, Any] | None, launch: dict[str, Any] | None) -> str:
    """running / finished / failed / stopped early / stopped / starting / not started.

    ``run.json`` says what training last wrote; a run this dashboard launched is also checked against
    its process, so a run killed mid-way does not show as running for ever.
    """
    written = (info or {}).get("status")
    alive = bool(launch) and pid_alive(int(launch["pid"]))
    if written in ("finished", "failed"):
        return written
    if written == "stopped":
        return "stopped early"
    if launch and not alive:
        return "stopped" if launch.get("stop_requested") else "failed"
    if written == "running":
        return "running"
    return "starting" if alive else "not started"


def summarize(root: Path, run_dir: Path) -> RunSummary:
    name = relative_name(root, run_dir)
    notes: list[str] = []
    try:
        info = read_info(run_dir)
    except DsftError as exc:
        info, notes = None, [str(exc)]
    try:
        cfg = read_config(run_dir)
    except DsftError as exc:
        cfg, notes = {}, notes + [str(exc)]
    launch = read_launch(root, name)
    train = cfg.get("train") or {}
    rows, _ = read_metrics_from(run_dir)
    steps = [r["step"] for r in rows if "step" in r]
    info = info or {}
    started = (launch or {}).get("started")
    if not started and (run_dir / "config.yaml").is_file():
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime((run_dir / "config.yaml").stat().st_mtime))
    return RunSummary(
        name=name, status=run_status(info or None, launch),
        method=info.get("method") or train.get("method"),
        objective=info.get("objective") or train.get("objective"),
        model=info.get("model_name_or_path") or (cfg.get("model") or {}).get("name_or_path"),
        step=info.get("global_step") or (max(steps) if steps else None),
        max_steps=train.get("max_steps") if (train.get("max_steps") or 0) > 0 else None,
        best_metric=info.get("best_metric"), started=started, template=info.get("template"),
        has_final=RunDir(run_dir).final_path.is_dir(), notes=notes,
    )


def list_runs(root: Path) -> list[RunSummary]:
    return [summarize(root, run_dir) for run_dir in find_runs(root)]


def checkpoints(run_dir: Path) -> list[str]:
    """Checkpoint directory names, oldest step first."""
    return [p.name for p in RunDir(run_dir).checkpoints()]


def data_report(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / "data_report.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DsftError(f"{path}: unreadable ({exc})") from exc


def listed_records(run_dir: Path) -> dict[str, list[str]]:
    """The first :data:`MAX_LISTED` lines of the run's rejects and removal files, per file."""
    out: dict[str, list[str]] = {}
    for path in sorted((run_dir / "data").glob("*.jsonl")):
        if path.name.startswith(("rejects", "removed")):
            with path.open(encoding="utf-8", errors="replace") as handle:
                out[path.name] = [line.rstrip("\n") for _, line in zip(range(MAX_LISTED), handle)]
    return out


def reports(root: Path, run_dir: Path) -> list[str]:
    """Reports (Markdown/HTML) and export records inside the run, as root-relative paths to open."""
    skip = {"checkpoints", "final", "tb"}
    found = []
    for path in sorted(run_dir.rglob("*")):
        parts = path.relative_to(run_dir).parts
        if parts[0] in skip or len(parts) > 3 or not path.is_file():
            continue
        if path.suffix in REPORT_SUFFIXES or path.name == "export.json":
            found.append(relative_name(root, path))
    return found


def export_records(run_dir: Path) -> list[dict[str, Any]]:
    """``export.json`` files inside the run (what was exported, with its verification figures)."""
    records = []
    for path in sorted(run_dir.rglob("export.json")):
        try:
            records.append({"path": path.relative_to(run_dir).as_posix(),
                            **json.loads(path.read_text(encoding="utf-8"))})
        except (OSError, json.JSONDecodeError):
            continue
    return records
