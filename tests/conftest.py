"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Path]]:
    """A function ``name -> Path`` giving tiny preset ``name`` as an HF checkpoint, written once per session.

    Presets go through :func:`dsft.models.resolve.resolve_model` with a session cache directory, and
    ``DSFT_CACHE`` points there for the session (subprocesses included), so tests never touch
    ``~/.cache``. Treat the returned directories as read-only.
    """
    from dsft.models.resolve import resolve_model

    cache = tmp_path_factory.mktemp("dsft-cache")
    written: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in written:
            written[name] = resolve_model(name, cache_dir=cache)
        return written[name]

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DSFT_CACHE", str(cache))
        yield get


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[[list[str]], tuple[int, str, str]]:
    """Run ``dsft ARGS`` in-process: ``run_cli(args) -> (exit code, stdout, stderr)``.

    The exit code is 0 when the command returns normally, else that of its ``SystemExit``. The output is
    read from ``capsys`` (and so cleared there), one call's output at a time.
    """
    from dsft.cli.app import main

    def run(args: list[str]) -> tuple[int, str, str]:
        try:
            main(args)
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run
