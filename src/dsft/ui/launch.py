"""New runs from the dashboard: a form's fields -> a validated config -> a detached ``dsft train`` process.

The config is built from ``--set`` style overrides and loaded by :func:`dsft.config.load_config` (the CLI's
loader, one error listing every problem), its relative paths made absolute under the runs root (where
``dsft train`` runs: :func:`dsft.ui.paths.paths_under_root`), then by the data-input check and the preflight
``dsft train`` runs before it reads data
(:func:`dsft.plan.preflight.preflight_problems`: settings that contradict each other or this machine) and its
refusal of what needs a launcher (:func:`dsft.training.preflight.unlaunched_problems`), all before anything
starts: a config the started ``dsft train`` would refuse is refused in the form, its problems listed there. The run directory gets the resolved ``config.yaml`` and ``dsft train`` is started on it in a new
session (its own process group), so it outlives the dashboard; its pid and log live under the root's
``.dsft-ui/``. Stop sends SIGTERM, which training answers by finishing the step, writing a checkpoint and
ending as ``stopped`` (:mod:`dsft.training.stop`).
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from dsft.config import dump_config, load_config
from dsft.config.loader import parse_override
from dsft.data.input_checks import input_problems
from dsft.data.prepared_folder import preparation_state
from dsft.data.split import split_file
from dsft.errors import ConfigError, DsftError
from dsft.models.gguf_source import OLLAMA_PREFIX, ollama_models, resolve_ollama
from dsft.models.ollama_tags import is_ollama_name, ollama_tag_problem
from dsft.models.tiny import TINY_PRESETS
from dsft.plan.preflight import preflight_problems
from dsft.training.environment import Environment
from dsft.training.preflight import unlaunched_problems
from dsft.ui import processes, runs
from dsft.ui.paths import config_paths_inside, inside_root, paths_under_root, relative_name, shown

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}(/[A-Za-z0-9][A-Za-z0-9._-]{0,63}){0,2}$")
FIELDS = {  # form field -> config key
    "method": "train.method", "max_steps": "train.max_steps", "lr": "train.lr", "max_seq_len": "train.max_seq_len",
    "micro_batch_size": "train.micro_batch_size", "lora_r": "lora.r", "val_ratio": "data.val_ratio",
    "save_steps": "train.save_steps", "template": "template.name",
}


def model_choice(root: Path, value: str) -> str:
    """What ``model.name_or_path`` gets for the form's model: a tiny preset, ``ollama:NAME[:TAG]`` (found in the
    local Ollama store), or a model directory (config.json) or ``.gguf`` file under the root (absolute path)."""
    if value in TINY_PRESETS:
        return value
    if not value:
        raise DsftError(f"model: empty; give a tiny preset ({', '.join(TINY_PRESETS)}), ollama:NAME[:TAG], a .gguf "
                        "file or a model directory (with config.json) under the runs root")
    if value.startswith(OLLAMA_PREFIX):
        name = value[len(OLLAMA_PREFIX):]
        if not is_ollama_name(name):  # Ollama's own rule, as dsft export --name
            raise DsftError(f"model {value}: not an Ollama name (ollama:NAME[:TAG])")
        try:
            resolve_ollama(name)  # in the store, with its model blob: else one message naming the fix
        except DsftError as exc:  # named by the form's field first, as every other refusal of it
            raise DsftError(f"model {exc}") from None
        return value
    if problem := ollama_tag_problem(value):  # deepseek-r1:32b (the form takes no path with a ':' in its first part)
        raise DsftError(f"model {value}: {problem}")
    path = inside_root(root, value, field="model")
    if path.is_file() and path.suffix.lower() == ".gguf":
        return str(path)
    if not (path / "config.json").is_file():
        raise DsftError(f"model {value}: give a tiny preset ({', '.join(TINY_PRESETS)}), ollama:NAME[:TAG], a .gguf "
                        "file or a model directory (with config.json) under the runs root")
    return str(path)


def model_options(root: Path, limit: int = 200) -> list[str]:
    """The form's model suggestions: tiny presets, ``.gguf`` files under the root, the local Ollama models."""
    base = root.resolve()
    gguf = [relative_name(base, p) for p in sorted(base.rglob("*.gguf"))[:limit]
            if base in p.resolve().parents and not any(part.startswith(".") for part in p.relative_to(base).parts)]
    return [*TINY_PRESETS, *gguf, *(OLLAMA_PREFIX + name for name in ollama_models())]


def _data_sets(root: Path, value: str) -> list[str]:
    """``data.train`` for files and directories under the root, or ``data.prepared_dir`` for one directory
    written by ``dsft data prepare`` (trained as it was prepared)."""
    paths = [inside_root(root, d.strip(), field="data") for d in value.replace("\n", ",").split(",") if d.strip()]
    if not paths:
        raise DsftError("data: name at least one data file (or directory) under the runs root")
    prepared = [p for p in paths if is_prepared_dir(p)]
    if prepared and len(paths) > 1:
        raise DsftError(f"data: {relative_name(root, prepared[0])} is a prepared directory; train on it alone "
                        "(or list raw files only)")
    if prepared:
        if (prepared[0] / split_file("train")).stat().st_size == 0:
            raise DsftError(f"data: {relative_name(root, prepared[0])} has no training records (every record was "
                            "rejected or removed; see its data report)")
        return [f"data.prepared_dir={prepared[0]}"]
    return [f"data.train=[{','.join(str(p) for p in paths)}]"]


def field_sets(form: dict[str, Any], fields: dict[str, str]) -> list[str]:
    """``key=value`` for each of the form's ``fields`` (form field -> config key) that the request has. One left empty
    is passed on as such, for the config loader to name with the other problems (``train.lr: Input should be a valid
    number, ... got ''``): it used to be dropped, and the run started on the config's default without a word. A
    field the request leaves out (a script) keeps the default."""
    return [f"{key}={str(form[field]).strip()}" for field, key in fields.items() if form.get(field) is not None]


def extra_lines(form: dict[str, Any]) -> list[str]:
    """The form's ``more keys`` lines (``key=value`` each); a malformed one is refused naming the field and the line,
    where the CLI's own message would name ``--set``, a flag the form does not have."""
    lines = [line.strip() for line in str(form.get("extra") or "").splitlines()]
    for number, line in enumerate(lines, 1):
        if line:
            try:
                parse_override(line)
            except ConfigError as exc:
                raise ConfigError(str(exc).replace("--set ", f"more keys, line {number}: ", 1)) from None
    return [line for line in lines if line]


def is_prepared_dir(path: Path) -> bool:
    """A directory written by ``dsft data prepare`` (its train split and its finished report, not the placeholder of one under way)."""
    return path.is_dir() and preparation_state(path) == "finished" and (path / split_file("train")).is_file()


def _run_name(root: Path, form: dict[str, Any]) -> str:
    name = str(form.get("name") or "").strip()
    if not NAME.match(name) or ".." in name.split("/"):
        raise DsftError(f"name {name!r}: letters, digits, . _ - (and up to two / for a sub-directory)")
    if (root / name).exists():
        raise DsftError(f"name {name}: {(root / name).name} already exists under the runs root; choose a new name")
    return name


def build_config(root: Path, form: dict[str, Any]) -> tuple[str, Any]:
    """(run name, validated config) from the form; raises :class:`DsftError` naming every wrong field."""
    # The name, model and data, each checked: all that is wrong with them said at once (an empty form named only
    # its name, then its model, then its data, one send each). One alone keeps its own error (404 outside the root).
    errors: list[DsftError] = []
    checked: list[Any] = []
    for check, value in ((_run_name, form), (model_choice, str(form.get("model") or "").strip()),
                         (_data_sets, str(form.get("data") or ""))):
        try:
            checked.append(check(root, value))
        except DsftError as exc:
            errors.append(exc)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise DsftError(f"{len(errors)} problem(s) with this form", [str(exc) for exc in errors])
    name, model, data = checked
    # A prepared directory keeps the split it was prepared with: the form's validation share does not apply.
    fields = {f: k for f, k in FIELDS.items() if not (f == "val_ratio" and data[0].startswith("data.prepared_dir"))}
    sets = [f"model.name_or_path={model}", *data]
    sets += field_sets(form, fields)
    sets += extra_lines(form)
    cfg = load_config(None, sets)
    config_paths_inside(root, cfg, load_config(None, []))  # `key=value` lines included
    cfg = paths_under_root(root, cfg)  # `dsft train` runs in the root: a relative path is checked (and kept) there
    # What the started `dsft train` checks before anything loads, on the machine (and environment) it inherits.
    env = Environment.this_machine()
    problems = input_problems(cfg) + preflight_problems(cfg, env) + unlaunched_problems(cfg, env)
    if problems:
        raise ConfigError(f"{len(problems)} problem(s) with this config on this machine", problems)
    return name, cfg


def start_run(root: Path, form: dict[str, Any]) -> str:
    """Validate, write ``NAME/config.yaml``, start ``dsft train`` detached; returns the run name."""
    name, cfg = build_config(root, form)
    run_dir = root / name
    try:
        run_dir.mkdir(parents=True)
    except FileExistsError:  # taken since the check: the same form sent twice (a double-click, two tabs)
        raise DsftError(f"name {name}: {run_dir.name} already exists under the runs root; choose a new name") from None
    config = run_dir / "config.yaml"
    config.write_text(dump_config(cfg), encoding="utf-8")
    log = runs.launch_path(root, name).with_suffix(".log")
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "dsft", "train", str(config), "--out", str(run_dir)]
    with log.open("ab") as out:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True, cwd=str(root))
    # Reap it when it ends while the dashboard runs (after a dashboard restart, init does).
    threading.Thread(target=process.wait, daemon=True).start()
    runs.write_launch(root, name, {**processes.record(process.pid), "command": command, "log": str(log),
                                   "started": time.strftime("%Y-%m-%d %H:%M:%S")})
    return name


def stop_run(root: Path, name: str) -> dict[str, Any]:
    """SIGTERM to a run this dashboard started (training then checkpoints and stops); :class:`CannotStop`
    when its process has ended, or when a stop was already asked for while it still runs (a second SIGTERM
    would stop training at once, without its checkpoint)."""
    launch = runs.read_launch(root, name)
    if launch is None:
        raise DsftError(f"{name}: not started from this dashboard; stop it where it runs (kill -TERM PID)")
    if launch.get("stop_requested") and processes.alive(launch) is not False:
        # Training takes a second SIGTERM as "stop at once": no checkpoint, no final/. Never sent from here.
        raise processes.CannotStop(f"{name}: already asked to stop at {launch['stop_requested']}; training "
                                   "stops after the current step, with a checkpoint")
    # The training process alone: it stops its ranks and data workers itself, after the step.
    processes.stop(launch, name, group=False)
    runs.write_launch(root, name, {**launch, "stop_requested": time.strftime("%Y-%m-%d %H:%M:%S")})
    return {"stopping": name}


def log_tail(root: Path, name: str, lines: int = 40) -> str:
    launch = runs.read_launch(root, name)
    path = Path(launch["log"]) if launch else None
    if path is None or not path.is_file():
        return ""
    text = path.read_bytes().decode("utf-8", errors="replace")  # carriage returns kept (read_text makes them lines)
    return shown(root, "\n".join(processes.terminal_lines(text)[-lines:]))
