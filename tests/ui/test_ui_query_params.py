"""A dashboard query parameter that is missing or not what it takes is refused in one line naming the parameter and
what it takes, as dsft's other refusals are: it was pydantic's `query.run: Field required` or `query.wrong: Input
should be a valid integer, unable to parse string as an integer`."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from dsft.ui.app import create_app
from dsft.ui.query_params import TAKES

POST = {"x-dsft-ui": "1"}


def client(root: Path) -> TestClient:
    return TestClient(create_app(root, poll_s=0.01), base_url="http://127.0.0.1")


@pytest.mark.parametrize("method, path, name, example", [
    ("GET", "/api/run", "run", "?run=my-run"),
    ("GET", "/api/run/events", "run", "?run=my-run"),
    ("POST", "/api/run/stop", "run", "?run=my-run"),
    ("GET", "/file", "path", "?path="),
    ("GET", "/api/prepared", "name", "?name="),
    ("POST", "/api/data/upload", "name", "?name=train.jsonl"),
    ("GET", "/api/job", "id", "?id=ID"),
    ("POST", "/api/job/stop", "id", "?id=ID"),
])
def test_a_missing_query_parameter_is_named_with_what_it_takes(runs_root: Path, method: str, path: str, name: str,
                                                               example: str) -> None:
    answer = client(runs_root).request(method, path, headers=POST if method == "POST" else {})
    assert answer.status_code == 400
    message = answer.json()["error"]
    assert message.startswith(f"query parameter {name}: missing; give ") and example in message, message
    assert "Field required" not in message and "query." not in message


@pytest.mark.parametrize("value", ["x", "1.5", "", "2", "-1", "01"])
def test_a_query_parameter_of_the_wrong_kind_is_named_with_what_it_takes_and_what_came(runs_root: Path,
                                                                                      value: str) -> None:
    answer = client(runs_root).get(f"/login?wrong={value}")
    assert answer.status_code == 400
    assert answer.json()["error"] == f"query parameter wrong: expected 0 or 1 (1: the key given was wrong), " \
                                     f"got {value!r}", answer.json()
    page = client(runs_root).get(f"/login?wrong={value}", headers={"accept": "text/html"})
    assert page.status_code == 400 and "query parameter wrong: expected 0 or 1" in page.text
    assert "int_parsing" not in page.text and "valid integer" not in page.text


@pytest.mark.parametrize("value, wrong_shown", [("0", False), ("1", True)])
def test_the_login_page_takes_wrong_0_or_1(runs_root: Path, value: str, wrong_shown: bool) -> None:
    page = client(runs_root).get(f"/login?wrong={value}", headers={"accept": "text/html"})
    assert page.status_code == 200 and ("Wrong key." in page.text) == wrong_shown


def test_every_required_or_typed_query_parameter_says_what_it_takes(runs_root: Path) -> None:
    """A route added later with a required or non-text query parameter gets its line in TAKES, not 'a value'."""
    app = create_app(runs_root)
    needing = set()
    for route in app.routes:
        if isinstance(route, APIRoute):
            for param in route.dependant.query_params:
                if param.field_info.is_required() or param.field_info.annotation not in (str, str | None):
                    needing.add((route.path, param.name))
    assert needing == set(TAKES), needing ^ set(TAKES)
