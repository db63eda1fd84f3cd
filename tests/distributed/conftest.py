"""Shared by the multi-process tests: run `dsft train` in one process or under torchrun."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from torchrun_helpers import train_in_processes

TrainFn = Callable[[list[str], int, Path], None]


@pytest.fixture(scope="session")
def train_run() -> TrainFn:
    """``train_run(args, processes, cwd)``: see :func:`train_in_processes`."""
    return train_in_processes
