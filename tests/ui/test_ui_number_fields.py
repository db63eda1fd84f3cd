"""The dashboard's whole-number fields read a number as the CLI reads the flag they stand for
(:func:`dsft.whole_numbers.whole_number`): a full-width "１２" (or any non-ASCII digits) is refused naming the field,
where ``str.isdigit()`` and ``int()`` read it as 12 and the job started; ASCII digits, as text or a JSON number,
still go through."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from dsft.ui import jobs

POST = {"x-dsft-ui": "1"}
RECORDS = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"answer {i}"}]}
           for i in range(3)]
NOT_ASCII = ["２", "１２", "٢"]  # full-width (an East Asian input method's digits), Arabic-Indic


def _started(root: Path) -> list[str]:
    return sorted(p.name for p in jobs.jobs_dir(root).glob("*.json")) if jobs.jobs_dir(root).is_dir() else []


def _finished_run(root: Path) -> None:
    """``done``: a finished run as far as starting a compare is concerned (its config, run.json and final/)."""
    (root / "done" / "final").mkdir(parents=True)
    for name in ("config.yaml", "run.json"):
        (root / "done" / name).write_bytes((root / "alpha" / name).read_bytes())
    (root / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS), encoding="utf-8")


@pytest.mark.parametrize("text", NOT_ASCII)
@pytest.mark.parametrize("field, label", [("limit", "prompts"), ("max_new_tokens", "max new tokens")])
def test_compare_refuses_digits_the_cli_refuses(client: TestClient, runs_root: Path, field: str, label: str,
                                                text: str) -> None:
    _finished_run(runs_root)
    response = client.post("/api/compare", headers=POST, json={"run": "done", "data": "chat.jsonl", field: text})
    assert response.status_code == 400, response.text
    assert response.json()["error"] == f"{label}: a whole number >= 1, got {text!r}"
    assert _started(runs_root) == []


@pytest.mark.parametrize("text", NOT_ASCII)
def test_the_mask_view_refuses_a_record_number_the_cli_refuses(client: TestClient, runs_root: Path,
                                                               text: str) -> None:
    (runs_root / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS), encoding="utf-8")
    response = client.post("/api/mask", headers=POST, json={"source": "chat.jsonl", "tokenizer": "deepseek",
                                                            "template": "deepseek-v3", "index": text})
    assert response.status_code == 400, response.text
    assert response.json()["error"] == f"record: expected a whole number, got {text!r}"


@pytest.mark.parametrize("index", ["2", " 2 ", 2])
def test_the_mask_view_reads_ascii_digits_as_before(client: TestClient, runs_root: Path, index: object) -> None:
    (runs_root / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS), encoding="utf-8")
    response = client.post("/api/mask", headers=POST, json={"source": "chat.jsonl", "tokenizer": "deepseek",
                                                            "template": "deepseek-v3", "index": index})
    assert response.status_code == 200, response.text
    assert "answer 2" in "".join(token["text"] for token in response.json()["tokens"])


@pytest.mark.parametrize("text", NOT_ASCII)
def test_the_cli_flag_the_field_stands_for_refuses_the_same_text(tmp_path: Path, run_cli, text: str) -> None:
    """The rule the fields follow: `dsft data inspect --index` (the mask view's record) refuses it too."""
    data = tmp_path / "chat.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in RECORDS), encoding="utf-8")
    code, _, err = run_cli(["data", "inspect", str(data), "--index", text, "--tokenizer", "deepseek",
                            "--template", "deepseek-v3"])
    assert code == 2 and "--index" in err, err
