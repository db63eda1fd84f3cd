"""Run directories for the dashboard, read through :class:`dsft.training.rundir.RunDir` (the one owner of
``run.json``, ``config.yaml``, checkpoints and ``final/``); this module adds what only the dashboard needs:
finding runs under a root, reading ``metrics.jsonl`` incrementally, the data report, reports and exports,
and the records of runs the dashboard launched.

A run is a directory holding ``run.json`` (written by ``dsft train``) or a ``config.yaml`` that a run
started from this dashboard has not yet followed with ``run.json``. The latter is listed (its status, its launch's
log) but is no run the commands open (:meth:`RunDir.find` takes only a directory holding ``run.json``): it is
``unusable``, saying why, and chat, compare and export refuse it with that reason (:func:`check_usable`). Runs are
found at any depth up to
:data:`MAX_DEPTH` under the root (a sweep's trials sit one level down); a run's own sub-directories are
never searched for more runs.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dsft.config import EvalConfig, dump_config
from dsft.errors import DsftError
from dsft.sweep.report import best_in_rows
from dsft.training.rundir import INTERRUPTED, NOT_STARTED, RunDir
from dsft.ui import processes
from dsft.ui.paths import relative_name, shown

MAX_DEPTH = 3
LAUNCHES = ".dsft-ui"  # under the root: what this dashboard started (pid, command, log)
METRIC_COLUMNS = ("loss", "eval_loss", "lr", "grad_norm", "tokens_per_s")
REPORT_SUFFIXES = (".md", ".html")
MAX_LISTED = 20  # rejects / removals shown per file
MAX_MODELFILE = 20_000  # characters of an Ollama export's Modelfile shown


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
    has_final: bool = False  # a final/ that chat, compare and export can open (never that of an unusable run)
    notes: list[str] = field(default_factory=list)
    unusable: str | None = None  # why chat, compare and export refuse it (:func:`unusable_reason`); None: they do not

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_run(path: Path) -> bool:
    return RunDir.is_run(path) or RunDir(path).config_path.is_file()


def unusable_reason(run_dir: Path) -> str | None:
    """Why the commands cannot open ``run_dir`` (None: they can). A directory holding only config.yaml (a run this
    dashboard started that has not written run.json yet, or one that stopped during setup) is no run for
    :meth:`RunDir.find`, which ``dsft chat``, ``dsft compare`` and ``dsft export`` open a run with."""
    if RunDir.find(run_dir) is not None:
        return None
    return (f"{run_dir}: no run.json, only {RunDir(run_dir).config_path.name} (training has not started here, or "
            "stopped during setup); nothing to chat with, compare or export")


def check_usable(run_dir: Path) -> None:
    """Raise :func:`unusable_reason` as the error, where there is one."""
    reason = unusable_reason(run_dir)
    if reason is not None:
        raise DsftError(reason)


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
    """The resolved config as plain data ({} before the run has written one)."""
    run = RunDir(run_dir)
    return run.config.model_dump(mode="json") if run.config_path.is_file() else {}


def config_text(run_dir: Path) -> str:
    run = RunDir(run_dir)
    try:
        return dump_config(run.config) if run.config_path.is_file() else ""
    except DsftError as exc:  # a config this version cannot load: say why instead of failing the page
        return f"# {exc}"


def read_metrics_from(run_dir: Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Complete ``metrics.jsonl`` rows from byte ``offset`` on, and the offset after the last complete line
    (a line still being written is left for the next read). An offset past the end (a file written anew since, or
    a made-up event id) reads from the start."""
    path = RunDir(run_dir).metrics_path
    if not path.is_file():
        return [], offset
    if offset > path.stat().st_size:
        offset = 0
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


def run_status(written: str, launch: dict[str, Any] | None) -> str:
    """running / finished / stalled / failed / stopped early / stopped / interrupted / starting / not started.

    ``run.json`` says what training last wrote; a run this dashboard launched is also checked against
    its process (its pid and start time), so a run killed mid-way does not show as running for ever.
    """
    alive = bool(launch) and processes.alive(launch) is not False  # None: on another host, cannot be told
    if written in ("finished", "stalled", "failed", INTERRUPTED):  # stalled: finished, but the gradients stayed at 0
        return written
    if written == "stopped":
        return "stopped early"
    if launch and not alive:
        return "stopped" if launch.get("stop_requested") else "failed"
    if written == "running":
        return "running"
    return "starting" if alive else NOT_STARTED


def live_status(root: Path, run_dir: Path) -> str:
    """:func:`run_status` of one run, for polling (reads only run.json and the launch record)."""
    try:
        written = RunDir(run_dir).status
    except DsftError:
        written = "unknown"
    return run_status(written, read_launch(root, relative_name(root, run_dir)))


def best_so_far(evaluation: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, float] | None:
    """``{key: value}``: the best evaluation of the run's ``eval.metric`` (``evaluation``: its config's ``eval:``
    section) among its metrics ``rows``, steps > 0 (step 0 measures the base model), read as a sweep reads a trial's.
    ``run.json`` gets the best only when the run ends; a run being watched has these rows from its first
    evaluation on."""
    settings = EvalConfig.model_validate(evaluation)
    key = settings.metric_key()
    value, _, _ = best_in_rows(rows, key, settings.higher_is_better())
    return {key: value} if value is not None else None


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
    run = RunDir(run_dir)
    try:
        written = run.status
    except DsftError as exc:
        written, notes = "unknown", notes + [str(exc)]
    train = cfg.get("train") or {}
    rows, _ = read_metrics_from(run_dir)
    steps = [r["step"] for r in rows if "step" in r]
    info = info or {}
    started = (launch or {}).get("started")
    if not started and run.config_path.is_file():
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.config_path.stat().st_mtime))
    unusable = unusable_reason(run_dir)
    try:
        has_final = unusable is None and run.final_path.is_dir()
    except DsftError:
        has_final = False
    # A model directory under the root is recorded absolute (the dashboard writes it so): shown relative to the root.
    model = info.get("model_name_or_path") or (cfg.get("model") or {}).get("name_or_path")
    return RunSummary(
        name=name, status=run_status(written, launch),
        method=info.get("method") or train.get("method"),
        objective=info.get("objective") or train.get("objective"),
        model=shown(root, model) if model else None,
        step=info.get("global_step") or (max(steps) if steps else None),
        max_steps=train.get("max_steps") if (train.get("max_steps") or 0) > 0 else None,
        # A live run's run.json has no best yet (or a resumed run's old one): the best of its evaluations so far.
        best_metric=(info.get("best_metric") if written != "running" else None)
        or best_so_far(cfg.get("eval") or {}, rows),
        started=started, template=info.get("template"),
        has_final=has_final, notes=[shown(root, note) for note in notes],
        unusable=shown(root, unusable) if unusable else None,
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


def listed_records(root: Path, run_dir: Path, sub: str = "data") -> dict[str, list[str]]:
    """The first :data:`MAX_LISTED` lines of the rejects and removal files in ``run_dir/sub``, per file, their
    paths under ``root`` relative to it (:func:`dsft.ui.paths.shown`)."""
    out: dict[str, list[str]] = {}
    for path in sorted((run_dir / sub).glob("*.jsonl")):
        if path.name.startswith(("rejects", "removed")):
            with path.open(encoding="utf-8", errors="replace") as handle:
                out[path.name] = [shown(root, line.rstrip("\n")) for _, line in zip(range(MAX_LISTED), handle)]
    return out


def run_records(root: Path, run_dir: Path) -> dict[str, list[str]]:
    """:func:`listed_records` of the run's own ``data/``, else of the prepared directory it trained on
    (``data.prepared_dir``, as the dashboard writes it: absolute) where that lies inside the root."""
    listed = listed_records(root, run_dir)
    prepared = (read_config(run_dir).get("data") or {}).get("prepared_dir") if not listed else None
    if prepared and Path(prepared).is_absolute():  # a relative one was relative to a working directory unknown here
        path = Path(prepared).resolve()
        if root.resolve() in path.parents and path.is_dir():
            return listed_records(root, path, "")
    return listed


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
    """``export.json`` files inside the run (what was exported, with its verification figures); an Ollama
    export's also with its directory and its Modelfile's text."""
    records = []
    for path in sorted(run_dir.rglob("export.json")):
        try:
            record = {"path": path.relative_to(run_dir).as_posix(), **json.loads(path.read_text(encoding="utf-8"))}
        except (OSError, json.JSONDecodeError):
            continue
        ollama = record.get("ollama")
        if isinstance(ollama, dict):
            where = path.parent.resolve()
            modelfile = (where / Path(str(ollama.get("modelfile", ""))).name).resolve()  # a file there, no symlink out
            record["dir"] = str(where)
            record["modelfile_text"] = (modelfile.read_text(encoding="utf-8", errors="replace")[:MAX_MODELFILE]
                                        if modelfile.parent == where and modelfile.is_file() else "")
        records.append(record)
    return records
