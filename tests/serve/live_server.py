"""A live server for tests: uvicorn running the app in a background thread on a free loopback port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

API_KEY = "test-key"


@dataclass
class LiveServer:
    """A uvicorn server running ``create_app(engine, settings)`` in a background thread."""

    base_url: str
    engine: Any
    settings: Any

    def client(self, **kwargs: Any) -> Any:
        """An official ``openai`` client for this server (no retries: tests want the first answer)."""
        import openai

        options = {"api_key": self.settings.api_key or "unused", "max_retries": 0, "timeout": 60, **kwargs}
        return openai.OpenAI(base_url=self.base_url + "/v1", **options)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def run_live(engine: Any, settings: Any, wait_ready: bool = True) -> Iterator[LiveServer]:
    """Serve on a free 127.0.0.1 port until the block ends."""
    import uvicorn

    from dsft.serve.app import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(engine, settings), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            status = httpx.get(base_url + "/health", timeout=5).status_code
            if status == 200 or (not wait_ready and server.started):
                break
        except httpx.TransportError:
            pass
        if time.time() > deadline:
            raise RuntimeError("the test server did not become ready in 120 s")
        time.sleep(0.05)
    try:
        yield LiveServer(base_url, engine, settings)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
