"""A predictions file given to `dsft eval --data` is refused, not evaluated: read as data, its lines are
question/answer records (the file holds `question` and `answer`), so the new model was scored against the earlier
model's answers, silently."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsft.errors import DsftError
from dsft.eval.eval_set import PREDICTIONS_LINE, load_eval_set

LINE = {"index": 0, "source": "val.jsonl:1", "question": "When was it built?", "prompt": "<｜User｜>When?",
        "reference": "In 1970.", "prediction": "<think>\n</think>\n\nIn 1958.", "answer": "In 1958.",
        "scores": {"f1": 0.5}}


def test_a_predictions_file_is_no_evaluation_data(tmp_path: Path, run_cli) -> None:
    path = tmp_path / "predictions.jsonl"
    path.write_text(json.dumps(LINE) + "\n" + json.dumps(dict(LINE, index=1)) + "\n")
    with pytest.raises(DsftError) as caught:
        load_eval_set(path)
    assert caught.value.problems == [f"{PREDICTIONS_LINE}: 2 (first at {path}:1)"], caught.value.problems
    code, _, err = run_cli(["eval", "tiny-deepseek-v3", "--data", str(path), "--out", str(tmp_path / "o")])
    assert code == 2 and "`dsft metrics --predictions FILE`" in err and "Traceback" not in err, err
    assert not (tmp_path / "o").exists()


def test_a_configured_format_still_reads_its_own_columns(tmp_path: Path) -> None:
    """Columns mapped by data.columns may be named anything, `reference` and `prediction` included."""
    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps({"prediction": "ignored", "reference": "In 1970.", "question": "When?"}) + "\n")
    [item], _ = load_eval_set(path, None, "context_qa", {"answer": "reference"})
    assert item.reference == "In 1970."
