"""Loading, overriding and saving configs; every problem is reported at once, naming its key."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from dsft.config.foreign_keys import deepspeed_config_keys, foreign_key_hint, foreign_section_hint
from dsft.config.presets import get_preset, replaced_by_preset
from dsft.config.schema import DsftConfig, PathMark
from dsft.config.spelling import meant_key
from dsft.errors import ConfigError
from dsft.template_families import template_name_hint
from dsft.text_encoding import encoding_hint, wide_text_hint


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping: YAML's loaders keep the last silently, so a
    second `train:` section (two pasted snippets) would drop every key of the first."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` then a key that overrides it is meant
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:  # an unhashable key: SafeLoader's own error names it
                continue
            if first is not key_node:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} is given twice in one mapping (first at line "
                    f"{first.start_mark.line + 1}); YAML would keep only the last, so merge them",
                    key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def _construct_int(loader: _UniqueKeyLoader, node: yaml.ScalarNode) -> Any:
    """YAML 1.2's reading of the integers YAML 1.1 (PyYAML) reads otherwise: ``010`` is ten, not octal 8 (YAML 1.2
    writes octal ``0o10``), and ``1:30`` is text, not the base-60 number 90 (a step count written 1:30 is refused
    naming its key instead of running 90 steps)."""
    text = loader.construct_scalar(node)
    digits = text.replace("_", "").lstrip("+-")
    if ":" in text:
        return text
    if len(digits) > 1 and digits.startswith("0") and digits.isdigit():
        return int(text.replace("_", ""), 10)
    return loader.construct_yaml_int(node)


def _construct_float(loader: _UniqueKeyLoader, node: yaml.ScalarNode) -> Any:
    """``1:30.5`` is text, as in YAML 1.2, not YAML 1.1's base-60 float 5430.5."""
    text = loader.construct_scalar(node)
    return text if ":" in text else loader.construct_yaml_float(node)


_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:float", _construct_float)


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` that refuses a key given twice in one mapping (see :class:`_UniqueKeyLoader`) and reads
    ``010`` and ``1:30`` as YAML 1.2 does (ten; text).

    >>> load_yaml("{a: 010, b: 0o10, c: 0x10, d: 1:30, e: 1_000, f: -07}")
    {'a': 10, 'b': '0o10', 'c': 16, 'd': '1:30', 'e': 1000, 'f': -7}
    """
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


# A number with an exponent, as YAML 1.1 leaves it a string (1e-4, 5E3, 2.e-5); ASCII digits only.
_EXPONENT_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][+-]?[0-9]+")


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b=value`` into a key path and a YAML-parsed value.

    >>> parse_override("train.lr=1e-4")
    (['train', 'lr'], 0.0001)
    >>> parse_override("data.train=[a.jsonl, b.jsonl]")
    (['data', 'train'], ['a.jsonl', 'b.jsonl'])
    """
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. train.lr=1e-4")
    key, raw = text.split("=", 1)
    path = key.strip().split(".")
    if not key.strip():
        raise ConfigError(f"--set {text!r}: empty key")
    if not all(path):
        raise ConfigError(f"--set {text!r}: the key {key.strip()!r} has an empty part (a doubled or stray dot); "
                          "write it as SECTION.KEY, e.g. train.lr=1e-4")
    try:
        value = load_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        problem = str(getattr(exc, "problem", None) or exc).strip()
        raise ConfigError(f"--set {text!r}: the value is not valid YAML ({problem}); quote it, e.g. "
                          f"{key.strip()}='\"...\"'") from None
    # YAML reads 1e-4 as a string (no dot); numbers are what users mean. Only such a number, in ASCII digits: int()
    # and float() read any script's digits (a full-width ８), which the config file (YAML, then pydantic) refuses.
    if isinstance(value, str) and _EXPONENT_NUMBER.fullmatch(value):
        value = float(value)
    return path, value


def _in_section(key: str) -> str:
    r"""A pattern for a problem of ``key``'s section that names ``key`` by the rest of its dotted name (a
    section-level rule): ``data: val_ratio + test_ratio ...`` names ``data.test_ratio``.

    >>> bool(re.search("^" + _in_section("data.test_ratio"), "data: val_ratio + test_ratio must be < 1"))
    True
    >>> bool(re.search("^" + _in_section("data.clean.semantic.embedding_model"), "data: val_ratio + test_ratio ..."))
    False
    """
    parts = key.split(".")
    options = [rf"{re.escape('.'.join(parts[:i]))}: .*(?<![\w.]){re.escape('.'.join(parts[i:]))}(?!\w)"
               for i in range(1, len(parts))]
    return "(?:" + "|".join(options) + ")" if options else "(?!)"


def problems_source(source: str, overrides: Sequence[str], problems: Sequence[str], grid: Sequence[str] = (),
                    trial: str | None = None, ranges: Sequence[str] = (),
                    flags: Sequence[tuple[str, str]] = ()) -> str:
    """What a config's problems are labelled with: the ``--set`` overrides they name (so the flag that caused them
    is the one pointed at), after ``source`` (the config file, or the command whose built-in config it is) when
    some of the problems name none. Of a key set twice, the later ``--set`` (the value the config has) counts.
    ``grid``: a sweep trial's ``--grid`` values, applied after ``overrides``, named with the ``trial``;
    ``ranges``: the ``--range`` axes (``KEY=KIND:LOW:HIGH``) whose values the config holds, named likewise;
    ``flags``: (``KEY=VALUE``, the option as typed) for a command's own option that sets a key, applied after
    ``overrides`` and named as typed (``--base-url api.deepseek.com/v1``, not ``data.distill.endpoint.base_url``).

    >>> problems_source("c.yaml", ["eval.metric=nope", "train.lr=1e-4"], ["eval.metric: unknown metric 'nope'"])
    '--set eval.metric=nope'
    >>> problems_source("c.yaml", ["eval.metric=nope"], ["eval.metric: unknown metric", "eval.metrics: unknown"])
    'c.yaml and --set eval.metric=nope'
    >>> problems_source("c.yaml", ["train.lr=1e-4"], ["eval.metric: unknown metric 'nope'"])
    'c.yaml'
    >>> problems_source("c.yaml", ["train.lr=1e-4"], ["train.lr: must be > 0"], ["train.lr=-1"], "trial-001")
    '--grid train.lr=-1 (trial-001)'
    >>> problems_source("c.yaml", [], ["train.lr: must be > 0"], [], "at train.lr=-1", ["train.lr=float:-1:1"])
    '--range train.lr=float:-1:1 (at train.lr=-1)'
    >>> problems_source("c.yaml", [], ["data.distill.endpoint.base_url: must be an http:// or https:// URL"],
    ...                 flags=[("data.distill.endpoint.base_url=x.com", "--base-url x.com")])
    '--base-url x.com'
    """
    labelled = [(f"{flag} {text.strip()}", text) for flag, texts in (("--set", overrides), ("--grid", grid),
                                                                       ("--range", ranges)) for text in texts]
    effective: dict[str, str] = {}
    for label, text in [*labelled[:len(overrides)], *((typed, text) for text, typed in flags),
                        *labelled[len(overrides):]]:
        key = text.split("=", 1)[0].strip()
        effective.pop(key, None)  # the later one took effect: keep it, in the order typed
        effective[key] = label
    # A problem names a key as a whole dotted name: eval.metric is not named by eval.metrics or eval.metric_key; or,
    # a rule across a section's keys, after the section (data.test_ratio in 'data: val_ratio + test_ratio ...').
    pattern = {key: re.compile(rf"(?<![\w.]){re.escape(key)}(?!\w)|^{_in_section(key)}") for key in effective}
    named = [label for key, label in effective.items() if any(pattern[key].search(p) for p in problems)]
    if not named:
        return source
    flags = ", ".join(named)
    if trial is not None and any(label.startswith(("--grid ", "--range ")) for label in named):
        flags += f" ({trial})"
    unexplained = any(not any(pattern[key].search(p) for key in effective) for p in problems)
    return f"{source} and {flags}" if unexplained else flags


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return ``raw`` with each ``a.b=value`` override applied (creating sections as needed)."""
    for text in overrides:
        path, value = parse_override(text)
        node = raw
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[path[-1]] = value
    return raw


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model a field holds: itself, or inside ``list[...]`` / ``X | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((m for arg in get_args(annotation) if (m := _model_in(arg)) is not None), None)


def _marks_path(annotation: Any, metadata: Sequence[Any] = ()) -> bool:
    """Whether a field's type carries :class:`PathMark`: ``LocalPath``, ``LocalPath | None``, ``list[LocalPath]``."""
    if any(isinstance(m, PathMark) for m in (*metadata, *getattr(annotation, "__metadata__", ()))):
        return True
    return any(_marks_path(arg) for arg in get_args(annotation))


def path_keys(model: type[BaseModel] = DsftConfig, prefix: str = "") -> tuple[str, ...]:
    """The dotted keys of the fields the schema marks as paths (``LocalPath``); ``*`` stands for every item of a
    list of sections.

    >>> path_keys()[:2], "data.mix.*.path" in path_keys()
    (('model.cache_dir', 'data.train'), True)
    """
    keys: list[str] = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        if _marks_path(field.annotation, field.metadata):
            keys.append(key)
        elif (inner := _model_in(field.annotation)) is not None:
            keys += path_keys(inner, f"{key}.*." if get_origin(field.annotation) is list else f"{key}.")
    return tuple(keys)


# The config keys a run reads as paths of this machine, relative ones from its current directory.
PATH_KEYS: tuple[str, ...] = path_keys()


def _keys_at(loc: tuple[Any, ...]) -> list[str]:
    """The keys the config accepts beside the key at ``loc`` (empty when the place is not a section)."""
    model: type[BaseModel] | None = DsftConfig
    for part in loc[:-1]:
        if isinstance(part, int):
            continue  # a list item: its model was found at the list's key
        field = model.model_fields.get(part) if model is not None else None
        model = _model_in(field.annotation) if field is not None else None
    return list(model.model_fields) if model is not None else []


def _sections_holding(key: str, besides: str | None) -> list[str]:
    """``section.key`` for every top-level section (other than ``besides``) that accepts ``key``."""
    found = []
    for section, field in DsftConfig.model_fields.items():
        model = _model_in(field.annotation)
        if section != besides and model is not None and key in model.model_fields:
            found.append(f"{section}.{key}")
    return found


def key_home(key: str) -> str | None:
    """``section.key`` where the config has ``key`` (the first section that has it), else None."""
    return next(iter(_sections_holding(key, None)), None)


def unknown_key_message(loc: tuple[Any, ...]) -> str:
    """``unknown key``, with the key meant: the same key in the section that has it (a key put at the top level
    or in the wrong section), the dsft key doing the job of another tool's key, else the accepted key it is a
    slip of (:func:`dsft.config.spelling.meant_key`).

    >>> unknown_key_message(("train", "methd"))
    "unknown key; did you mean 'method'?"
    >>> unknown_key_message(("lr",))
    "unknown key; did you mean 'train.lr'?"
    """
    if len(loc) == 2 and (meant := foreign_key_hint(str(loc[1]), str(loc[0]))) is not None:
        return meant  # a guide's word for a key that another section has under that name for something else
    if len(loc) <= 2:
        elsewhere = _sections_holding(str(loc[-1]), str(loc[0]) if len(loc) == 2 else None)
        if elsewhere:
            return "unknown key; did you mean " + " or ".join(repr(k) for k in elsewhere) + "?"
    foreign = foreign_key_hint(str(loc[-1]))
    if foreign is not None:
        return foreign
    close = meant_key(str(loc[-1]), _keys_at(loc))  # a slip of one, not any key sharing letters (project: objective)
    return f"unknown key; did you mean {close!r}?" if close else "unknown key"


QUOTED_CHARS = 200  # a value quoted back in a problem: longer ones are cut (a whole data set once filled a screen)


def _quoted(value: Any) -> str:
    """``repr(value)`` (``null``, ``true`` and ``false`` for None and the booleans, as YAML writes them), cut to
    :data:`QUOTED_CHARS` characters with how much there was.

    >>> _quoted(0.5), _quoted(None), _quoted(True), _quoted(list(range(100)))[-36:]
    ('0.5', 'null', 'true', '9, 40, 41, ... (a list of 100 items)')
    >>> len(_quoted(list(range(100)))) <= QUOTED_CHARS
    True
    """
    text = "null" if value is None else str(value).lower() if isinstance(value, bool) else repr(value)
    if len(text) <= QUOTED_CHARS:
        return text
    size = f"a list of {len(value)} items" if isinstance(value, list) else (
        f"a mapping of {len(value)} keys" if isinstance(value, dict) else f"{len(text):,} characters")
    head = text[:QUOTED_CHARS - 40]
    head = head[:head.rfind(", ")] if ", " in head else head  # end at an item, not inside one
    return f"{head}, ... ({size})"


def _section_values_named(section: dict[str, Any], message: str) -> str:
    """``, got KEY=VALUE, ...`` for the keys of ``section`` that a rule across them names (not the whole section,
    which held every other key the file or the --set wrote there too).

    >>> _section_values_named({"train": ["a.jsonl"], "val_ratio": 0.5, "test_ratio": 0.6},
    ...                       "val_ratio + test_ratio must be < 1")
    ', got val_ratio=0.5, test_ratio=0.6'
    >>> _section_values_named({"embedding_model": None, "min_similarity": 0.8}, "min_similarity needs embedding_model")
    ', got embedding_model=null, min_similarity=0.8'
    """
    named = [f"{key}={_quoted(value)}" for key, value in section.items()
             if re.search(rf"(?<![\w.]){re.escape(str(key))}(?!\w)", message)]
    return f", got {', '.join(named)}" if named else ""


def format_validation_error(exc: ValidationError) -> list[str]:
    """One line per problem, ``section.key: message, got VALUE``."""
    problems = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(root)"
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            loc = tuple(err["loc"])
            message = (len(loc) == 1 and foreign_section_hint(err.get("input"), key_home)) or unknown_key_message(loc)
        elif err["type"] != "missing" and isinstance(err.get("input"), dict) and ", got " not in message:
            message += _section_values_named(err["input"], message)  # a rule across a section's keys
        elif err["type"] != "missing" and "input" in err and ", got " not in message:  # a rule may quote it itself
            message = f"{message}, got {_quoted(err['input'])}"
            if key == "template.name" and isinstance(err["input"], str) and (hint := template_name_hint(err["input"])):
                message += f"; did you mean {hint!r}?"  # vLLM's parser name deepseek_r1, the short r1
        problems.append(f"{key}: {message}")
    return problems


def validate_config(raw: dict[str, Any], source: str = "config", set_flags: Sequence[str] = (),
                    flags: Sequence[tuple[str, str]] = ()) -> DsftConfig:
    """``raw`` as a config, or one :class:`ConfigError` listing every problem, labelled by
    :func:`problems_source` (``source``, or the ``set_flags`` or command ``flags`` that caused them)."""
    try:
        return DsftConfig.model_validate(raw)
    except ValidationError as exc:
        problems = format_validation_error(exc)
        raise ConfigError(f"{problems_source(source, set_flags, problems, flags=flags)}: {len(problems)} problem(s)",
                          problems) from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """`` at line L, column C: PROBLEM (CONTEXT at line L, column C)``: one line, lines counted from 1."""
    mark, problem = getattr(exc, "problem_mark", None), getattr(exc, "problem", None)
    if mark is None or not problem:
        return f": {' '.join(str(exc).split())}"
    text = f" at line {mark.line + 1}, column {mark.column + 1}: {problem}"
    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and context_mark is not None:
        text += f" ({context} at line {context_mark.line + 1}, column {context_mark.column + 1})"
    return text


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, not a config file (a YAML file such as examples/tiny-cpu.yaml)")
    try:
        data = path.read_bytes()
        text = data.decode("utf-8")
        # UTF-16/32 without a byte-order mark decodes as UTF-8, full of NULs, which YAML refuses saying nothing of it.
        wide = wide_text_hint(data[:4096]) if "\x00" in text[:4096] else ""
        if wide:
            raise ConfigError(f"{path}: not UTF-8 text{wide}")
        raw = load_yaml(text)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read as a config file ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        if _first_line_is_a_json_object(text):
            raise ConfigError(_data_not_config(path, "JSON lines, one record a line")) from None
        raise ConfigError(f"{path}: not valid YAML{_yaml_problem(exc)}") from None
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{path}: not UTF-8 text (line {line}){encoding_hint(data)}") from None
    if raw is None:
        return {}
    if isinstance(raw, list) and raw and all(isinstance(item, dict) for item in raw):
        raise ConfigError(_data_not_config(path, f"a JSON array of {len(raw)} records"))
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(raw).__name__}")
    if isinstance(raw.get("data"), list):  # guide 004's {"data": [{"input", "output"}, ...]}
        raise ConfigError(_data_not_config(path, f'{{"data": [...]}} with {len(raw["data"])} records'))
    if (asked := deepspeed_config_keys(raw)) is not None:  # guide 000's ds_config.json
        raise ConfigError(f"{path}: a DeepSpeed config, not a dsft config; dsft writes the DeepSpeed config into the "
                          f"run directory from its own keys, here {asked}: set them in a YAML config (e.g. "
                          "examples/tiny-cpu.yaml) or with --set, and give that config")
    return raw


def _first_line_is_a_json_object(text: str) -> bool:
    first = next((line for line in text.splitlines() if line.strip()), "")
    try:
        return isinstance(json.loads(first), dict)
    except ValueError:
        return False


def _data_not_config(path: Path, what: str) -> str:
    """The refusal of a data file given where a config goes (``dsft train data.json``), which YAML read as a config
    whose ``data`` section held the whole data set (every record printed back as the value it 'got')."""
    return (f"{path}: data ({what}), not a config; give a YAML config that names it in data.train, e.g. dsft train "
            f"examples/tiny-cpu.yaml --out RUN --set data.train={path}")


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None, preset: str | None = None,
    set_flags: Sequence[str] = (), flags: Sequence[tuple[str, str]] = (),
) -> DsftConfig:
    """Read YAML (or start from defaults), apply a size ``preset``, then ``--set`` overrides, and validate
    everything at once.

    ``set_flags`` (opt-in): those of ``overrides`` the user typed as ``--set``; problems they caused are
    labelled with them, as preflight's are (:func:`problems_source`). Overrides a program adds (the dashboard's
    form, the demo's own settings) are left out: the user typed no such flag. ``flags``: a command's own options
    that set a key, as (``KEY=VALUE``, the option as typed), applied after ``overrides`` and labelled as typed.
    Problems nothing in ``set_flags`` or ``flags`` names are labelled with the file (``config`` without one).

    Relative data paths stay relative to the current directory, as a user typed them.
    """
    raw = read_yaml(path) if path is not None else {}
    if preset is not None:
        raw = apply_overrides(raw, get_preset(preset).overrides())
    raw = apply_overrides(raw, [*(overrides or []), *(text for text, _ in flags)])
    return validate_config(raw, str(path) if path else "config", set_flags, flags)


def preset_notice(path: str | Path | None, preset: str | None, kept: Sequence[str] = ()) -> str | None:
    """What :func:`load_config` with this ``preset`` replaced of the config file at ``path`` (named once the config
    loaded): see :func:`dsft.config.presets.replaced_by_preset`. ``kept``: the ``--set`` (``--grid``, ``--range``)
    values given, whose keys neither the file nor the preset decides."""
    if path is None or preset is None:
        return None
    return replaced_by_preset(read_yaml(path), get_preset(preset), kept, str(path))


def dump_config(config: DsftConfig) -> str:
    """The resolved config as YAML, defaults included."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def save_config(config: DsftConfig, path: str | Path) -> None:
    Path(path).write_text(dump_config(config), encoding="utf-8")


def describe_config(config: DsftConfig) -> list[tuple[str, Any, str]]:
    """(dotted key, value, description) for every field; the help text of ``dsft config show``."""
    rows: list[tuple[str, Any, str]] = []

    def walk(model: Any, prefix: str) -> None:
        for name, field in type(model).model_fields.items():
            value = getattr(model, name)
            key = f"{prefix}{name}"
            if hasattr(value, "model_fields"):
                walk(value, key + ".")
            else:
                rows.append((key, value, field.description or ""))

    walk(config, "")
    return rows
