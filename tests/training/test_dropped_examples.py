"""Examples the renderer drops (longer than train.max_seq_len, nothing supervised) are named with their count and
the key that changes it: a run left with none says why, where it said 'see data_report.json' (which does not
hold render-time drops)."""

from __future__ import annotations

import json
from pathlib import Path

from dsft.training.examples import TokenizedSplit, describe_dropped


def test_describe_dropped_names_each_reason_and_its_key() -> None:
    split = TokenizedSplit([{}, {}], {"longer_than_max_seq_len": 3, "no_supervised_tokens": 1})
    text = describe_dropped(split, "train", 64)
    assert text.startswith("4 of 6 train examples are not trained on: 3 longer than train.max_seq_len (64 tokens")
    assert "1 with no supervised token (template.masking" in text
    assert describe_dropped(TokenizedSplit([{}]), "train", 64) is None


def test_a_run_whose_examples_are_all_too_long_says_so(tmp_path: Path, run_cli, tiny_model_dir) -> None:
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"context": f"患者主诉持续发热{i}天,伴咳嗽咳痰", "question": "可能病因有哪些?",
                                        "answer": "需考虑上呼吸道感染、尿路感染等,建议进行血常规和尿常规检查"},
                                       ensure_ascii=False) + "\n" for i in range(6)), encoding="utf-8")
    code, _, err = run_cli(["train", "/dev/null", "--out", str(tmp_path / "run"),
                            "--set", f"model.name_or_path={tiny_model_dir('tiny-deepseek-llm')}",
                            "--set", f"data.train=[{data}]", "--set", "data.val_ratio=0", "--set", "train.max_seq_len=16",
                            "--set", "train.max_steps=1", "--set", "train.report_to=[]"])
    assert code == 2 and "Traceback" not in err, err
    assert "no training examples left after preparation; 6 of 6 train examples are not trained on: 6 longer than " \
           "train.max_seq_len (16 tokens" in err
