"""Headless Debian Chromium driven by Selenium, and the dashboard served on a free loopback port."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,1000")


def missing_browser() -> str | None:
    try:
        import selenium  # noqa: F401 - only checking that it is installed
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    for binary in ("chromium", "chromedriver"):
        if shutil.which(binary) is None:
            return f"{binary} not found (apt-get install chromium chromium-driver; .ci/run installs them)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(app: Any) -> Iterator[str]:
    """Run ``app`` under uvicorn in a thread; yield its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the dashboard did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def left_the_page(exc: Exception) -> bool:
    """Whether a WebDriver error only says the element went away with a page reload (the runs and run pages
    refresh themselves): a stale reference, or Chrome's inspector saying the node left the document."""
    from selenium.common.exceptions import StaleElementReferenceException  # optional test dependency

    return isinstance(exc, StaleElementReferenceException) or "does not belong to the document" in str(exc)


def text(driver: Any, css: str) -> str:
    """The text of the first element matching ``css``, or "" while the page is (re)loading."""
    from selenium.common.exceptions import WebDriverException  # optional test dependency

    try:
        found = driver.find_elements("css selector", css)
        return found[0].text if found else ""
    except WebDriverException as exc:
        if not left_the_page(exc):
            raise
        return ""


def fill(driver: Any, fields: dict[str, str]) -> None:
    """Type ``value`` into each form field ``id`` (cleared first)."""
    for field, value in fields.items():
        element = driver.find_element("id", field)
        element.clear()
        element.send_keys(value)
