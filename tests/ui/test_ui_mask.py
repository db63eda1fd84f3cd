"""The mask view: known supervised tokens of a conversation, special tokens flagged, the root fence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from dsft.ui.app import create_app

POST = {"x-dsft-ui": "1"}
CONVERSATION = {"messages": [{"role": "user", "content": "Which river is longest?"},
                             {"role": "assistant", "content": "The Nile is the longest."}]}


@pytest.fixture
def client(runs_root: Path) -> TestClient:
    (runs_root / "chat.jsonl").write_text(json.dumps(CONVERSATION) + "\n", encoding="utf-8")
    return TestClient(create_app(runs_root), base_url="http://127.0.0.1")


def test_supervised_tokens_are_the_answer_and_its_eos(client: TestClient) -> None:
    got = client.post("/api/mask", headers=POST, json={"source": "chat.jsonl", "tokenizer": "deepseek",
                                                       "template": "deepseek-v3"}).json()
    supervised = "".join(t["text"] for t in got["tokens"] if t["supervised"])
    context = "".join(t["text"] for t in got["tokens"] if not t["supervised"])
    assert supervised == "The Nile is the longest.<｜end▁of▁sentence｜>"
    assert "Which river is longest?" in context and "The Nile" not in context
    special = [t["text"] for t in got["tokens"] if t["special"]]
    assert special[0] == "<｜begin▁of▁sentence｜>" and "<｜end▁of▁sentence｜>" in special
    assert got["counts"]["supervised"] == sum(1 for t in got["tokens"] if t["supervised"])  # one piece a token here
    assert got["template"] == "deepseek-v3" and got["masking"] == "assistant"


def test_a_run_renders_with_its_own_model_and_template(client: TestClient, runs_root: Path, tiny_model_dir) -> None:
    tiny_model_dir("tiny-deepseek-v3")
    (runs_root / "alpha" / "data" / "train.jsonl").write_text(json.dumps(CONVERSATION) + "\n", encoding="utf-8")
    (runs_root / "alpha" / "config.yaml").write_text(
        "model:\n  name_or_path: tiny-deepseek-v3\ntemplate:\n  name: deepseek-r1\n  masking: all\n", encoding="utf-8")
    got = client.post("/api/mask", headers=POST, json={"source": "alpha"}).json()
    assert got["template"] == "deepseek-r1" and got["masking"] == "all"
    assert got["counts"]["unsupervised"] == 0


def test_data_page_lists_sources(client: TestClient) -> None:
    page = client.get("/data").text
    assert "<option value='chat.jsonl'>" in page and "<option value='alpha'>" in page
    assert "metrics.jsonl" not in page


@pytest.mark.parametrize("body, message", [
    ({"source": "../outside.jsonl", "tokenizer": "deepseek"}, "source ../outside.jsonl: outside the runs root"),
    ({"source": "chat.jsonl", "tokenizer": "../outside"}, "tokenizer ../outside: outside the runs root"),
    ({"source": "chat.jsonl", "tokenizer": "garbage"}, "tokenizer garbage: no such file"),
    ({"source": "chat.jsonl", "tokenizer": "alpha"}, "tokenizer alpha"),
    ({"source": "chat.jsonl", "tokenizer": "deepseek", "template": "nope"}, "template nope"),
    ({"source": "chat.jsonl", "tokenizer": "deepseek", "index": 5}, "chat.jsonl: no record 5 (it holds 1; the first is 0)"),
    # Named by the form's label, as the other refusals of the record number; 2.5 was read as record 2.
    ({"source": "chat.jsonl", "tokenizer": "deepseek", "index": "x"}, "record: expected a whole number, got 'x'"),
    ({"source": "chat.jsonl", "tokenizer": "deepseek", "index": 2.5}, "record: expected a whole number, got 2.5"),
    ({"source": ""}, "source: missing; name a data file"),
    ({}, "source: missing; name a data file"),
    ({"messages": [{"role": "user", "content": "hi"}]}, "source: missing; name a data file"),
])
def test_bad_requests_name_what_is_wrong(client: TestClient, runs_root: Path, body: dict, message: str) -> None:
    (runs_root.parent / "outside.jsonl").write_text(json.dumps(CONVERSATION) + "\n", encoding="utf-8")
    response = client.post("/api/mask", headers=POST, json=body)
    assert response.status_code in (400, 404) and message in response.json()["error"], response.text


def test_mask_needs_the_dashboard_header(client: TestClient) -> None:
    assert client.post("/api/mask", json={"source": "chat.jsonl"}).status_code == 403


def test_a_record_holding_a_control_token_is_refused_by_its_record_number(client: TestClient, runs_root: Path) -> None:
    """The view showed '<|EOT|>' typed in a question as the real token, a record preparation rejects."""
    quoted = {"messages": [{"role": "user", "content": "What is <|EOT|>?"}, {"role": "assistant", "content": "A marker."}]}
    (runs_root / "quoted.jsonl").write_text(json.dumps(CONVERSATION) + "\n" + json.dumps(quoted) + "\n", encoding="utf-8")
    response = client.post("/api/mask", headers=POST, json={"source": "quoted.jsonl", "tokenizer": "deepseek",
                                                            "template": "deepseek-v3", "index": 1})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert "quoted.jsonl:2: record 1 is invalid (choose another record)" in error and "'<|EOT|>'" in error
