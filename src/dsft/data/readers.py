"""Readers: files, directories, globs and saved ``datasets`` directories -> a stream of raw records.

Every record carries its provenance (``source`` file and ``location``: line, row or item number), so a
rejection can always say where the bad record is. Readers never raise for a bad *record*: an unreadable
line becomes a :class:`RawRecord` with ``error`` set and is rejected downstream with that reason.
They raise :class:`~dsft.errors.DataError` only for problems with the *input itself* (no such file,
unsupported extension, a glob matching nothing).

JSONL, CSV, Parquet and saved datasets are streamed (memory does not grow with the file size); a
``.json`` file holding one array must be parsed whole, which is why large corpora should be JSONL.

This module finds the inputs and picks each one's reader; the records are :class:`~dsft.data.raw_record.RawRecord`,
JSON and JSON lines are read by their shape in :mod:`dsft.data.json_shapes`, CSV in :mod:`dsft.data.csv_rows`.

>>> import json, tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "tiny.jsonl"
>>> _ = path.write_text('{"text": "hi"}\\n{oops\\n')
>>> [(r.location, r.data, r.error is not None) for r in read_records([str(path)])]
[('line 1', {'text': 'hi'}, False), ('line 2', None, True)]
"""

from __future__ import annotations

import glob
import re
from collections.abc import Iterator
from pathlib import Path

from dsft.config.foreign_keys import SUBSET
from dsft.data.csv_rows import read_csv
from dsft.data.json_shapes import read_json, read_jsonl_by_shape
from dsft.data.pandas_index import without_read_back_index
from dsft.data.raw_record import RawRecord
from dsft.disk import file_as_directory_reason, not_a_file_reason
from dsft.errors import DataError
from dsft.models.resolve import is_model_dir
from dsft.text_encoding import wide_text_hint

SUPPORTED_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
_PARQUET_BATCH_ROWS = 1024  # rows per pyarrow batch: bounded memory whatever the file size


def is_saved_dataset(path: Path) -> bool:
    """True for a directory written by ``datasets`` ``save_to_disk`` (a Dataset or a DatasetDict)."""
    return path.is_dir() and any(
        (path / name).is_file() for name in ("dataset_info.json", "state.json", "dataset_dict.json")
    )


def check_outputs_spare_inputs(patterns: list[str], out: Path, names: tuple[str, ...], flag: str,
                               label: str = "output") -> None:
    """Raise a :class:`DataError` when writing the files ``names`` into ``out`` would replace one of the inputs
    ``patterns`` (paths, directories, globs): never allowed, ``--overwrite`` or not."""
    if not out.is_dir():
        return
    targets = {(out / name).resolve(): name for name in names}
    for path in expand_inputs(patterns):
        name = targets.get(Path(path).resolve())
        if name is not None:
            raise DataError(f"{flag}: would overwrite the input {path} with the {label} {name}; choose another "
                            "output directory")


def is_glob(pattern: str) -> bool:
    """Whether :func:`expand_inputs` reads ``pattern`` as a glob: it holds ``*?[`` and names no existing path (one is
    taken literally, even where its name holds glob characters: ``data[v2].jsonl``)."""
    return not Path(pattern).exists() and any(ch in pattern for ch in "*?[")


def expand_inputs(patterns: list[str]) -> list[Path]:
    """Files (and saved dataset directories) named by paths, directories and globs, in a stable order.

    Directories are searched recursively for supported files (sorted by path) unless they are saved
    datasets. A pattern that matches nothing is an error that names it.
    """
    found: list[Path] = []
    for pattern in patterns:
        path = Path(pattern)
        if pattern == "":  # Path("") is the current directory: an unset shell variable read all of it
            raise DataError(f"{pattern!r}: an empty path names no data; name a file, a directory ('.' for the current "
                            "one) or a glob")
        if is_glob(pattern):
            matches = sorted(Path(p) for p in glob.glob(pattern, recursive=True))
            files = [p for p in matches if _is_readable_input(p)]
            if not files and (sliced := re.fullmatch(r"(.+)(\[\d*:\d*\])", pattern)) and Path(sliced[1]).is_file():
                raise DataError(f"{pattern}: a datasets split slice (split='train{sliced[2]}'), which names no file "
                                f"here; {SUBSET}")
            if not files:
                raise DataError(f"{pattern}: the glob matches no {'/'.join(SUPPORTED_SUFFIXES)} file")
            found.extend(files)
        elif is_saved_dataset(path):
            found.append(path)
        elif path.is_dir():
            if is_model_dir(path):  # its config.json and tokenizer files were read as records, all rejected
                raise DataError(f"{pattern}: looks like a model directory (config.json beside weights), not data; "
                                f"name {'/'.join(SUPPORTED_SUFFIXES)} files, a directory of them or a saved dataset")
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES)
            if not files:
                raise DataError(f"{pattern}: the directory holds no {'/'.join(SUPPORTED_SUFFIXES)} file")
            found.extend(files)
        elif path.is_file():
            if (reason := file_as_directory_reason(pattern)) is not None:
                raise DataError(f"{pattern}: {reason}")
            if path.suffix.lower() not in SUPPORTED_SUFFIXES:
                raise DataError(
                    f"{pattern}: unsupported file type {path.suffix or '(none)'}; "
                    f"use {', '.join(SUPPORTED_SUFFIXES)} or a saved datasets directory"
                )
            found.append(path)
        else:
            raise DataError(f"{pattern}: {not_a_file_reason(path)}")
    for path in found:
        _refuse_wide_text(path)
    return found


def _refuse_wide_text(path: Path) -> None:
    """A UTF-16/UTF-32 text file (Windows Notepad's "Unicode" save) is refused whole: read as UTF-8 it was split
    at stray newline bytes into records that each failed for another reason (a GBK one, say)."""
    if path.suffix.lower() not in (".json", ".jsonl", ".csv") or not path.is_file():
        return
    with path.open("rb") as handle:
        hint = wide_text_hint(handle.read(4096))
    if hint:
        raise DataError(f"{path}: not UTF-8 text{hint}")


def _is_readable_input(path: Path) -> bool:
    return (path.is_file() and path.suffix.lower() in SUPPORTED_SUFFIXES) or is_saved_dataset(path)


def read_records(patterns: list[str]) -> Iterator[RawRecord]:
    """Stream every record of every input named by ``patterns`` (see :func:`expand_inputs`)."""
    for path in expand_inputs(patterns):
        yield from read_path(path)


def read_path(path: Path) -> Iterator[RawRecord]:
    """Stream the records of one file or saved dataset directory (pandas' row index read back as ``Unnamed: 0``
    left out: :func:`~dsft.data.pandas_index.without_read_back_index`)."""
    return without_read_back_index(_read_by_type(path))


def _read_by_type(path: Path) -> Iterator[RawRecord]:
    if is_saved_dataset(path):
        return read_saved_dataset(path)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return read_jsonl_by_shape(path)
    if suffix == ".json":
        return read_json(path)
    if suffix == ".csv":
        return read_csv(path)
    if suffix == ".parquet":
        return read_parquet(path)
    raise DataError(f"{path}: unsupported file type {suffix or '(none)'}")




def read_parquet(path: Path) -> Iterator[RawRecord]:
    """One record per row, read in bounded batches with pyarrow."""
    import pyarrow.parquet as pq

    source = str(path)
    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a damaged file
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
    number = 0
    for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH_ROWS):
        for row in batch.to_pylist():
            number += 1
            yield RawRecord(source, f"row {number}", data=row)


def read_saved_dataset(path: Path) -> Iterator[RawRecord]:
    """Rows of a ``save_to_disk`` directory (memory-mapped Arrow); every split of a DatasetDict."""
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as exc:  # noqa: BLE001 - datasets raises several types for a damaged directory
        raise DataError(f"{path}: not a readable saved dataset ({exc})") from None
    parts = loaded.items() if isinstance(loaded, datasets.DatasetDict) else [("", loaded)]
    for split_name, dataset in parts:
        prefix = f"{split_name} " if split_name else ""
        for number, row in enumerate(dataset, start=1):
            yield RawRecord(str(path), f"{prefix}row {number}", data=row)
