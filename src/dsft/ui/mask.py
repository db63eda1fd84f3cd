"""The mask view: one conversation rendered with a chat template, token by token, supervised or not.

The same steps as ``dsft data inspect`` (record picking from :mod:`dsft.data.inspect_source`, the
template's ``render_train``, :func:`dsft.templates.inspect.token_pieces`), for a source inside the runs
root: a data file, a prepared directory, or a run (which renders with its own model, template and masking).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from dsft.config import load_config
from dsft.data.inspect_source import check_control_tokens, pick_conversation, prepared_defaults, prepared_tokenizer
from dsft.data.prepared_folder import preparation_state
from dsft.data.split import split_file
from dsft.errors import DsftError
from dsft.models.loading import load_tokenizer
from dsft.models.resolve import resolve_model
from dsft.models.tiny import TINY_PRESETS
from dsft.models.tokenizers import load_deepseek_tokenizer
from dsft.templates import TEMPLATE_CHOICES, detect_template, get_template
from dsft.templates.inspect import token_counts, token_pieces
from dsft.ui import runs
from dsft.ui.paths import inside_root, relative_name

_TOKENIZERS: dict[str, Any] = {}
_LOCK = threading.Lock()
SKIP_FILES = ("metrics.jsonl", "rejects", "removed")


def _tokenizer(spec: str, root: Path, trusted: bool) -> Any:
    """``deepseek`` (the tokenizer package), a tiny preset, or a model directory: inside the root when the
    request named it; the run's own model (``trusted``) may live anywhere."""
    with _LOCK:
        if spec in _TOKENIZERS:
            return _TOKENIZERS[spec]
        if spec == "deepseek":
            loaded = load_deepseek_tokenizer()
        elif spec in TINY_PRESETS or trusted:
            loaded = load_tokenizer(resolve_model(spec))
        else:
            directory = inside_root(root, spec, field="tokenizer")
            if not (directory / "tokenizer_config.json").is_file() and not (directory / "tokenizer.json").is_file():
                raise DsftError(f"tokenizer {spec}: give 'deepseek', a tiny preset ({', '.join(TINY_PRESETS)}) "
                                "or a model directory under the runs root")
            loaded = load_tokenizer(directory)
        _TOKENIZERS[spec] = loaded
        return loaded


def _run_sets(source: Path) -> list[str]:
    """A run renders as it trained: its model, template and masking."""
    cfg = runs.read_config(source)
    model, template = cfg.get("model") or {}, cfg.get("template") or {}
    sets = [f"model.name_or_path={model['name_or_path']}"] if model.get("name_or_path") else []
    sets += [f"template.{key}={template[key]}" for key in ("name", "masking") if template.get(key)]
    return sets


def mask_view(root: Path, source: str, index: int = 0, template: str | None = None, tokenizer: str | None = None,
              masking: str | None = None, thinking: bool | None = None) -> dict[str, Any]:
    """Tokens of record ``index`` of ``source`` with their supervision, and the counts."""
    if not source.strip():
        raise DsftError("source: missing; name a data file, prepared directory or run under the runs root "
                        "(e.g. uploads/train.jsonl)")
    path = inside_root(root, source, field="source")
    sets = _run_sets(path) if path.is_dir() and runs.is_run(path) else prepared_defaults(path)
    if masking:
        sets.append(f"template.masking={masking}")
    cfg = load_config(None, sets)
    conversation = pick_conversation(path, index, cfg, field="record")
    name = template or cfg.template.name
    # The tokenizer the prepared directory's counts came from; with template auto the family is detected from
    # the model's own tokenizer (the tokenizer package carries no chat template).
    if not tokenizer and name != "auto" and not runs.is_run(path) and prepared_tokenizer(path) == "deepseek":
        tokenizer = "deepseek"
    loaded = _tokenizer(tokenizer, root, trusted=False) if tokenizer else _tokenizer(cfg.model.name_or_path, root, True)
    if name not in TEMPLATE_CHOICES:
        raise DsftError(f"template {name}: choose one of {', '.join(TEMPLATE_CHOICES)}")
    check_control_tokens(conversation, loaded, index, field="record")
    if name == "auto":
        name = detect_template(loaded)
    rendered = get_template(name, loaded).render_train(conversation, loaded, cfg.template.masking, thinking)
    return {"template": name, "masking": cfg.template.masking, "record": conversation.meta.get("origin", index),
            "counts": token_counts(rendered),
            "tokens": [{"text": t, "supervised": s, "special": sp} for t, s, sp in token_pieces(rendered, loaded)]}


def mask_sources(root: Path, limit: int = 200) -> list[str]:
    """What the mask view can open: runs, prepared directories and data files under the root."""
    found = [relative_name(root, run) for run in runs.find_runs(root)]
    base = root.resolve()
    for path in sorted(base.rglob("*")):
        if len(found) >= limit:
            break
        rel = path.relative_to(base)
        if base not in path.resolve().parents:
            continue  # through a symlink out of the root
        if any(part.startswith(".") or part in ("checkpoints", "final", "tb") for part in rel.parts) or len(rel.parts) > 4:
            continue
        if path.is_dir() and preparation_state(path) == "finished" and (path / split_file("train")).is_file():
            found.append(rel.as_posix())
        elif path.is_file() and path.suffix in (".jsonl", ".json", ".csv", ".parquet") and \
                not path.name.startswith(SKIP_FILES) and path.name not in ("run.json", "data_report.json",
                                                                           "export.json", "trainer_state.json"):
            found.append(rel.as_posix())
    return sorted(set(found))


def data_files(root: Path) -> list[str]:
    """The data files among :func:`mask_sources` (no runs, no prepared directories)."""
    base = root.resolve()
    return [s for s in mask_sources(root) if (base / s).is_file()]
