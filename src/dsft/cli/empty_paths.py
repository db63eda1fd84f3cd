"""An empty path on the command line ('' from an unset shell variable) is refused, naming its parameter; so is a
file's name ending in '/' (``data.jsonl/``), which typer's ``Path`` reads as the file (see
:func:`dsft.disk.file_as_directory_reason`).

typer reads '' as ``Path('')``, which is the current directory: ``dsft train ""`` said ``.: is a directory``,
``--out ""`` wrote into the current directory, ``dsft ui --runs ""`` served it. This module is the one owner of
that refusal: :func:`refuse_empty_paths` gives every ``Path`` parameter of every command a parser that refuses
''; a text parameter that names a file or a model (``--tokenizer``, ``--messages``) takes
:func:`empty_refused` as its parser. Both raise at parse time, before a command's body runs or imports anything.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

import typer

from dsft.disk import file_as_directory_reason
from dsft.errors import DsftError

ANY_PATH = "a path ('.' for the current directory)"
A_MODEL_OR_RUN = "a model or run directory, a tiny preset or a hub id"
SOME_DATA = "a data file, a directory ('.' for the current one) or a glob"


def refuse_empty(value: str, name: str, wanted: str = ANY_PATH) -> None:
    """Raise the one message for '' given as ``name`` (``--out``, ``CONFIG``); ``wanted`` says what to give.

    >>> refuse_empty("", "--out")
    Traceback (most recent call last):
    ...
    dsft.errors.DsftError: --out '': an empty path names nothing; give a path ('.' for the current directory)
    """
    if value == "":
        raise DsftError(f"{name} '': an empty path names nothing; give {wanted}")


def empty_refused(name: str, wanted: str = ANY_PATH, convert: Callable[[Any], Any] = str) -> Callable[[Any], Any]:
    """A typer ``parser`` for the parameter ``name``: '' is refused (:func:`refuse_empty`), and a file's name ending
    in '/', else ``convert(value)``."""

    def parse(value: Any) -> Any:
        if isinstance(value, str):
            refuse_empty(value, name, wanted)
            if (reason := file_as_directory_reason(value)) is not None:
                raise DsftError(f"{name} {value}: {reason}")
        return convert(value)

    parse.__name__ = "path" if convert is Path else "text"  # the metavar typer shows where it reads the type's name
    return parse


def parameter_name(parameter: inspect.Parameter, info: typer.models.ParameterInfo) -> str:
    """How the user knows the parameter: its first ``--flag``, or an argument's metavar (``CONFIG``)."""
    if isinstance(info, typer.models.OptionInfo):
        flags = [d for decl in (info.param_decls or ()) for d in decl.split("/") if d.startswith("--")]
        if flags:
            return flags[0]
        return "--" + parameter.name.replace("_", "-")
    return info.metavar or parameter.name.upper()


def _is_path(annotation: Any) -> bool:
    """``Path`` or ``Path | None``."""
    return annotation is Path or Path in get_args(annotation)


def refuse_empty_paths(group: typer.Typer) -> None:
    """Give every ``Path`` parameter of every command under ``group`` a parser refusing ''; a parameter that
    already has a parser (:func:`empty_refused` with its own wording) keeps it."""
    for command in group.registered_commands:
        for parameter in inspect.signature(command.callback, eval_str=True).parameters.values():
            info = parameter.default
            if isinstance(info, typer.models.ParameterInfo) and info.parser is None and _is_path(parameter.annotation):
                info.parser = empty_refused(parameter_name(parameter, info), convert=Path)
    for subgroup in group.registered_groups:
        refuse_empty_paths(subgroup.typer_instance)
