"""Where a preparation may write: never over the user's own files.

``dsft data prepare`` writes fixed names (``train.jsonl``, ``val.jsonl``, ``test.jsonl``, ``rejects.jsonl``,
``removed.jsonl``, the report and its histograms) into ``--out``, and ``dsft train`` into ``RUN/data``. A
directory holding the user's data under those names (``dsft data prepare data/train.jsonl --out data``,
``dsft train config.yaml --out .`` beside ``data/train.jsonl``) would have them replaced by the prepared
splits. :func:`check_prepared_output` refuses that before anything is created or loaded; rewriting an earlier
preparation (its ``data_report.json`` is there) stays allowed, so the same command can be rerun.
"""

from __future__ import annotations

from pathlib import Path

from dsft.config.schema import DsftConfig
from dsft.data.input_checks import glob_reaches
from dsft.data.prepared_folder import REPORT_FILE
from dsft.data.readers import SUPPORTED_SUFFIXES, check_outputs_spare_inputs, is_glob, is_saved_dataset
from dsft.data.report import HISTOGRAM_FILE, REASONING_HISTOGRAM_FILE
from dsft.data.split import SPLITS, split_file
from dsft.errors import DataError

PREPARED_FILES = (*(split_file(split) for split in SPLITS), "rejects.jsonl", "removed.jsonl", REPORT_FILE,
                  "data_report.md", HISTOGRAM_FILE, REASONING_HISTOGRAM_FILE)


def holds_only_prepared_output(path: Path) -> bool:
    """Whether directory ``path`` holds nothing but files a preparation writes (or nothing at all): what a
    preparation that stopped, or whose data left nothing to train on, leaves."""
    return path.is_dir() and all(p.is_file() and p.name in PREPARED_FILES for p in path.iterdir())


def check_prepared_output(cfg: DsftConfig, out: Path, inputs: list[str] | None, flag: str,
                          overwrite: bool = False) -> None:
    """Raise a :class:`DataError` when preparing into ``out`` would overwrite a data input, or (unless
    ``overwrite``) files of the prepared names that no preparation wrote (``out`` holds no ``data_report.json``).

    ``inputs`` are ``dsft data prepare INPUT...`` (else ``data.train``); ``data.val``, ``data.test`` and
    ``data.mix`` count too. ``flag`` says how the user named ``out`` (``--out DIR``). Inputs are assumed
    readable (:func:`dsft.data.input_checks.check_inputs` runs first). An ``out`` inside an input directory is refused
    too, created or not: a directory is read whole, so the splits written there would be read back as records; and so
    is an ``out`` where an input glob would match what is written (``data/**/*.jsonl`` and ``--out data/prepared``)."""
    named = [("data.train", p) for p in cfg.data.train] if not inputs else [("the input", p) for p in inputs]
    named += [(f"data.{split}", p) for split in ("val", "test") for p in getattr(cfg.data, split)]
    named += [("data.mix", source.path) for source in cfg.data.mix]
    for key, pattern in named:
        directory = Path(pattern)
        if directory.is_dir() and not is_saved_dataset(directory) and out.resolve().is_relative_to(directory.resolve()):
            raise DataError(f"{flag}: inside {pattern}, which {key} reads whole (every "
                            f"{', '.join(SUPPORTED_SUFFIXES[:-1])} and {SUPPORTED_SUFFIXES[-1]} file under it): the next "
                            f"preparation would read this one's splits, rejects and report as training data; choose an "
                            f"--out outside {pattern}")
        read_back = [out / name for name in PREPARED_FILES if Path(name).suffix in SUPPORTED_SUFFIXES]
        if is_glob(pattern) and (hit := next((path for path in read_back if glob_reaches(pattern, path)), None)):
            raise DataError(f"{flag}: within reach of {pattern}, which {key} reads (it would match {hit}): the next "
                            f"preparation would read this one's splits, rejects and report as training data; choose "
                            f"an --out the glob does not reach, or narrow the glob")
    if not out.is_dir():
        return
    patterns = [pattern for _, pattern in named]
    check_outputs_spare_inputs(patterns, out, PREPARED_FILES, flag, "prepared")
    if overwrite or (out / REPORT_FILE).is_file():
        return  # an earlier preparation: rewriting it is the rerun
    held = [str(out / name) for name in PREPARED_FILES if (out / name).exists()]
    if held:
        raise DataError(f"{flag}: would overwrite {', '.join(held)}, not written by a preparation (no {REPORT_FILE} "
                        "beside them); choose a new or empty output directory")
