"""Checks of the data inputs a config names, before anything heavy loads: every file readable, no prepared
folder read as raw input, ``data.prepared_dir`` prepared from the ``data.train`` beside it.

A typo in a path costs a second, not a model load: ``dsft data prepare``, ``dsft train``, sweeps and the
dashboard's new-run form ask :func:`input_problems` (or :func:`check_inputs`) first.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

from dsft.config.schema import DsftConfig, read_twice
from dsft.config.spelling import meant_key
from dsft.data import augment, relevance, semantic
from dsft.data.formats import FORMAT_FIELDS
from dsft.data.preference_fields import FIELDS_READ as PREFERENCE_FIELDS_READ
from dsft.data.prepared_folder import REPORT_FILE, UNFINISHED_PREPARATION, preparation_state
from dsft.data.readers import SUPPORTED_SUFFIXES, expand_inputs, is_glob, is_saved_dataset
from dsft.data.split import split_file
from dsft.errors import DataError, DsftError


def training_sources(cfg: DsftConfig, inputs: list[str] | None = None) -> list[str]:
    """What ``dsft data prepare`` reads as training data: ``inputs`` when given, else ``data.train``; an error
    when there is neither."""
    sources = list(inputs) if inputs else list(cfg.data.train)
    if not sources:
        raise DataError("no training data: pass input files (dsft data prepare INPUT...) or set data.train")
    return sources


def names_data(cfg: DsftConfig) -> bool:
    """Whether the config names any data input (``data.train``, ``val``, ``test``, ``mix`` or ``prepared_dir``):
    ``dsft launch`` checks those, and says that a config naming none was not checked."""
    data = cfg.data
    return bool(data.train or data.val or data.test or data.mix or data.prepared_dir)


def input_problems(cfg: DsftConfig, inputs: list[str] | None = None) -> list[str]:
    """Every data input the config names that cannot be read (missing, unsupported, a glob matching nothing),
    one line each naming its key, or the absence of any training input: checked before a model is resolved,
    so a typo costs no model load. The files SFT cleaning and augmentation read (relevance references,
    synonym lists, template tables) count as inputs.

    ``inputs`` (``dsft data prepare INPUT...``) replace ``data.train``; they are named by their path alone,
    and the config's ``data.val``, ``data.test`` and ``data.mix``, still read, by their keys."""
    if not inputs and cfg.data.prepared_dir:
        return _prepared_dir_problems(cfg.data.prepared_dir, cfg.data.train)
    if not inputs and not cfg.data.train:
        return ["data.train: no training data; list files in data.train or set data.prepared_dir"]
    named = _named_inputs(cfg, inputs)
    problems = []
    for key, pattern in named:
        try:
            expand_inputs([pattern])
            _refuse_prepared_dir(pattern)
            refuse_outputs_inside(pattern)
        except DataError as exc:
            problems.append(f"{key}: {exc}" if key else str(exc))
    if not problems:
        problems += _files_named_twice(named, cfg.data.clean.exact_dedup or cfg.data.clean.near_dedup)
    if cfg.train.objective == "sft":  # other objectives read neither (and refuse these keys)
        problems += _cleaning_and_augment_file_problems(cfg)
    return problems + column_name_problems(cfg.data.columns)


_COLUMNS_KEY = "data.columns: "  # how a problem of a data.columns key begins
# Every field name a format (SFT or preference) reads: the keys data.columns may give.
_FIELDS_READ = sorted({*(field for fields in FORMAT_FIELDS.values() for field in fields), *PREFERENCE_FIELDS_READ})


def column_name_problems(columns: dict[str, str]) -> list[str]:
    """``data.columns`` keys spelt like a field dsft reads but not as it is spelt: the mapping renames the user's
    column to a name no format reads, so every record was rejected with a hint about the records, not the config
    (or, for an optional field such as ``system``, the column was kept as metadata and trained without). A key that
    is no slip of a field (:func:`dsft.config.spelling.meant_key`) is left alone: it renames a metadata column, e.g.
    ``question_id`` for ``data.stratify_by``.

    >>> column_name_problems({"instrution": "q", "output": "a", "department": "科室"})
    ["data.columns: 'instrution' is no field a format reads; did you mean 'instruction'? (the keys are dsft's names, the values your columns: {instruction: q})"]
    >>> column_name_problems({"complex_cot": "cot", "Question": "q"})[0][:83]
    "data.columns: 'complex_cot' is no field a format reads; did you mean 'Complex_CoT'?"
    """
    problems = []
    for key, column in columns.items():
        if key in _FIELDS_READ:
            continue
        meant = meant_key(key, _FIELDS_READ, any_case=True)  # as for any config key; a change of case is no edit
        if meant:
            problems.append(f"{_COLUMNS_KEY}{key!r} is no field a format reads; did you mean {meant!r}? (the keys "
                            f"are dsft's names, the values your columns: {{{meant}: {column}}})")
    return problems


def _named_inputs(cfg: DsftConfig, inputs: list[str] | None) -> list[tuple[str | None, str]]:
    """Each raw data input read, with the key naming it: ``inputs`` (no key) or ``data.train``, then ``data.val``,
    ``data.test`` and the ``data.mix`` sources."""
    named: list[tuple[str | None, str]] = ([(None, pattern) for pattern in inputs] if inputs
                                           else [("data.train", pattern) for pattern in cfg.data.train])
    named += [(f"data.{split}", pattern) for split in ("val", "test") for pattern in getattr(cfg.data, split)]
    named += [(f"data.mix.{position}.path", source.path) for position, source in enumerate(cfg.data.mix)]
    return named


def skipped_file_warnings(cfg: DsftConfig, inputs: list[str] | None = None) -> list[str]:
    """:func:`directory_skip_warnings` for the data inputs a config names (``inputs`` in place of ``data.train``).

    >>> import tempfile
    >>> from dsft.config.schema import DsftConfig
    >>> folder = Path(tempfile.mkdtemp())
    >>> for name in ("a.jsonl", "b.txt"): _ = (folder / name).write_text("x")
    >>> skipped_file_warnings(DsftConfig(), [str(folder)])[0].split(": skipped ")[1]
    '1 file of a type dsft does not read (.txt; it reads .jsonl, .json, .csv, .parquet): b.txt'
    """
    return directory_skip_warnings(_named_inputs(cfg, inputs))


def directory_skip_warnings(named: Iterable[tuple[str | None, str]]) -> list[str]:
    """A line for each input directory of ``named`` ((the key or flag naming it, or None; the path)) holding files
    of a type dsft does not read, naming them (a few) and their types: named alone such a file is refused, and in
    a directory it was skipped without a word. Every command that reads a data directory says it in these words.
    """
    warnings = []
    for key, pattern in named:
        path = Path(pattern)
        if is_glob(pattern) or not path.is_dir() or is_saved_dataset(path):
            continue
        left = [str(file.relative_to(path)) for file in files_left_out(path)]
        if not left:
            continue
        types = sorted({Path(name).suffix.lower() or "(none)" for name in left})
        shown = ", ".join(left[:_NAMES_SHOWN]) + (f" and {len(left) - _NAMES_SHOWN} more" if len(left) > _NAMES_SHOWN
                                                  else "")
        files = f"{len(left)} file{'s' if len(left) > 1 else ''} of {'types' if len(types) > 1 else 'a type'}"
        warnings.append(f"warning: {f'{key}: ' if key else ''}{pattern}: skipped {files} dsft does not read "
                        f"({', '.join(types)}; it reads {', '.join(SUPPORTED_SUFFIXES)}): {shown}")
    return warnings


def files_left_out(directory: Path) -> list[Path]:
    """The files below ``directory`` that :func:`~dsft.data.readers.expand_inputs` does not read, being of another
    type than ``SUPPORTED_SUFFIXES`` (``notes.txt``, ``rows.tsv``, ``data.jsonl.gz``), sorted; hidden ones
    (``.DS_Store``, a ``.git`` folder's) are no data and are not listed.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> for name in ("a.jsonl", "b.txt", ".DS_Store"): _ = (folder / name).write_text("x")
    >>> [path.name for path in files_left_out(folder)]
    ['b.txt']
    """
    return sorted(path for path in directory.rglob("*")
                  if path.is_file() and path.suffix.lower() not in SUPPORTED_SUFFIXES
                  and not any(part.startswith(".") for part in path.relative_to(directory).parts))


_NAMES_SHOWN = 8  # of the files an input directory holds and dsft does not read; the rest are counted
_DUPLICATE_OF_ITSELF = "as a duplicate of itself"
# The problems of a file named twice: in two roles (_files_named_twice), or in one (dsft.config.schema.read_twice).
_NAMED_TWICE = re.compile(rf"{_DUPLICATE_OF_ITSELF}|: it would be read twice, ")
# The roles a file can be named in, in the order deduplication keeps copies (dsft.data.pool_cleaning and
# dsft.data.preference_dedup: evaluation splits first, test before val; data.mix sources join the train pool last),
# and what the records of a role are for.
_KEPT_FIRST = ("data.test", "data.val", "data.train")
_PURPOSE = {"data.val": "validation", "data.train": "training"}


def _role(key: str | None) -> str:
    """The role of an input named by ``key``: the inputs of ``dsft data prepare INPUT...`` are training data, and each
    ``data.mix`` source is a role of its own."""
    return "data.train" if key is None else key


def _rank(key: str | None) -> int:
    role = _role(key)
    return _KEPT_FIRST.index(role) if role in _KEPT_FIRST else len(_KEPT_FIRST)  # mix sources, in their order


def _files_named_twice(named: list[tuple[str | None, str]], deduplicated: bool = True) -> list[str]:
    """A file named in two roles (``data.train`` or the inputs, ``data.val``, ``data.test``, a ``data.mix`` source):
    the copy deduplication reads second (training's of a ``data.val`` file, validation's of a ``data.test`` one, a mix
    source's of any) would lose each of its records as an exact duplicate of itself, leaving that role nothing of
    the file (a file in training and held out is also trained on with no split kept out). Without deduplication
    (not ``deduplicated``) only a file both trained on and held out is refused: a mix source may repeat another
    input (drawn again at its ratio), and data.val may be data.test.

    A file one role reaches twice (two spellings, a link to it, a directory and a file in it) would be read twice,
    each record doubled, and is refused whatever the deduplication."""
    first: dict[Path, str] = {}  # a file -> the role that keeps its records
    reached: dict[tuple[str, Path], tuple[int, str, Path]] = {}  # (role, file) -> (entry number, entry, path)
    told: set[tuple[int, int]] = set()  # the pairs of entries found reaching one file: each said once
    problems = []
    for number, (key, pattern) in enumerate(sorted(named, key=lambda item: _rank(item[0]))):  # stable: mix in order
        for path in expand_inputs([pattern]):
            file = path.resolve()
            if (_role(key), file) in reached:
                earlier = reached[_role(key), file]
                if (earlier[0], number) not in told:
                    told.add((earlier[0], number))
                    problems.append(f"{f'{key}: ' if key else ''}"
                                    f"{_read_twice(earlier, (number, pattern, path), _role(key))}")
                continue
            reached[_role(key), file] = (number, pattern, path)
            where = pattern if Path(pattern) == path else f"{pattern}: {path}"
            other = first.setdefault(file, _role(key))
            if other == _role(key) or (not deduplicated and _role(key) != "data.train"):
                continue
            role = "training data" if _role(key) == "data.train" else _role(key)
            purpose = _PURPOSE.get(_role(key), "the mix")
            problems.append(f"{f'{key}: ' if key else ''}{where} is also {other}; each of its records would be removed "
                            f"from {purpose} {_DUPLICATE_OF_ITSELF}: name a file as {role} or as {other}, not both")
    return problems


def _read_twice(first: tuple[int, str, Path], second: tuple[int, str, Path], role: str) -> str:
    """:func:`dsft.config.schema.read_twice` for two (entry number, entry, file it reached) of one role: two entries
    that are one path are named as written; else each file, with the directory or glob that reached it.

    >>> _read_twice((0, "d", Path("d/a.jsonl")), (0, "d", Path("d/b.jsonl")), "data.val")
    'd/a.jsonl (in d) and d/b.jsonl (in d) are one file: it would be read twice, each of its records doubled; \
leave one of them out of d, or name the files to read'
    """
    (first_number, entry, _), (second_number, other, _) = first, second
    if first_number != second_number and Path(entry) == Path(other):  # a.jsonl and ./a.jsonl, data and data/
        return read_twice(entry, other, role)
    first_name, second_name = (pattern if Path(pattern) == path else f"{path} (in {pattern})"
                               for _, pattern, path in (first, second))
    fix = "name it once"
    if first_number == second_number:  # one entry reached it twice: a link beside it
        fix = f"narrow {entry}" if is_glob(entry) else f"leave one of them out of {entry}, or name the files to read"
    return read_twice(first_name, second_name, role, fix, one="file")


def _prepared_dir_problems(directory: str, train: list[str]) -> list[str]:
    """``data.prepared_dir`` is read as it is, and ``data.train`` is not read: a directory prepared from other inputs
    than the ``data.train`` beside it (another guide's, an older preparation) would be trained on without a word."""
    path = Path(directory)
    if preparation_state(path) == "unfinished":
        return [f"data.prepared_dir: {path}: {UNFINISHED_PREPARATION}"]
    train_file = split_file("train")
    if not (path / train_file).is_file():
        return [f"data.prepared_dir: {path}: not a prepared data directory (no {train_file}); run `dsft data prepare` "
                "first"]
    try:
        inputs = json.loads((path / REPORT_FILE).read_text(encoding="utf-8"))["inputs"]["train"]
    except (OSError, ValueError, KeyError, TypeError):
        inputs = None  # no report (an older or hand-made directory): nothing to compare with
    if not train or not isinstance(inputs, list) or not inputs or _resolved(train) == _resolved(map(str, inputs)):
        return []
    return [f"data.prepared_dir: {path} was prepared from {', '.join(inputs)}, not data.train ({', '.join(train)}); "
            "a prepared directory is trained on as it is: prepare data.train again, or leave data.train out "
            "(--set data.train=[])"]


def _resolved(paths: Iterable[str]) -> set[Path]:
    return {Path(p).expanduser().resolve() for p in paths}


def _refuse_prepared_dir(pattern: str) -> None:
    """A directory ``dsft data prepare`` wrote, named as input: read whole, its train, val and test splits would be
    merged and split again (validation records trained on) and its report read as a record."""
    state = preparation_state(pattern)
    if state == "unfinished":  # read whole, its splits (if any) would be mixed with its rejects
        raise DataError(f"{pattern}: {UNFINISHED_PREPARATION}, then train on it with data.prepared_dir: {pattern}")
    if state == "finished":
        raise DataError(f"{pattern}: a directory written by dsft data prepare; reading all of it would mix its train, "
                        f"val and test splits: train on it as prepared with data.prepared_dir: {pattern}, or name one "
                        f"split file, e.g. {Path(pattern) / split_file('train')}")


# What marks a directory dsft wrote: a preparation's report, a run's record (dsft.training.rundir.RUN_INFO_FILE, a
# layer above this one).
_OUTPUT_MARKERS = {REPORT_FILE: "a data preparation", "run.json": "a training run"}


def refuse_outputs_inside(pattern: str, named: str | None = None, read_as: str = "training records") -> None:
    """An input directory holding a prepared folder or a run directory below it, or a glob matching files inside
    one below its fixed part (``data/**/*.jsonl`` beside ``data/prepared/``): read whole (every supported file under
    it), their splits (validation records too), rejects and reports would be read as records. ``named`` is how the
    message names the input (default: the path), ``read_as`` what its files would become (the data a training
    reads; the records ``dsft eval --data`` scores)."""
    directory = Path(pattern)
    if is_glob(pattern):
        root = _glob_root(pattern)
        found = {output: what for path in expand_inputs([pattern]) if (hit := _output_holding(path, root))
                 for output, what in [hit]}
        said, whole, fix = "matches files in", "read by the glob", f"move them out of {root}, or narrow the glob"
    elif directory.is_dir() and not is_saved_dataset(directory):
        found = {}
        for marker, what in _OUTPUT_MARKERS.items():
            for hit in directory.rglob(marker):
                if hit.parent != directory:
                    found.setdefault(hit.parent, what)
        said, whole, fix = "holds", "read whole", f"move them out of {directory}, or name the data files"
    else:
        return
    outermost = sorted(p for p in found if not any(other in p.parents for other in found))
    if outermost:
        listed = ", ".join(f"{p} ({found[p]})" for p in outermost)
        raise DataError(f"{named or pattern}: {said} what dsft wrote, {listed}; {whole}, their splits, rejects and "
                        f"reports would be {read_as}: {fix}")


def _glob_root(pattern: str) -> Path:
    """The directory a glob searches: its parts before the first holding a wildcard.

    >>> _glob_root("data/**/*.jsonl"), _glob_root("*.jsonl")
    (PosixPath('data'), PosixPath('.'))
    """
    parts = []
    for part in Path(pattern).parts:
        if any(ch in part for ch in "*?["):
            break
        parts.append(part)
    return Path(*parts) if parts else Path(".")


def glob_reaches(pattern: str, path: Path) -> bool:
    """Whether glob ``pattern`` (read as :func:`dsft.data.readers.expand_inputs` reads it: ``**`` any depth of
    directories, wildcards passing over hidden names) would match the file ``path``, which need not exist yet.

    >>> glob_reaches("data/**/*.jsonl", Path("data/prepared/train.jsonl")), glob_reaches("data/*.jsonl", Path("data/prepared/train.jsonl"))
    (True, False)
    >>> glob_reaches("data/**/*.jsonl", Path("data/.cache/train.jsonl")), glob_reaches("data/**", Path("data/a/b/val.jsonl"))
    (False, True)
    """
    root = _glob_root(pattern)
    parts = Path(pattern).parts[len(root.parts) if root != Path(".") else 0:]
    try:
        names = Path(os.path.abspath(path)).relative_to(os.path.abspath(root)).parts
    except ValueError:
        return False
    return _parts_match(parts, names)


def _parts_match(parts: tuple[str, ...], names: tuple[str, ...]) -> bool:
    if not parts:
        return not names
    if parts[0] == "**":  # zero or more directories (or, last, files too), none of them hidden
        return any(_parts_match(parts[1:], names[skip:]) for skip in range(len(names) + 1)
                   if not any(name.startswith(".") for name in names[:skip]))
    if not names or (names[0].startswith(".") and not parts[0].startswith(".")):
        return False
    return fnmatch.fnmatchcase(names[0], parts[0]) and _parts_match(parts[1:], names[1:])


def _output_holding(path: Path, root: Path) -> tuple[Path, str] | None:
    """The outermost directory below ``root`` that dsft wrote (a preparation, a run) and ``path`` lies in, with what
    it is; None when there is none."""
    held = None
    for parent in path.parents:
        if parent == root or root not in parent.parents:
            break
        what = next((what for marker, what in _OUTPUT_MARKERS.items() if (parent / marker).is_file()), None)
        if what is not None:
            held = (parent, what)
    return held


def _cleaning_and_augment_file_problems(cfg: DsftConfig) -> list[str]:
    """The files cleaning and augmentation read: relevance references, synonym lists, template tables."""
    settings = cfg.data.clean
    problems = []
    if settings.relevance_references and settings.relevance_min > 0:
        problems += relevance.reference_problems(settings.relevance_references)
    model = settings.semantic.embedding_model
    model_problem = semantic.embedding_model_problem(model) if model else None
    if model_problem:
        problems.append(model_problem)
    try:
        augment.check_synonym_sources(cfg.data.augment)
    except DsftError as exc:
        problems.append(str(exc))
    for number, template in enumerate(cfg.data.augment.templates):
        try:
            expand_inputs([template.table])
        except DataError as exc:
            problems.append(f"data.augment.templates[{number}].table: {exc}")
    return problems


def check_inputs(cfg: DsftConfig, inputs: list[str] | None = None) -> None:
    """Raise one :class:`DataError` listing :func:`input_problems`, if any."""
    problems = input_problems(cfg, inputs)
    if problems:
        inputs_named = [problem for problem in problems if not problem.startswith(_COLUMNS_KEY)]
        head = (f"{len(inputs_named)} data input(s) named twice" if all(_NAMED_TWICE.search(p) for p in inputs_named)
                else f"{len(inputs_named)} data input(s) cannot be read")
        if any(_missing_relative_path(problem) for problem in inputs_named):  # e.g. a guide's config run from its folder
            head += f" (relative paths are read from the current directory, {Path.cwd()})"
        if len(inputs_named) < len(problems):
            mapped = f"{len(problems) - len(inputs_named)} data.columns key(s) no format reads"
            head = f"{head}; {mapped}" if inputs_named else mapped
        raise DataError(head, problems, job_wide=True)  # every process reads the same paths


def _missing_relative_path(problem: str) -> bool:
    """Whether ``problem`` (``[key: ]path: no such file or directory``) is about a relative path."""
    missing = ": no such file or directory"  # dsft.disk.not_a_file_reason's words for a missing path
    if not problem.endswith(missing):
        return False
    return not Path(problem.removesuffix(missing).split(": ")[-1]).is_absolute()


# File names that say which split a file holds (val.jsonl, dev.json, qa_test.csv, medical-validation.jsonl).
_SPLIT_NAMES = {"val": "val", "valid": "val", "validation": "val", "dev": "val", "eval": "val", "test": "test"}


def split_named_train_files(cfg: DsftConfig, inputs: list[str] | None = None) -> list[str]:
    """One warning per training file whose name says it holds validation or test records (``val.jsonl`` given
    beside ``train.jsonl`` as ``dsft data prepare train.jsonl val.jsonl``, or in a ``data.train`` directory): it
    is read as training data and split with the rest, not held out as the user meant.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> for name in ("train.jsonl", "val.jsonl"):
    ...     _ = (folder / name).write_text('{"text": "a"}\\n')
    >>> [line.replace(str(folder), "D") for line in split_named_train_files(DsftConfig(), [str(folder / "train.jsonl"),
    ...                                                                                       str(folder / "val.jsonl")])]
    ['D/val.jsonl: read as training data, though its name says val: to hold it out, name it in data.val (--set data.val=[D/val.jsonl]) and pass only the training files']
    """
    warnings = []
    for path in expand_inputs(training_sources(cfg, inputs)):
        words = path.stem.lower().replace("-", "_").replace(".", "_").split("_")
        split = next((_SPLIT_NAMES[word] for word in (words[0], words[-1]) if word in _SPLIT_NAMES), None)
        if split is not None:
            warnings.append(f"{path}: read as training data, though its name says {split}: to hold it out, name it in "
                            f"data.{split} (--set data.{split}=[{path}]) and pass only the training files")
    return warnings
