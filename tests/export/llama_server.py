"""llama.cpp's own ``llama-server`` for tests: find the binary, serve a GGUF file, ask it for prompts.

``llama-server`` is not a Python package: it is built from llama.cpp's source (the ``llama-server`` cmake
target; llama-cpp-python's sdist vendors that source under ``vendor/llama.cpp``). Tests that need it skip,
saying so, when neither ``DSFT_LLAMA_SERVER`` (the binary's path) nor ``llama-server`` on PATH names one.
Only ``/apply-template`` and ``/tokenize`` are used: the prompt a chat request becomes, without generating.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from http_ready import wait_until_healthy

ENV_VAR = "DSFT_LLAMA_SERVER"
MISSING_REASON = (f"llama-server not found: set {ENV_VAR}=/path/to/llama-server or put it on PATH (build it from "
                  "llama.cpp's source: cmake -B build && cmake --build build --target llama-server)")


def find_llama_server() -> str | None:
    """The ``llama-server`` binary: ``$DSFT_LLAMA_SERVER`` if set (and executable), else ``llama-server`` on PATH."""
    configured = os.environ.get(ENV_VAR)
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    return shutil.which("llama-server")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LlamaServer:
    """A running ``llama-server -m GGUF --jinja`` on a loopback port."""

    base_url: str

    def apply_template(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None,
                       chat_template_kwargs: dict[str, Any] | None = None) -> str:
        """The prompt text llama-server builds from a chat request (``POST /apply-template``)."""
        body: dict[str, Any] = {"messages": messages}
        if tools:
            body["tools"] = tools
        if chat_template_kwargs is not None:
            body["chat_template_kwargs"] = chat_template_kwargs
        response = httpx.post(self.base_url + "/apply-template", json=body, timeout=60)
        response.raise_for_status()
        return str(response.json()["prompt"])

    def prompt_ids(self, prompt: str) -> list[int]:
        """The token ids llama-server generates from for ``prompt``: BOS added as the GGUF says, special
        tokens parsed, as for a chat completion."""
        response = httpx.post(self.base_url + "/tokenize", timeout=60,
                              json={"content": prompt, "add_special": True, "parse_special": True})
        response.raise_for_status()
        return [int(token) for token in response.json()["tokens"]]


@contextmanager
def serve_gguf(binary: str, gguf: Path, log: Path, *extra: str) -> Iterator[LlamaServer]:
    """``llama-server -m GGUF --jinja EXTRA...`` until the block ends (its output goes to ``log``).

    ``--no-repack``: on a CPU with AMX, llama.cpp (llama-cpp-python 0.3.36) repacks the tiny models' 64-wide rows
    into its extra buffer type and then aborts while scheduling the graph (ggml-backend.cpp:1294,
    ``GGML_ASSERT(*cur_backend_id != -1)``, from ``llama_context::resolve_fused_ops``); the tests compare prompts,
    not speed, so the server keeps the plain CPU buffers, as dsft's verification does (gguf_verify.load_llama)."""
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [binary, "-m", str(gguf), "--jinja", "--host", "127.0.0.1", "--port", str(port), "-c", "512",
             "-t", "1", "--no-warmup", "--no-repack", *extra], stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_until_healthy(base_url, process, log.read_text, "llama-server", 120)
            yield LlamaServer(base_url)
        finally:
            process.terminate()
            process.wait(timeout=30)
