"""A rejected preference record's problems are named where they are: a completion's by its side, the prompt's and
``meta``'s once, never under a side they are not in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsft.config import DsftConfig
from dsft.data.preference import PreferenceProblem, parse_preference
from dsft.data.preference_pipeline import prepare_preference

BAD_SOURCE = "meta.source: not valid UTF-8 (byte 0xC8 at character 2)"


@pytest.mark.parametrize(("record", "kind"), [
    ({"prompt": "q", "chosen": "a", "rejected": "b", "meta": {"source": "ab\udcc8"}}, "pair"),
    ({"prompt": "q", "completion": "a", "label": True, "meta": {"source": "ab\udcc8"}}, "labeled"),
    ({"prompt": "q", "completion": "a", "label": True, "source": "ab\udcc8"}, "labeled"),  # a CSV's extra column
    ({"prompt": "q", "answer": "4", "meta": {"source": "ab\udcc8"}}, "prompt"),
])
def test_a_bad_meta_field_is_named_as_meta_once(record: dict, kind: str) -> None:
    with pytest.raises(PreferenceProblem) as info:
        parse_preference(record, kind)  # type: ignore[arg-type]
    assert str(info.value) == BAD_SOURCE


def test_a_problem_of_the_prompt_is_said_once_not_under_each_side() -> None:
    with pytest.raises(PreferenceProblem) as info:
        parse_preference({"prompt": "q <think>", "chosen": "a", "rejected": "<think>b"}, "pair")
    assert str(info.value) == ("messages[0].content: <think> is not allowed in a user message, only in an assistant "
                               "message's leading think block; rejected.content: unclosed <think> block")


def test_a_grpo_csv_with_an_undecodable_extra_column_rejects_that_row(tmp_path: Path) -> None:
    """The prompt check saw no meta, so the row was kept, and writing train.jsonl then failed on its undecodable
    bytes (UnicodeEncodeError, a traceback)."""
    source = tmp_path / "prompts.csv"
    source.write_bytes(b"prompt,answer,source\n2+2?,4,ab\xc8\n3+3?,6,ok\n")
    cfg = DsftConfig.model_validate({"data": {"train": [str(source)], "val_ratio": 0}})
    report = prepare_preference(cfg, tmp_path / "out", "grpo").report
    assert (report["read"], report["kept"], report["rejected"]) == (2, 1, 1)
    assert report["rejected_examples"] == [f"{source} row 1 (line 2): {BAD_SOURCE}"]
    [kept] = [json.loads(line) for line in (tmp_path / "out" / "train.jsonl").open(encoding="utf-8")]
    assert kept["answer"] == "6"
