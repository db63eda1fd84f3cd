"""Eval data whose `label` or one of whose `choices` is a bare NaN (pandas' missing value, as json.dumps writes it)
is skipped under its reason, as `dsft metrics` skips such a line: it was scored as the text "nan"."""

from __future__ import annotations

from pathlib import Path

from dsft.eval.eval_set import load_eval_set
from dsft.eval.predictions import read_predictions

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


def test_choices_that_are_not_a_list_are_skipped_as_dsft_metrics_skips_them(tmp_path: Path) -> None:
    """A string or number under `choices` was read as no choices, and the multiple-choice record scored as free
    text; dsft metrics skips such a line as `choices is not a list`, and now eval does too. An empty list is no
    choices in both."""
    path = tmp_path / "eval.jsonl"
    path.write_text(f'{{{QA}, "choices": "ABCD"}}\n{{{QA}, "choices": 3}}\n{{{QA}, "choices": ["pos", "neg"]}}\n'
                    f'{{{QA}, "choices": []}}\n')
    items, skipped = load_eval_set(path)
    assert [item.choices for item in items] == [["pos", "neg"], None]
    assert skipped == {"choices is not a list": 2}
    predictions = tmp_path / "p.jsonl"
    predictions.write_text('{"prediction": "A", "reference": "A", "choices": "ABCD"}\n'
                           '{"prediction": "A", "reference": "A", "choices": []}\n')
    samples, skipped = read_predictions(predictions)
    assert [sample.choices for sample in samples] == [None] and skipped == {"choices is not a list": 1}
