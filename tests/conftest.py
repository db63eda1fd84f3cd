"""Shared fixtures, and one torch thread for every test."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """One intra-op torch thread here, and ``OMP_NUM_THREADS=1`` for the processes started meanwhile (``dsft
    train``, ``dsft serve``, torchrun ranks); both restored after. Torch, when this process imports it meanwhile,
    starts with one thread and keeps it.

    The tests' models are tiny (and SmolLM2-135M): on a shared 2-core machine two threads lose more to OpenMP
    hand-offs than the second thread gains. Measured on the GRPO test (12 steps of tiny R1-Distill-Qwen) at load
    3-6: 258 s wall and 84 CPU-s with two threads, 114 s and 30 CPU-s with one; the real-model step-0 loss test:
    9 min 25 s and 236 CPU-s with two, 3 min 2 s and 77 CPU-s with one.
    """
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        if torch is not None:
            torch.set_num_threads(1)
        try:
            yield
        finally:
            if torch is not None:
                torch.set_num_threads(before)


# Each phase of every test runs single-threaded, setup included (so the session fixtures that build or load a
# model once); a fixture could not do that for the session fixtures set up before it.
@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    with one_torch_thread():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    with one_torch_thread():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    with one_torch_thread():
        return (yield)


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
