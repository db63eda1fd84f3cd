"""The export options every format shares, checked before anything heavy is imported.

``dsft export`` calls :func:`check_export_options` on what the user typed before it imports torch, so a
wrong ``--format``, ``--dtype``, ``--tolerance`` or ``--max-shard-size`` (or a dtype the format cannot
store) is refused in about a second; :func:`dsft.export.api.export` runs the same check for library callers.

>>> check_export_options("gguf", "q8_0", None, "5GB")
>>> check_export_options("hf", "q8_0", None, "5GB")
Traceback (most recent call last):
...
dsft.errors.UnsupportedError: --dtype q8_0: Hugging Face exports are stored as one of float32, float16, bfloat16; q8_0 applies to --format gguf/ollama only
"""

from __future__ import annotations

import re

from dsft.dtype_names import WEIGHT_DTYPES
from dsft.errors import DsftError, UnsupportedError
from dsft.export.bounds import LogitBound, parse_tolerance
from dsft.models.ollama_tags import ollama_name_problem  # what `ollama create` takes

EXPORT_FORMATS = ("hf", "adapter", "gguf", "ollama")
EXPORT_DTYPES = ("auto", *WEIGHT_DTYPES, "q8_0")
HF_DTYPES = WEIGHT_DTYPES
# What transformers' save_pretrained(max_shard_size=...) parses: an integer and a unit.
_SHARD_SIZE = re.compile(r"\s*([0-9]+)\s*(GIB|MIB|KIB|GB|MB|KB)", re.IGNORECASE)


def dtype_fits(fmt: str, dtype: str) -> bool:
    """Whether format ``fmt`` can store ``dtype`` (``auto`` fits every format; an adapter is copied as trained).

    >>> dtype_fits("gguf", "q8_0"), dtype_fits("hf", "q8_0"), dtype_fits("adapter", "bfloat16")
    (True, False, False)
    """
    if fmt == "hf":
        return dtype in ("auto", *HF_DTYPES)
    if fmt == "adapter":
        return dtype == "auto"
    return True


def check_export_options(fmt: str, dtype: str, tolerance: str | float | LogitBound | None, max_shard_size: str,
                         dtype_source: str = "--dtype", name: str | None = None) -> None:
    """Raise a :class:`DsftError` naming the first option that is unknown, out of range, or that the format
    cannot take; ``dtype_source`` is where the dtype came from (``export.dtype`` for a config's); ``name`` is the
    Ollama model name (ollama only; kept as given, so one ``ollama create`` would refuse is refused here)."""
    if fmt not in EXPORT_FORMATS:
        raise UnsupportedError(f"--format {fmt}: unknown; choose one of {', '.join(EXPORT_FORMATS)}")
    if name is not None and fmt != "ollama":
        raise DsftError(f"--name {name}: the Ollama model name applies to --format ollama only; drop it")
    if name is not None and (problem := ollama_name_problem(name)):
        raise DsftError(problem)
    if dtype not in EXPORT_DTYPES:
        raise UnsupportedError(f"{dtype_source} {dtype}: unknown; choose one of {', '.join(EXPORT_DTYPES)}")
    if not dtype_fits(fmt, dtype) and fmt == "hf":
        raise UnsupportedError(f"{dtype_source} {dtype}: Hugging Face exports are stored as one of "
                               f"{', '.join(HF_DTYPES)}; q8_0 applies to --format gguf/ollama only")
    if not dtype_fits(fmt, dtype):
        raise UnsupportedError(f"{dtype_source} {dtype}: an adapter is copied as trained; drop it")
    if isinstance(tolerance, (str, int, float)):
        parse_tolerance(tolerance)  # names --tolerance and the syntax when it cannot be read
    shard = _SHARD_SIZE.fullmatch(max_shard_size)
    if shard is None or int(shard.group(1)) == 0:
        raise DsftError(f"--max-shard-size {max_shard_size}: expected a positive whole number and a unit, "
                        "e.g. 5GB, 500MB or 2GiB")
