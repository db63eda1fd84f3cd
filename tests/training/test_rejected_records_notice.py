"""`dsft train` prepares its data itself; records it rejected are said on the terminal (count, the first with its
place and reason, where the rest are), not only written into the run's data report: a file that is mostly
malformed must not train on what is left without a word."""

from __future__ import annotations

import json
from pathlib import Path

from dsft.data.report import rejection_notice


def test_rejection_notice_counts_and_names_the_first() -> None:
    report = {"read": 7, "rejected": 6, "rejected_examples": ["bad.jsonl:2: malformed JSON", "bad.jsonl:3: x"]}
    assert rejection_notice(report, Path("run/data")) == (
        "data: 6 of 7 records rejected (first: bad.jsonl:2: malformed JSON); each one and why: "
        f"{Path('run/data/rejects.jsonl')}")
    assert rejection_notice({"read": 7, "rejected": 0, "rejected_examples": []}, Path("run/data")) is None


def test_dsft_train_says_how_many_records_it_rejected(tmp_path: Path, run_cli, tiny_model_dir, caplog) -> None:
    good = {"messages": [{"role": "user", "content": "How many dams?"}, {"role": "assistant", "content": "Three."}]}
    data = tmp_path / "qa.jsonl"
    data.write_text(json.dumps(good) + "\n{bad json\n" + json.dumps(good) + "\n", encoding="utf-8")
    code, _, err = run_cli(["train", "/dev/null", "--out", str(tmp_path / "run"),
                            "--set", f"model.name_or_path={tiny_model_dir('tiny-deepseek-llm')}",
                            "--set", f"data.train=[{data}]", "--set", "data.val_ratio=0",
                            "--set", "data.clean.exact_dedup=false",
                            "--set", "train.max_steps=1", "--set", "train.report_to=[]"])
    assert code == 0, err
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("data: ")]
    assert len(said) == 1 and said[0].startswith(f"data: 1 of 3 records rejected (first: {data}:2: malformed JSON")
    assert said[0].endswith(str(tmp_path / "run" / "data" / "rejects.jsonl"))
