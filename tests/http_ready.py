"""Waiting for a server a test started as a subprocess: its ``/health`` answers 200, or the test fails with the
end of what the server printed (it exited, or did not become ready in time)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

import httpx


def wait_until_healthy(base_url: str, process: subprocess.Popen, output: Callable[[], str], name: str,
                       timeout_s: float, poll_s: float = 0.05) -> None:
    deadline = time.time() + timeout_s
    while True:
        if process.poll() is not None:
            raise AssertionError(f"{name} exited with {process.returncode}: {output()[-2000:]}")
        try:
            if httpx.get(base_url + "/health", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.time() > deadline:
            raise AssertionError(f"{name} did not become ready in {timeout_s:g} s: {output()[-2000:]}")
        time.sleep(poll_s)
