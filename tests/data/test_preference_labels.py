"""KTO labels as users write them: JSON booleans, and the words a spreadsheet cell holds (CSV text is all strings)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dsft.data.preference import parse_preference
from dsft.data.preference_fields import PreferenceProblem

ACCEPTED = "expected true or false (any case), yes or no, 1 or 0"
RunCli = Callable[[list[str]], tuple[int, str, str]]


def _prepare_kto_csv(tmp_path: Path, text: str | bytes, run_cli: RunCli) -> tuple[Path, dict[str, Any], str]:
    """Write ``text`` (bytes as they are, a string in UTF-8) to ``tmp_path/kto.csv`` and run ``dsft data prepare`` on
    it as KTO data with no validation split, into ``tmp_path/prep``; it must succeed. Returns the CSV's path, its
    ``data_report.json`` and what the command printed (stdout + stderr)."""
    source = tmp_path / "kto.csv"
    if isinstance(text, bytes):
        source.write_bytes(text)
    else:
        source.write_text(text, encoding="utf-8")
    code, out, err = run_cli(["data", "prepare", str(source), "--out", str(tmp_path / "prep"),
                              "--set", "train.objective=kto", "--set", "data.val_ratio=0"])
    assert code == 0, out + err
    report = json.loads((tmp_path / "prep" / "data_report.json").read_text(encoding="utf-8"))
    return source, report, out + err


def test_dsft_data_prepare_reads_kto_labels_from_a_csv_file(tmp_path: Path, run_cli) -> None:
    """A KTO CSV as a spreadsheet writes it: every label a string, in the case the user typed it. One cell that is
    not a label is rejected naming its row and line and the spellings accepted; the rest are kept."""
    source, report, _ = _prepare_kto_csv(tmp_path, "prompt,completion,label\n"
                                                   "What is 2+2?,4,true\n"
                                                   "What is 2+2?,5,false\n"
                                                   "Capital of France?,Paris,TRUE\n"
                                                   "Capital of France?,Rome,False\n"
                                                   "Capital of Italy?,Rome, yes\n"
                                                   "Capital of Italy?,Paris,0\n"
                                                   "Capital of Spain?,Madrid,maybe\n", run_cli)
    assert (report["read"], report["kept"], report["rejected"]) == (7, 6, 1)
    train = [json.loads(line) for line in (tmp_path / "prep" / "train.jsonl").open(encoding="utf-8")]
    assert sorted((row["completion"][0]["content"], row["label"]) for row in train) == [
        ("4", True), ("5", False), ("Paris", False), ("Paris", True), ("Rome", False), ("Rome", True)]
    assert report["rejected_examples"] == [f'{source} row 7 (line 8): label: {ACCEPTED}; got "maybe"']


@pytest.mark.parametrize(("label", "expected"), [
    (True, True), (False, False), ("true", True), ("False", False), ("YES", True), ("no", False), ("1", True),
    (0, False), (1, True),
])
def test_a_label_means_the_same_whatever_format_carries_it(label: object, expected: bool) -> None:
    """A JSON string "true" is the CSV cell true: a JSON file exported from a spreadsheet (or a data frame that read
    one) holds the same strings, and a file converted between formats must keep the same records."""
    for field in ("label", "kto_tag"):
        record = {"prompt": "q", "completion": "a", field: label} if field == "label" else {
            "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], field: label}
        assert parse_preference(record, "labeled").label is expected


@pytest.mark.parametrize("label", ["maybe", "", "t", "desirable", 2, 1.0, None, [True]])
def test_anything_else_is_refused_naming_the_spellings_accepted(label: object) -> None:
    with pytest.raises(PreferenceProblem) as info:
        parse_preference({"prompt": "q", "completion": "a", "label": label}, "labeled")
    assert str(info.value) == f"label: {ACCEPTED}; got {json.dumps(label)}"


def test_an_undecodable_label_cell_is_said_as_any_undecodable_field_is(tmp_path: Path, run_cli) -> None:
    """A KTO CSV saved in GBK whose label cell is Chinese (是, 'yes'): the label was refused with the spellings
    accepted and quoted as the replacement characters it became (got "��"), with no word of the encoding that every
    other field's refusal names."""
    source, report, _ = _prepare_kto_csv(
        tmp_path, b"prompt,completion,label\nWhat is 2+2?,4,true\nWhat is 2+2?,5,false\nCapital?,Rome,"
        + "是".encode("gbk") + b"\n", run_cli)
    assert report["rejected_examples"] == [
        f"{source} row 3 (line 4): label: not valid UTF-8 (byte 0xCA at character 0); it reads as GBK/GB18030 "
        "Chinese: save the file as UTF-8 (e.g. iconv -f GB18030 -t UTF-8 IN > OUT)"]


def test_labels_refused_for_different_words_are_one_reason_in_the_summary(tmp_path: Path, run_cli) -> None:
    """The rejection summary merged reasons that differ only in a number, not in a quoted value: each word a label
    column held was a reason of its own (got "maybe", got "nope"), crowding out the other reasons."""
    source, report, printed = _prepare_kto_csv(
        tmp_path, "prompt,completion,label\nWhat is 2+2?,4,true\nWhat is 2+2?,5,false\n"
        "Capital?,Rome,maybe\nCapital?,Paris,nope\nWhy?,Because,unsure\nWho?,Me,\"t\"\"\"\n"
        "Where?,Here,maybe\n", run_cli)
    assert report["rejected_reasons"] == [
        {"reason": f'label: {ACCEPTED}; got "..."', "records": 5, "first": f"{source} row 3 (line 4)"}]
    assert f'5 x label: {ACCEPTED}; got "..." (first: {source} row 3 (line 4))' in printed
    said = json.loads((tmp_path / "prep" / "rejects.jsonl").read_text(encoding="utf-8").splitlines()[3])["reasons"]
    assert said == [f'label: {ACCEPTED}; got "t\\""']  # each one as written in rejects.jsonl


def test_a_value_every_grouped_record_shares_stays_as_written(tmp_path: Path, run_cli) -> None:
    _, report, _ = _prepare_kto_csv(tmp_path, "prompt,completion,label\nWhat is 2+2?,4,true\nWhat is 2+2?,5,false\n"
                                              "Capital?,Rome,maybe\nWhy?,Because,maybe\n", run_cli)
    assert [(r["reason"], r["records"]) for r in report["rejected_reasons"]] == [(f'label: {ACCEPTED}; got "maybe"', 2)]
