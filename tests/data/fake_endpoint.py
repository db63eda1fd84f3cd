"""A scripted OpenAI-compatible chat endpoint for tests: each request's reply is decided by a Python function.

``reply(body, count) -> Reply`` gets the request body and how many requests with the same last user
message came before (so a script can fail twice, then answer). Runs ``http.server`` on a free loopback
port in a background thread.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """What the endpoint answers: an HTTP status, a chat message (or a raw body), headers, a delay in seconds."""

    status: int = 200
    content: str = ""
    reasoning: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    raw: str | None = None


def ok(content: str, reasoning: str | None = None) -> Reply:
    return Reply(200, content, reasoning)


@dataclass
class FakeEndpoint:
    base_url: str
    requests: list[dict[str, Any]]
    counts: Counter[str]


def last_user(body: dict[str, Any]) -> str:
    return [m for m in body["messages"] if m["role"] == "user"][-1]["content"]


@contextmanager
def fake_endpoint(reply: Callable[[dict[str, Any], int], Reply]) -> Iterator[FakeEndpoint]:
    requests: list[dict[str, Any]] = []
    counts: Counter[str] = Counter()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                requests.append({**body, "authorization": self.headers.get("Authorization")})
                key = last_user(body)
                count = counts[key]
                counts[key] += 1
            answer = reply(body, count)
            time.sleep(answer.delay)
            if answer.raw is not None:
                payload = answer.raw
            elif answer.status == 200:
                message: dict[str, Any] = {"role": "assistant", "content": answer.content}
                if answer.reasoning is not None:
                    message["reasoning_content"] = answer.reasoning
                payload = json.dumps({"id": "x", "object": "chat.completion", "model": body["model"],
                                      "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]})
            else:
                payload = json.dumps({"error": {"message": f"scripted {answer.status}"}})
            data = payload.encode("utf-8")
            try:
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield FakeEndpoint(f"http://127.0.0.1:{server.server_address[1]}/v1", requests, counts)
    finally:
        server.shutdown()
        server.server_close()
