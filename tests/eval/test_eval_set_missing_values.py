"""Eval data whose `label` or one of whose `choices` is a bare NaN (pandas' missing value, as json.dumps writes it)
is skipped under its reason, as `dsft metrics` skips such a line: it was scored as the text "nan"."""

from __future__ import annotations

from pathlib import Path

from dsft.eval.eval_set import load_eval_set

QA = '"messages": [{"role": "user", "content": "Sentiment?"}, {"role": "assistant", "content": "pos"}]'


def test_a_nan_label_or_option_is_skipped_not_read_as_text(tmp_path: Path) -> None:
    path = tmp_path / "eval.jsonl"
    path.write_text(f'{{{QA}, "label": "pos"}}\n{{{QA}, "label": NaN}}\n{{{QA}, "choices": ["pos", NaN]}}\n'
                    f'{{{QA}, "choices": {{"A": "pos", "B": -Infinity}}}}\n')
    items, skipped = load_eval_set(path)
    assert [(item.label, item.choices) for item in items] == [("pos", None)]
    assert skipped == {"label is NaN or infinite, not text": 1, "choices: an option is NaN or infinite, not text": 2}


def test_a_blank_label_from_a_csv_is_skipped_not_read_as_a_class(tmp_path: Path) -> None:
    path = tmp_path / "eval.csv"
    path.write_text("question,answer,label\nSentiment?,pos,pos\nSentiment?,neg,\n")
    items, skipped = load_eval_set(path)
    assert [item.label for item in items] == ["pos"]
    assert skipped == {"empty label": 1}
