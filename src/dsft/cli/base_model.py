"""The command line's ``--base-model`` flag, one owner for the commands that open a run's weights (``dsft eval``,
``dsft compare``, ``dsft export``, ``dsft serve``, ``dsft chat``): its help, and what a run whose base model is not
found tells the user to do there (the library's error says no front end's flag,
:class:`dsft.training.base_model.BaseModelNotFound`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from dsft.cli.empty_paths import empty_refused
from dsft.errors import DsftError

HELP = ("Where a moved LoRA run finds its base model (directory, hub id or tiny preset) [default: as recorded in "
        "run.json].")
HINT = "pass the base model with --base-model PATH_OR_ID (a model directory, hub id or tiny preset)"
# The flag's parser: '' (an unset shell variable) is refused under the flag, not read as no --base-model.
GIVEN = empty_refused("--base-model", "a model directory, a hub id or a tiny preset")

Command = TypeVar("Command", bound=Callable[..., Any])


def names_the_flag(command: Command) -> Command:
    """``command`` (one that takes ``--base-model``), where a run's base model is not found, saying to pass it."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except DsftError as exc:
            # Imported here, on the error path only (it loads pydantic): `dsft --help` stays instant.
            from dsft.training.base_model import BaseModelNotFound

            if isinstance(exc, BaseModelNotFound):
                raise exc.with_hint(HINT) from exc
            raise

    return run  # type: ignore[return-value]
