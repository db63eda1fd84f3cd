"""The schema is the one owner of which config keys are paths: every path-valued field is marked ``LocalPath``
and the path keys (the dashboard's, and anyone else's) are derived from the marks."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from dsft.config import DsftConfig
from dsft.config.loader import PATH_KEYS, _model_in

# Fields that name a file or directory but may as well hold a name that looks like a relative path, so they are
# deliberately not rewritten as paths: a hub id (deepseek-ai/DeepSeek-R1) or an ollama: name; a bundled encoder.
NAMES_OR_PATHS = {"model.name_or_path", "data.clean.semantic.embedding_model"}

PATH_WORDS_IN_NAME = re.compile(r"path|dir|file|cache|table|references|synonyms_")
PATH_WORDS_IN_HELP = re.compile(r"\b(files?|director(y|ies)|globs?|paths?)\b", re.IGNORECASE)


def _leaf_fields(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, FieldInfo]]:
    for name, field in model.model_fields.items():
        inner = _model_in(field.annotation)
        key = f"{prefix}{name}"
        if inner is None:
            yield key, field
        else:
            yield from _leaf_fields(inner, f"{key}.*." if get_origin(field.annotation) is list else f"{key}.")


def _holds_text(annotation: Any) -> bool:
    return annotation is str or any(_holds_text(arg) for arg in get_args(annotation))


def test_every_field_that_reads_as_a_path_is_marked_as_one() -> None:
    """A new path field left as a plain ``str`` would silently not be resolved (e.g. by the dashboard)."""
    suggested = {key for key, field in _leaf_fields(DsftConfig)
                 if _holds_text(field.annotation) and (PATH_WORDS_IN_NAME.search(key.rsplit(".", 1)[-1])
                                                       or PATH_WORDS_IN_HELP.search(field.description or ""))}
    assert NAMES_OR_PATHS <= suggested, "an exemption no longer needed: drop it"
    assert suggested - NAMES_OR_PATHS == set(PATH_KEYS), (
        "mark path fields LocalPath in dsft.config.schema (or exempt a name-or-path field here, saying why)")


def test_path_keys_name_text_fields_of_the_schema() -> None:
    fields = dict(_leaf_fields(DsftConfig))
    assert PATH_KEYS and len(set(PATH_KEYS)) == len(PATH_KEYS)
    for key in PATH_KEYS:
        assert key in fields and _holds_text(fields[key].annotation), key
    assert {"data.train", "data.mix.*.path", "data.augment.templates.*.table", "model.cache_dir"} <= set(PATH_KEYS)
    assert not NAMES_OR_PATHS & set(PATH_KEYS)
