"""Eval data that is not UTF-8 (a JSON file saved as GBK by a Chinese-locale editor) is refused record by record,
as data preparation refuses it: the record is skipped naming the field and the encoding; with nothing usable left
`dsft eval` / `dsft compare` end with one message, exit 2, no traceback, before a model loads or --out is made.
Undecodable bytes reached the tokenizer as lone surrogates: a TypeError traceback, and an empty --out left."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsft.errors import DsftError
from dsft.eval.eval_set import load_eval_set

CHINESE = {"Question": "儿童发热3天伴皮疹，诊断是？", "Complex_CoT": "Koplik斑是麻疹的特征。", "Response": "麻疹。"}
ENGLISH = {"Question": "Low ferritin and fatigue?", "Complex_CoT": "Iron stores are low.", "Response": "Iron deficiency."}


def _gbk_json(tmp: Path, records: list[dict[str, str]]) -> Path:
    path = tmp / "medical.json"
    path.write_bytes(json.dumps(records, ensure_ascii=False).encode("gbk"))
    return path


def test_a_record_in_gbk_is_skipped_naming_field_and_encoding(tmp_path: Path) -> None:
    items, skipped = load_eval_set(_gbk_json(tmp_path, [CHINESE, ENGLISH]))
    assert [item.reference for item in items] == ["Iron deficiency."]
    [(reason, count)] = skipped.items()
    assert count == 1
    assert reason.startswith("Question: not valid UTF-8"), reason  # named as the file names it
    assert "GBK/GB18030" in reason


@pytest.mark.parametrize("command", ["eval", "compare"])
def test_eval_data_all_in_gbk_is_one_message_not_a_traceback(run_cli, tmp_path: Path, command: str) -> None:
    data = str(_gbk_json(tmp_path, [CHINESE, dict(CHINESE, Response="发热。")]))
    out = tmp_path / "o"
    args = (["eval", "tiny-deepseek-v3"] if command == "eval"
            else ["compare", "--tuned", "tiny-deepseek-v3", "--base", "tiny-deepseek-v3"])
    code, stdout, err = run_cli([*args, "--data", data, "--out", str(out)])
    assert code == 2, (stdout, err)
    assert "Traceback" not in stdout + err
    text = " ".join(err.split())
    assert text.count("error:") == 1, err
    assert f"--data {data}: no usable evaluation records" in text
    assert "not valid UTF-8" in text and "GBK/GB18030" in text
    assert not out.exists()


def test_a_whole_file_in_gbk_is_one_skip_reason_however_its_records_begin(tmp_path: Path) -> None:
    """Each skip reason named the first byte that is not UTF-8 and where it is, so a GBK file was counted under
    as many reasons as its records have first characters ('byte 0xC8 ...: 1', 'byte 0xBD ...: 1', ...), in
    metrics.json's skipped and in the 'no usable evaluation records' list alike."""
    questions = ["如何优化训练效率?", "解释自注意力机制", "什么是梯度累积?", "为什么要做数据清洗?", "怎样降低显存?"]
    records = [dict(CHINESE, Question=question) for question in questions]
    _, skipped = load_eval_set(_gbk_json(tmp_path, [*records, ENGLISH]))
    [(reason, count)] = skipped.items()
    assert count == 5 and reason.startswith("Question: not valid UTF-8 (byte N at character"), reason
    assert "GBK/GB18030" in reason


def test_a_gbk_jsonl_line_keeps_the_conversion_to_run(tmp_path: Path) -> None:
    """A JSONL file saved as GBK fails in the reader (the line is not UTF-8), whose error was cut at its first colon:
    'not valid UTF-8 (...); it reads as GBK/GB18030 Chinese', the conversion to run ('save the file as UTF-8 (e.g.
    iconv -f GB18030 ...)') lost, where data preparation says it. A malformed line still counts by its kind."""
    path = tmp_path / "medical.jsonl"
    path.write_bytes(b"".join((json.dumps(r, ensure_ascii=False) + "\n").encode("gbk") for r in (CHINESE, CHINESE))
                     + b'{"Question": \n' + (json.dumps(ENGLISH) + "\n").encode())
    _, skipped = load_eval_set(path)
    assert skipped["malformed JSON"] == 1, skipped
    [gbk] = [reason for reason in skipped if "GBK" in reason]
    assert skipped[gbk] == 2 and gbk.endswith("save the file as UTF-8 (e.g. iconv -f GB18030 -t UTF-8 IN > OUT)"), gbk


def test_data_with_no_usable_record_names_where_the_first_of_each_reason_is(tmp_path: Path) -> None:
    """The refusal counted each reason ('malformed JSON: 1') without saying which line, where data preparation says
    where the first of each is; the data is read before any model loads, so this is the whole message."""
    path = tmp_path / "val.jsonl"
    path.write_text('{"foo": 1}\n{not json\n{"foo": 2}\n' + json.dumps({"messages": [{"role": "user", "content": "q"}]})
                    + "\n")
    with pytest.raises(DsftError) as caught:
        load_eval_set(path)
    assert caught.value.problems == [
        f"unknown format (keys: foo); set data.format and data.columns: 2 (first at {path}:1)",
        f"malformed JSON: 1 (first at {path}:2)",
        f"last message is not an assistant answer: 1 (first at {path}:4)"], caught.value.problems
