"""``dsft data distill`` with a live ``dsft serve`` as the teacher (a scripted model behind the real server)."""

from __future__ import annotations

import json
from pathlib import Path

from live_server import API_KEY, run_live
from scripted import scripted_serving

# The R1 prompt opens <think>; the server splits what follows into reasoning_content and content.
TEACHER_TEXT = "The text says it was completed in 1958.\n</think>\n\n该水库于1958年建成。"


def test_distill_from_dsft_serve_verifies_and_accounts(serve_model_dir: Path, tmp_path: Path, run_cli, monkeypatch) -> None:
    from dsft.models.loading import load_tokenizer
    from dsft.serve.engine import TransformersEngine
    from dsft.serve.settings import ServeSettings

    serving = scripted_serving(load_tokenizer(serve_model_dir), TEACHER_TEXT, "deepseek-r1")
    settings = ServeSettings(served_model_name="teacher-r1", api_key=API_KEY)
    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in [
        {"question": "青山水库哪年建成？", "answer": "1958年"},
        {"question": "白河水库哪年建成？", "answer": "1960年"},
        {"question": "红湖水库是什么时候建成的？"},
    ]), encoding="utf-8")
    monkeypatch.setenv("DSFT_TEACHER_KEY", API_KEY)
    out = tmp_path / "distilled"
    with run_live(TransformersEngine(lambda: serving), settings) as server:
        code, stdout, err = run_cli([
            "data", "distill", str(questions), "--out", str(out), "--base-url", server.base_url + "/v1",
            "--model", "teacher-r1", "--set", "data.distill.endpoint.api_key_env=DSFT_TEACHER_KEY",
            "--set", "data.distill.endpoint.max_tokens=64", "--set", "data.distill.samples=2"])
    assert code == 0, err
    report = json.loads((out / "distill_report.json").read_text())
    assert (report["read"], report["kept"], report["removed"]["wrong_answer"], report["verified"]) == (3, 2, 1, 1)
    records = [json.loads(line) for line in (out / "distilled.jsonl").read_text().splitlines()]
    assert records[0]["messages"][-1] == {"role": "assistant", "content": "该水库于1958年建成。",
                                          "reasoning_content": "The text says it was completed in 1958."}
    assert "wrong_answer" in stdout
