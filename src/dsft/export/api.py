"""One entry point for every export format (what ``dsft export`` calls).

>>> export("runs/r1-lora", "gguf", "exports/r1-q8", dtype="q8_0")  # doctest: +SKIP
ExportResult(format='gguf', out_dir=PosixPath('exports/r1-q8'), ...)
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dsft.disk import check_fresh_output_dir, contents, partial_output_removed, remove_new_files, tree_bytes
from dsft.export.gguf_export import export_gguf
from dsft.export.hf import export_adapter, export_hf, require_adapter
from dsft.export.ollama import export_ollama
# EXPORT_DTYPES / EXPORT_FORMATS are re-exported for callers that list the choices (the dashboard).
from dsft.export.options import EXPORT_DTYPES, EXPORT_FORMATS, check_export_options  # noqa: F401
from dsft.export.source import ExportSource, resolve_source
from dsft.export.bounds import LogitBound, LogitComparison, parse_tolerance
from dsft.export.verify import VerificationError


@dataclass(frozen=True)
class ExportResult:
    """Where the export went and, when verified, the measured agreement with the trained model."""

    format: str
    out_dir: Path
    source: ExportSource
    comparison: LogitComparison | None
    files: tuple[str, ...]


# What an export writes into --out (any format): with --overwrite these are the earlier export's files, set
# aside before the new one is written. Left in place, an earlier single model.safetensors next to a new
# sharded export (or old shards of another count) would be what transformers loads.
_EXPORT_SUFFIXES = (".safetensors", ".gguf")
_EXPORT_NAMES = frozenset({
    "model.safetensors.index.json", "config.json", "generation_config.json", "export.json", "tokenizer.json",
    "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "tokenizer.model",
    "chat_template.jinja", "adapter_config.json", "Modelfile",
})
_SET_ASIDE = ".dsft-previous-export"


def _set_aside_previous_export(out: Path) -> Path | None:
    """Move the files an earlier export left in ``out`` into ``out/.dsft-previous-export``; None: none."""
    if not out.is_dir():
        return None
    earlier = [p for p in out.iterdir() if p.is_file() and (p.name in _EXPORT_NAMES or p.name.endswith(_EXPORT_SUFFIXES))]
    if not earlier:
        return None
    aside = out / _SET_ASIDE
    shutil.rmtree(aside, ignore_errors=True)
    aside.mkdir()
    for path in earlier:
        path.rename(aside / path.name)
    return aside


def _restore_previous_export(out: Path, aside: Path) -> None:
    for path in aside.iterdir():
        path.replace(out / path.name)
    aside.rmdir()


def export(run_or_model: str | Path, fmt: str, out_dir: str | Path, dtype: str = "auto", verify: bool = True,
           tolerance: str | float | LogitBound | None = None, overwrite: bool = False, max_shard_size: str = "5GB",
           name: str | None = None, echo: Callable[[str], None] = print,
           base_model: str | Path | None = None) -> ExportResult:
    """Export a run directory (or a model) as ``hf``, ``adapter``, ``gguf`` or ``ollama`` into ``out_dir``.

    Every format is verified against the trained model unless ``verify`` is False; a comparison that
    ``tolerance`` refuses (default per dtype; a number, a :class:`~dsft.export.bounds.LogitBound` or the
    ``--tolerance`` text of :func:`~dsft.export.bounds.parse_tolerance`) raises :class:`VerificationError`
    after the files are written, so they can still be inspected; any other failure removes what the export had
    written. ``base_model`` overrides where a LoRA run's base model is found.
    """
    check_export_options(fmt, dtype, tolerance, max_shard_size, name=name)
    bound = parse_tolerance(tolerance) if isinstance(tolerance, (str, int, float)) else tolerance
    out = Path(out_dir)
    check_fresh_output_dir(out, overwrite)
    source = resolve_source(run_or_model, base_model)
    if fmt == "adapter":
        require_adapter(source)  # a full run's refusal is the one line said, not after "exporting ..."
    echo(f"exporting {source.run_dir or source.model_dir} ({source.method}, template {source.template}) "
         f"as {fmt} to {out}")
    # About the size of the weights read; a full disk midway removes the partial export.
    needed = tree_bytes(p for d in (source.model_dir, source.adapter_dir) if d is not None
                        for p in d.glob("*.safetensors"))
    # --overwrite: the earlier export's files wait aside, removed once the new export is written, put back if
    # it fails.
    aside = _set_aside_previous_export(out) if overwrite else None
    before = contents(out)  # None: absent, so a failed export removes --out itself; else only what it added
    try:
        with partial_output_removed(out, needed, f"the {fmt} export"):
            comparison = _dispatch(source, fmt, out, dtype, verify, bound, max_shard_size, name, echo)
    except VerificationError:
        raise  # the files are complete and kept, so the mismatch can be inspected
    except BaseException:
        remove_new_files(out, before)  # a half-written export must not block the rerun
        if aside is not None:
            _restore_previous_export(out, aside)
        raise
    finally:
        if aside is not None:  # gone once restored; else the new export replaced it
            shutil.rmtree(aside, ignore_errors=True)
    files = tuple(sorted(p.name for p in out.iterdir())) if out.is_dir() else ()
    return ExportResult(fmt, out, source, comparison, files)


def _dispatch(source: ExportSource, fmt: str, out: Path, dtype: str, verify: bool, tolerance: LogitBound | None,
              max_shard_size: str, name: str | None, echo: Callable[[str], None]) -> LogitComparison | None:
    if fmt == "hf":
        return export_hf(source, out, dtype, verify, tolerance, max_shard_size, echo)
    if fmt == "adapter":
        return export_adapter(source, out, verify, tolerance, echo)
    if fmt == "gguf":
        return export_gguf(source, out, dtype, verify, tolerance, echo).comparison
    return export_ollama(source, out, dtype, verify, tolerance, name, echo).comparison
