"""Serving mistakes a user makes at start: each is one message and exit 2, and nothing hangs."""

from __future__ import annotations

import doctest
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dsft.errors import DsftError
from dsft.serve import openai_errors
from dsft.serve.app import create_app
from dsft.serve.engine import TransformersEngine
from dsft.serve.server import run_server
from dsft.serve.settings import ServeSettings
from live_server import free_port


def _dsft(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dsft", *args], capture_output=True, text=True, timeout=timeout)


def test_quantize_4bit_is_refused_before_the_port_opens(serve_model_dir: Path) -> None:
    """It used to load in the background, fail there, and answer 503 on /health forever."""
    done = _dsft("serve", str(serve_model_dir), "--quantize", "4bit", "--port", str(free_port()))
    assert done.returncode == 2, done.stderr
    assert "--quantize 4bit" in done.stderr and "Traceback" not in done.stderr


def test_port_in_use_is_a_user_error(serve_model_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _dsft("serve", str(serve_model_dir), "--port", str(port))
    assert done.returncode == 2, done.stderr
    assert f"--port {port}" in done.stderr and "Traceback" not in done.stderr


def test_a_model_that_fails_to_load_stops_the_server() -> None:
    def broken_load() -> Any:
        raise DsftError("/models/x: could not load the model (no weights)")

    errors: list[BaseException] = []

    def serve() -> None:
        try:
            run_server(TransformersEngine(broken_load), ServeSettings(port=free_port()), log_level="warning")
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive(), "the server kept running with a model that cannot load"
    assert len(errors) == 1 and "no weights" in str(errors[0])


def test_malformed_json_body_names_the_problem_not_a_position() -> None:
    client = TestClient(create_app(TransformersEngine(lambda: None), ServeSettings()))
    reply = client.post("/v1/chat/completions", content=b'{"model": "m", "messages": [',
                        headers={"Content-Type": "application/json"})
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert "not valid JSON" in error["message"] and error["param"] is None


def test_a_body_not_in_utf8_names_the_encoding() -> None:
    """A Chinese-locale Windows curl sends GBK bytes; the answer was FastAPI's 'There was an error parsing the body'."""
    client = TestClient(create_app(TransformersEngine(lambda: None), ServeSettings()))
    body = '{"messages": [{"role": "user", "content": "发烧怎么办？"}]}'.encode("gbk")
    reply = client.post("/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
    assert reply.status_code == 400
    error = reply.json()["error"]
    start = body.index("发".encode("gbk"))
    assert error["message"].startswith(f"the request body is not valid UTF-8 (byte 0x{body[start]:02X} at byte {start})")
    assert "GBK/GB18030" in error["message"]
    assert error["type"] == "invalid_request_error" and error["param"] is None
    assert doctest.testmod(openai_errors).failed == 0  # undecodable_body_message's worked example


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", None])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/generate"])
def test_a_body_not_sent_as_json_names_the_header_and_the_curl_flag(path: str, content_type: str | None) -> None:
    """``curl -d '{...}'`` sends a form: the answer was pydantic's 'body: Input should be a valid dictionary'."""
    client = TestClient(create_app(TransformersEngine(lambda: None), ServeSettings()))
    headers = {"Content-Type": content_type} if content_type else {}
    reply = client.post(path, content=b'{"messages": [{"role": "user", "content": "hi"}]}', headers=headers)
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["message"].startswith("the request body must be JSON sent with Content-Type: application/json; ")
    assert (content_type or "no Content-Type header") in error["message"]
    assert "-H 'Content-Type: application/json'" in error["message"]
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_request"


@pytest.mark.parametrize(("body", "kind"), [(b"[1, 2]", "an array"), (b'"hi"', "a string"), (b"3", "a number"),
                                            (b"null", "null")])
def test_a_json_body_that_is_not_an_object_says_what_it_is(body: bytes, kind: str) -> None:
    client = TestClient(create_app(TransformersEngine(lambda: None), ServeSettings()))
    reply = client.post("/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
    assert reply.status_code == 400
    message = reply.json()["error"]["message"]
    assert message == f'the request body must be a JSON object, e.g. {{"messages": [...]}}; this one is {kind}'
    assert doctest.testmod(openai_errors).failed == 0  # body_not_an_object_message's worked examples
