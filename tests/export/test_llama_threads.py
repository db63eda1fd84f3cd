"""GGUF verification runs llama.cpp on torch's thread count, the one CPU thread setting dsft follows
(``OMP_NUM_THREADS``, ``torch.set_num_threads``), for single tokens and prompt batches: it was fixed at 2 threads
(batches on every logical CPU, llama-cpp-python's default) whatever the machine or the setting.

llama-cpp-python stands in as a module that records what ``Llama`` is given, so this runs without it installed.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch

from dsft.export.gguf_verify import load_llama


def _recording_llama_cpp(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Install a stand-in ``llama_cpp``; returns the keyword arguments its ``Llama`` was last built with."""
    given: dict[str, Any] = {}

    class Llama:
        def __init__(self, **kwargs: Any) -> None:
            given.update(kwargs)

    low_level = types.ModuleType("llama_cpp.llama_cpp")
    low_level.llama_model_default_params = lambda: types.SimpleNamespace(use_extra_bufts=True)
    low_level.GGML_TYPE_F32 = 0
    package = types.ModuleType("llama_cpp")
    package.Llama, package.llama_cpp = Llama, low_level
    monkeypatch.setitem(sys.modules, "llama_cpp", package)
    monkeypatch.setitem(sys.modules, "llama_cpp.llama_cpp", low_level)
    return given


@pytest.mark.parametrize("threads", [1, 3])
def test_llama_cpp_computes_on_torch_s_thread_count(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                    threads: int) -> None:
    given = _recording_llama_cpp(monkeypatch)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        load_llama(tmp_path / "model.gguf")
    finally:
        torch.set_num_threads(before)
    assert given["n_threads"] == threads and given["n_threads_batch"] == threads, given
