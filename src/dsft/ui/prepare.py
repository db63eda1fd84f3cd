"""Data preparation from the dashboard: upload a file, then ``dsft data prepare`` on files under the root.

Data is reachable only inside the runs root: files already there, or files uploaded from the browser into
``ROOT/uploads/`` (a plain file name with a data suffix, never a path). The form's fields become the
``--set`` overrides of ``dsft data prepare``; they are checked by the CLI's own config loader and the input
files by the reader's own :func:`dsft.data.readers.expand_inputs` before anything starts, then the command
runs as a detached job (:mod:`dsft.ui.jobs`) writing ``ROOT/NAME/`` (splits, ``rejects.jsonl``,
``removed.jsonl``, ``data_report.*``). That directory is then a data choice of the new-run form
(``data.prepared_dir``) and a source of the mask view.
"""

from __future__ import annotations

import os
import re
import secrets
import typing
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from dsft.config import DataConfig, load_config
from dsft.data.readers import SUPPORTED_SUFFIXES, expand_inputs
from dsft.errors import DsftError
from dsft.ui import jobs, runs
from dsft.ui.launch import NAME, extra_lines, field_sets, is_prepared_dir, model_choice
from dsft.ui.paths import config_paths_inside, inside_root, relative_name

UPLOADS = "uploads"
UPLOAD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
MAX_UPLOAD_BYTES = 2 * 1024 ** 3
FORMATS: tuple[str, ...] = typing.get_args(DataConfig.model_fields["format"].annotation)
FIELDS = {  # form field -> config key
    "format": "data.format", "template": "template.name", "val_ratio": "data.val_ratio",
    "test_ratio": "data.test_ratio", "on_error": "data.on_error",
}


def prepare_args(root: Path, form: dict[str, Any]) -> tuple[str, list[str]]:
    """(output name, ``dsft`` arguments) for the form; raises :class:`DsftError` naming what is wrong."""
    name = str(form.get("name") or "").strip()
    if not NAME.match(name) or ".." in name.split("/"):
        raise DsftError(f"name {name!r}: letters, digits, . _ - (and up to two / for a sub-directory)")
    out = root.resolve() / name
    if out.exists():
        raise DsftError(f"name {name}: already exists under the runs root; choose a new name")
    given = form.get("files") or ""
    # The form's text (comma or line separated), or a JSON list from a script.
    names = [str(f) for f in given] if isinstance(given, list) else str(given).replace("\n", ",").split(",")
    files = [inside_root(root, f.strip(), field="files") for f in names if f.strip()]
    if not files:
        raise DsftError("files: name at least one data file (or directory) under the runs root")
    for path in files:
        if path == root.resolve() or runs.is_run(path) or is_prepared_dir(path):
            raise DsftError(f"files: {relative_name(root, path)} is the root, a run or a prepared directory; "
                            "name the raw data files")
    expand_inputs([str(p) for p in files])  # the reader's own refusals: unsupported types, empty directories
    sets = field_sets(form, FIELDS)
    model = str(form.get("model") or "").strip()
    tokenizer = []
    if model == "deepseek":
        tokenizer = ["--tokenizer", "deepseek"]  # the tokenizer package; nothing to download
    elif model:
        sets.append(f"model.name_or_path={model_choice(root, model)}")
    sets += extra_lines(form)
    cfg = load_config(None, sets)  # every wrong key named at once, before anything starts
    config_paths_inside(root, cfg, load_config(None, []))  # `key=value` lines included
    args = ["data", "prepare", *(str(p) for p in files), "--out", str(out), *tokenizer]
    for item in sets:
        args += ["--set", item]
    return name, args


def start_prepare(root: Path, form: dict[str, Any]) -> dict[str, str]:
    with jobs.STARTING:  # the check below and the start, one request at a time
        name, args = prepare_args(root, form)
        if jobs.running_for(root, name, "prepare"):
            raise DsftError(f"name {name}: a preparation into it is already running")
        return {"job": jobs.start_job(root, "prepare", name, name, args), "out": name, "url": f"/prepared/{name}"}


def upload_target(root: Path, filename: str) -> Path:
    """``ROOT/uploads/FILENAME`` for a new data file; the name is a plain file name with a data suffix."""
    if not UPLOAD_NAME.match(filename) or Path(filename).suffix.lower() not in SUPPORTED_SUFFIXES:
        raise DsftError(f"file name {filename!r}: a plain name (letters, digits, . _ -) ending in "
                        f"{', '.join(SUPPORTED_SUFFIXES)}")
    target = root.resolve() / UPLOADS / filename
    if target.exists():
        raise _already_uploaded(filename)
    return target


def _already_uploaded(filename: str) -> DsftError:
    return DsftError(f"{UPLOADS}/{filename}: already uploaded; rename the file or use the one there")


async def save_upload(root: Path, filename: str, body: AsyncIterator[bytes]) -> dict[str, Any]:
    """Stream the request body into ``ROOT/uploads/FILENAME`` (removed again if it is too big).

    Each upload writes its own partial file and links it into place, which never replaces a file: of two uploads of
    one name at once (a double-click), one lands and the other is refused as already uploaded. They shared one
    partial file, so the second truncated the first's and then failed to rename it (a 500)."""
    target = upload_target(root, filename)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{secrets.token_hex(4)}.partial")
    size = 0
    try:
        with partial.open("xb") as handle:
            async for chunk in body:
                size += len(chunk)
                if size > MAX_UPLOAD_BYTES:
                    raise DsftError(f"{filename}: larger than {MAX_UPLOAD_BYTES // 1024 ** 3} GiB; copy it under "
                                    "the runs root instead")
                handle.write(chunk)
        if size == 0:
            raise DsftError(f"{filename}: the file is empty")
        try:
            os.link(partial, target)
        except FileExistsError:
            raise _already_uploaded(filename) from None
    finally:
        partial.unlink(missing_ok=True)
    return {"path": relative_name(root, target), "bytes": size}


def prepared_view(root: Path, name: str) -> dict[str, Any]:
    """A prepared directory's report and listed rejects/removals, with the newest job that wrote it."""
    job = next(iter(jobs.list_jobs(root, name, "prepare")), None)
    path = inside_root(root, name, must_exist=job is None)
    report = runs.data_report(path) if is_prepared_dir(path) else None
    listed = runs.listed_records(root, path, "") if report else {}
    return {"name": name, "job": job.as_dict() if job else None, "report": report, "listed": listed}
