"""`dsft train` prepares its data itself; records it rejected are said on the terminal (count, where each one is
with why, the most frequent reasons with the place of the first of each), not only written into the run's data
report: a file that is mostly malformed must not train on what is left without a word. `dsft data prepare` says
the same (tests/data/test_data_cli.py)."""

from __future__ import annotations

import json
from pathlib import Path

from dsft.data.report import rejection_notice


def test_rejection_notice_counts_and_names_the_most_frequent_reasons() -> None:
    reasons = [{"reason": f"reason {n}", "records": 5 - n, "first": f"bad.jsonl:{n + 2}"} for n in range(4)]
    report = {"read": 17, "rejected": 14, "rejected_reasons": reasons}
    assert rejection_notice(report, Path("run/data")).splitlines() == [
        f"data: 14 of 17 records rejected; each one and why: {Path('run/data/rejects.jsonl')}",
        "  5 x reason 0 (first: bad.jsonl:2)", "  4 x reason 1 (first: bad.jsonl:3)",
        "  3 x reason 2 (first: bad.jsonl:4)", "  and other, less frequent reasons"]
    long = {"read": 1, "rejected": 1, "rejected_reasons": [{"reason": "x" * 500, "records": 1, "first": "a:1"}]}
    assert rejection_notice(long, Path("d")).splitlines()[1] == f"  1 x {'x' * 131}...{'x' * 66} (first: a:1)"
    # Cut in its middle, a reason keeps its last clause: what to do about it.
    hinted = {"read": 1, "rejected": 1, "rejected_reasons": [
        {"reason": f"field names are {'x' * 300}; save the file as UTF-8 (e.g. iconv -f GB18030 -t UTF-8 IN > OUT)",
         "records": 1, "first": "a.csv:1"}]}
    assert rejection_notice(hinted, Path("d")).splitlines()[1] == (
        f"  1 x field names are {'x' * 115}...; save the file as UTF-8 (e.g. iconv -f GB18030 -t UTF-8 IN > OUT)"
        " (first: a.csv:1)")
    assert rejection_notice({"read": 7, "rejected": 0, "rejected_reasons": []}, Path("run/data")) is None


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
    assert len(said) == 1 and said[0].splitlines() == [
        f"data: 1 of 3 records rejected; each one and why: {tmp_path / 'run' / 'data' / 'rejects.jsonl'}",
        f"  1 x malformed JSON: Expecting property name enclosed in double quotes (column 2) (first: {data}:2)"]


def test_dsft_train_with_every_record_rejected_says_the_most_frequent_reasons(tmp_path: Path, run_cli,
                                                                               tiny_model_dir) -> None:
    """Nothing left to train on: the error named only the first rejection, not the reasons that rejected most."""
    data = tmp_path / "qa.jsonl"
    data.write_text('{bad json\n{"question": "q", "answr": "a"}\n {bad json\n', encoding="utf-8")
    code, _, err = run_cli(["train", "/dev/null", "--out", str(tmp_path / "run"),
                            "--set", f"model.name_or_path={tiny_model_dir('tiny-deepseek-llm')}",
                            "--set", f"data.train=[{data}]", "--set", "train.report_to=[]"])
    assert code == 2 and "Traceback" not in err, err
    lines = err.splitlines()
    assert lines[0].startswith("error: no records left to train on: read 3, rejected 3, removed 0, kept 0"), err
    assert lines[1:] == [
        f"data: 3 of 3 records rejected; each one and why: {tmp_path / 'run' / 'data' / 'rejects.jsonl'}",
        f"  2 x malformed JSON: Expecting property name enclosed in double quotes (column N) (first: {data}:1)",
        "  1 x unknown format (keys: answr, question); it looks like format context_qa with 'answr' for 'answer': "
        f"rename it, or set data.columns: {{answer: answr}} (first: {data}:2)"], err
