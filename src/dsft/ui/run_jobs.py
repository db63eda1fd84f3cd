"""Compare and export a finished run from the dashboard: ``dsft compare`` / ``dsft export`` as detached jobs.

The form's fields become the commands' own flags, checked here only for what the dashboard owns (the run,
paths inside the root, the output directory it picks, whole numbers); the command does the rest and says
what is wrong in one line, as in a terminal. One thing more is checked before a job starts: that the run's base
model is found (as the command would look for it), since the command's way out, its ``--base-model`` flag, is no
field of the form; the refusal says the dashboard's own way out instead. Outputs land inside the run (``RUN/compare``,
``RUN/export/FORMAT``, numbered when taken), where the run page shows them: the compare's metrics table
from ``comparison.json`` and each export's ``export.json`` with its verification figures.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from dsft.data.split import split_file
from dsft.errors import DsftError
from dsft.eval.compare import tuned_run_of
from dsft.eval.report import comparison_rows, fmt, fmt_delta, metric_label
from dsft.export.api import EXPORT_DTYPES
from dsft.export.source import check_source
from dsft.models.ollama_tags import ollama_name_problem
from dsft.training.base_model import BaseModelNotFound
from dsft.training.rundir import ADAPTER_METHODS, RunDir
from dsft.ui import jobs, runs
from dsft.ui.paths import inside_root, relative_name
from dsft.whole_numbers import whole_number

BUSY = ("running", "starting")


def export_formats(method: str | None) -> list[str]:
    """The formats the run page offers: hf always, the adapter for LoRA runs, gguf and ollama (a GGUF with its
    Modelfile) where ``gguf`` is installed."""
    found = ["hf"]
    if method in ADAPTER_METHODS:
        found.append("adapter")
    if importlib.util.find_spec("gguf") is not None:  # optional: only checking that it is installed
        found += ["gguf", "ollama"]
    return found


def finished_run(root: Path, name: str) -> tuple[Path, runs.RunSummary]:
    """The run directory of a run whose training has ended with ``final/`` written; else one message."""
    run_dir = inside_root(root, name, field="run")
    if not (run_dir.is_dir() and runs.is_run(run_dir)):
        raise DsftError(f"{name}: not a run directory (no run.json or config.yaml)")
    summary = runs.summarize(root, run_dir)
    if summary.status in BUSY:
        raise DsftError(f"{summary.name}: still {summary.status}; compare and export once it has finished")
    if summary.unusable:  # config.yaml only: `dsft compare` and `dsft export` would refuse it once started
        raise DsftError(summary.unusable)
    if not summary.has_final:
        raise DsftError(f"{summary.name}: no final/ (status {summary.status}); nothing to compare or export")
    return run_dir, summary


def _free_dir(parent: Path, stem: str) -> Path:
    """``parent/stem``, or ``stem-2``, ``stem-3``... when taken."""
    candidate, n = parent / stem, 1
    while candidate.exists():
        n += 1
        candidate = parent / f"{stem}-{n}"
    return candidate


# The compare form's whole-number fields: request field -> (the CLI's flag, the form's label, which refusals name).
COMPARE_NUMBERS = {"limit": ("--limit", "prompts"), "max_new_tokens": ("--max-new-tokens", "max new tokens")}


def _whole(form: dict[str, Any], field: str, label: str) -> int | None:
    """The field as a whole number >= 1; None when not given (the command's default: every prompt, its length)."""
    value = form.get(field)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    number = whole_number(value)  # as the CLI reads the flag (--limit, --max-new-tokens): not a full-width １２
    if number is None or number < 1:
        raise DsftError(f"{label}: a whole number >= 1, got {value!r}")
    return number


def default_eval_data(root: Path, run_dir: Path) -> str | None:
    """The run's held-out split (test, else validation) from its own data or its prepared directory (where
    that lies inside the root)."""
    places = [run_dir / "data"]
    try:
        prepared = RunDir(run_dir).config.data.prepared_dir if RunDir(run_dir).config_path.is_file() else None
    except DsftError:
        prepared = None
    if prepared and root.resolve() in Path(prepared).resolve().parents:
        places.append(Path(prepared))
    for place in places:
        for split in ("test", "val"):
            file = place / split_file(split)
            if file.is_file() and file.stat().st_size > 0:
                return str(file)
    return None


def shown_path(root: Path, path: str | None) -> str | None:
    """``path`` relative to the root where it lies inside it (as requests name it), else as is."""
    if path is None:
        return None
    try:
        return relative_name(root, Path(path))
    except ValueError:
        return path


def start_compare(root: Path, form: dict[str, Any]) -> dict[str, str]:
    """``dsft compare --tuned RUN --data D --out RUN/compare[-N]`` detached: base vs tuned on the same prompts."""
    with jobs.STARTING:
        return _start_compare(root, form)


def _start_compare(root: Path, form: dict[str, Any]) -> dict[str, str]:
    run_dir, summary = finished_run(root, str(form.get("run") or ""))
    flags = []
    for field, (flag, label) in COMPARE_NUMBERS.items():
        value = _whole(form, field, label)
        if value is not None:
            flags += [flag, str(value)]
    data_field = str(form.get("data") or "").strip()
    data = str(inside_root(root, data_field, field="data")) if data_field else default_eval_data(root, run_dir)
    if data is None:
        raise DsftError(f"data: {summary.name} has no test or validation split; name an eval file under the root")
    if Path(data).is_dir():
        raise DsftError(f"data: {data_field} is a directory; name one eval file")
    hint = _base_model_hint(f"compare from a terminal: dsft compare --tuned {run_dir} --base-model PATH_OR_ID "
                            "--data FILE --out DIR")
    try:  # the base side is the run's base model, whatever the method, as `dsft compare` finds it
        tuned_run_of(run_dir).check_base_model()
    except BaseModelNotFound as exc:
        raise exc.with_hint(hint) from None
    out = _free_dir(run_dir, "compare")
    args = ["compare", "--tuned", str(run_dir), "--data", data, "--out", str(out), *flags]
    return _start(root, "compare", summary.name, out, args, hint)


def start_export(root: Path, form: dict[str, Any]) -> dict[str, str]:
    """``dsft export RUN --out RUN/export/FORMAT[-N] --format F [--dtype D] [--name N] [--no-verify]`` detached;
    verified unless the form's ``verify`` is off; ``name`` (ollama) is the Ollama model name."""
    with jobs.STARTING:
        return _start_export(root, form)


def _start_export(root: Path, form: dict[str, Any]) -> dict[str, str]:
    run_dir, summary = finished_run(root, str(form.get("run") or ""))
    offered = export_formats(summary.method)
    fmt_name = str(form.get("format") or "hf")
    if fmt_name not in offered:
        raise DsftError(f"format {fmt_name}: choose one of {', '.join(offered)}")
    dtype = str(form.get("dtype") or "auto")
    if dtype not in EXPORT_DTYPES:
        raise DsftError(f"dtype {dtype}: choose one of {', '.join(EXPORT_DTYPES)}")
    name = str(form.get("name") or "").strip()
    if name and fmt_name != "ollama":
        raise DsftError(f"name {name}: the Ollama model name; only for the ollama format")
    if name and (problem := ollama_name_problem(name, flag="name")):  # what dsft export --name takes
        raise DsftError(problem)
    hint = _base_model_hint(f"export from a terminal: dsft export {run_dir} --base-model PATH_OR_ID --out DIR "
                            f"--format {fmt_name}")
    try:  # a LoRA run's adapter is merged into (or exported for) its base model: found, as `dsft export` checks
        check_source(run_dir)
    except BaseModelNotFound as exc:
        raise exc.with_hint(hint) from None
    out = _free_dir(run_dir / "export", fmt_name if dtype == "auto" else f"{fmt_name}-{dtype}")
    args = ["export", str(run_dir), "--out", str(out), "--format", fmt_name]
    if dtype != "auto":
        args += ["--dtype", dtype]
    if name:
        args += ["--name", name]  # else the CLI names it after the run
    if str(form.get("verify", "on")).lower() in ("", "off", "false", "0"):
        args.append("--no-verify")  # e.g. gguf where llama-cpp-python, which verifies it, is missing
    return _start(root, "export", summary.name, out, args, hint)


def _base_model_hint(terminal: str) -> str:
    """What to do where a run's base model is not found, in the dashboard's words: the command's hint names its
    --base-model flag, a field the form has none of (dsft.cli.base_model; the chat page says its own likewise)."""
    return f"put the base model back where the first path tried says, then start it again here; or {terminal}"


def _start(root: Path, kind: str, run: str, out: Path, args: list[str], base_model_hint: str) -> dict[str, str]:
    busy = jobs.running_for(root, run, kind)
    if busy:
        raise DsftError(f"{run}: {'an' if kind[0] in 'aeiou' else 'a'} {kind} is already running ({busy.id}); wait "
                        "for it to end")
    # The hint again if the base model goes between the check and the command's own look (the job's error).
    job = jobs.start_job(root, kind, run, relative_name(root, out), args, base_model_hint)
    return {"job": job, "out": relative_name(root, out)}


def comparisons(root: Path, run_dir: Path) -> list[dict[str, Any]]:
    """Each ``comparison.json`` in the run: where, the data, the prompt count and the metric rows."""
    found = []
    for path in sorted(run_dir.glob("*/comparison.json")):
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        rows = [(metric_label(k), fmt(b), fmt(t), fmt_delta(d)) for k, b, t, d in
                comparison_rows(result.get("base") or {}, result.get("tuned") or {})]
        found.append({"dir": relative_name(root, path.parent), "data": shown_path(root, result.get("data")),
                      "count": (result.get("tuned") or {}).get("count"), "rows": rows,
                      "report": relative_name(root, path.parent / "report.html")
                      if (path.parent / "report.html").is_file() else None})
    return found
