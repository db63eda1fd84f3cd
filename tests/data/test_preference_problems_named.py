"""A rejected preference record's problems are named where they are: a completion's by its side, the prompt's and
``meta``'s once, never under a side they are not in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsft.config import DsftConfig
from dsft.data.preference import parse_preference
from dsft.data.preference_fields import PreferenceProblem
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
    assert str(info.value) == ("prompt.content: <think> is not allowed in a user message, only in an assistant "
                               "message's leading think block; rejected.content: unclosed <think> block")


THINK_IN_USER = "<think> is not allowed in a user message, only in an assistant message's leading think block"
USER, BAD_USER = {"role": "user", "content": "hi"}, {"role": "user", "content": "<think>x"}
EMPTY = {"role": "assistant", "content": ""}


@pytest.mark.parametrize(("record", "kind", "columns", "said"), [
    # A separate system field goes in front of the prompt: the bad turn is still the record's messages[1].
    ({"system": "Be brief.", "messages": [USER, BAD_USER], "chosen": "a", "rejected": "b"}, "pair", None,
     f"messages[1].content: {THINK_IN_USER}"),
    ({"system": "Be brief.", "prompt": [USER, EMPTY, USER], "chosen": "a", "rejected": "b"}, "pair", None,
     "prompt[1].content: empty assistant message"),
    ({"system": "Be <think>", "prompt": "hi", "chosen": "a", "rejected": "b"}, "pair", None,
     f"system.content: {THINK_IN_USER.replace('user', 'system')}"),
    # The implicit prompt is the sides' shared turns: named in chosen, as written.
    ({"system": "s", "chosen": [BAD_USER, {"role": "assistant", "content": "a"}],
      "rejected": [BAD_USER, {"role": "assistant", "content": "b"}]}, "pair", None,
     f"chosen[0].content: {THINK_IN_USER}"),
    ({"system": "s", "messages": [USER, EMPTY, USER, {"role": "assistant", "content": "<think>a"}], "kto_tag": True},
     "labeled", None, "messages[1].content: empty assistant message; messages[3].content: unclosed <think> block"),
    ({"system": "s", "question": [USER, EMPTY, USER], "answer": "4"}, "prompt", None,
     "question[1].content: empty assistant message"),
    # A renamed column is named as the record writes it.
    ({"sys": "s", "turns": [USER, BAD_USER], "good": "a", "bad": "<think>b"}, "pair",
     {"system": "sys", "prompt": "turns", "chosen": "good", "rejected": "bad"},
     f"turns[1].content: {THINK_IN_USER}; bad.content: unclosed <think> block"),
])
def test_a_problem_is_named_where_it_is_in_the_record_as_written(record: dict, kind: str, columns: dict | None,
                                                                  said: str) -> None:
    """The prompt was numbered as built, a separate system field in front: the record's messages[1] was called
    messages[2], and a prompt field, a question or a side's shared turn was called messages[i] too."""
    with pytest.raises(PreferenceProblem) as info:
        parse_preference(record, kind, columns)  # type: ignore[arg-type]
    assert str(info.value) == said


def test_data_prepare_names_a_bad_turn_where_it_is_in_the_file(tmp_path: Path) -> None:
    """A DPO file prepared for DPO and read as KTO data: the rejection says where the bad turn is in the file."""
    source = tmp_path / "dpo.jsonl"
    source.write_text(json.dumps({"system": "Be brief.", "messages": [USER, BAD_USER], "chosen": "a",
                                  "rejected": "b"}) + "\n" + json.dumps({"prompt": "q", "chosen": "a", "rejected": "b"})
                      + "\n", encoding="utf-8")
    for objective in ("dpo", "kto"):
        cfg = DsftConfig.model_validate({"data": {"train": [str(source)], "val_ratio": 0}})
        report = prepare_preference(cfg, tmp_path / objective, objective).report
        assert report["rejected_examples"] == [f"{source}:1: messages[1].content: {THINK_IN_USER}"]


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


def test_a_side_of_a_pair_read_as_kto_data_is_named_as_its_side_when_a_rewrite_empties_it(tmp_path: Path) -> None:
    """The KTO record made of a pair's rejected side was named by the field it became, ``completion``, which the
    file does not have."""
    source = tmp_path / "pairs.jsonl"
    rows = [{"prompt": "z", "chosen": "fine", "rejected": "\x07"}, {"prompt": "q", "chosen": "a", "rejected": "b"}]
    source.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    cfg = DsftConfig.model_validate({"data": {"train": [str(source)], "val_ratio": 0}})
    prepare_preference(cfg, tmp_path / "out", "kto")
    removed = [json.loads(line)["reason"] for line in (tmp_path / "out" / "removed.jsonl").open(encoding="utf-8")]
    assert removed == ["rejected empty after Unicode normalisation"]


LABEL_WORDS = "expected true or false (any case), yes or no, 1 or 0"
PAIR_COLUMNS = {"prompt": "question", "chosen": "good", "rejected": "bad"}
TWO_ANSWERS = [{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}]


@pytest.mark.parametrize(("record", "kind", "columns", "said"), [
    ({"question": "q", "good": TWO_ANSWERS, "bad": "b"}, "pair", PAIR_COLUMNS,
     "good: expected exactly one assistant message, got assistant, assistant"),
    ({"question": "q", "good": "a", "bad": 5}, "pair", PAIR_COLUMNS, "bad: expected a string or a list of messages"),
    ({"question": 5, "good": "a", "bad": "b"}, "pair", PAIR_COLUMNS,
     "question: expected a string or a list of messages"),
    ({"good": [{"from": "alien", "value": "q"}], "bad": [{"from": "alien", "value": "q"}]}, "pair",
     {"chosen": "good", "rejected": "bad"}, "good[0].from: unknown role 'alien'; bad[0].from: unknown role 'alien'"),
    ({"good": [USER, {"role": "assistant", "content": "a"}], "bad": [{"role": "user", "content": "other"},
                                                                      {"role": "assistant", "content": "b"}]},
     "pair", {"chosen": "good", "rejected": "bad"}, "pair: no prompt field and good/bad share no leading messages"),
    ({"sys": 5, "question": "q", "good": "a", "bad": "b"}, "pair", {**PAIR_COLUMNS, "system": "sys"},
     "sys: expected a string"),
    ({"ask": "q", "reply": 5, "verdict": True}, "labeled", {"prompt": "ask", "completion": "reply", "label": "verdict"},
     "reply: expected a string or a list of messages"),
    ({"ask": "q", "reply": "a", "verdict": "maybe"}, "labeled",
     {"prompt": "ask", "completion": "reply", "label": "verdict"}, f'verdict: {LABEL_WORDS}; got "maybe"'),
    ({"ask": "2+2?", "gold": [4]}, "prompt", {"prompt": "ask", "answer": "gold"}, "gold: expected a string or a number"),
])
def test_a_renamed_field_is_named_as_the_file_writes_it(record: dict, kind: str, columns: dict, said: str) -> None:
    """data.columns renames a file's fields to dsft's: a problem found reading one named dsft's field (chosen,
    rejected, prompt, label), which the user's file does not have."""
    with pytest.raises(PreferenceProblem) as info:
        parse_preference(record, kind, columns)  # type: ignore[arg-type]
    assert str(info.value) == said


@pytest.mark.parametrize(("record", "said"), [
    ({"prompt": "ab\udcc8", "completion": "a", "label": "maybe"},
     f'prompt.content: not valid UTF-8 (byte 0xC8 at character 2); label: {LABEL_WORDS}; got "maybe"'),
    ({"completion": "a", "label": "maybe"},
     f'no prompt: expected one of the fields prompt, messages, conversations, question, problem; label: {LABEL_WORDS}; '
     'got "maybe"'),
    ({"prompt": 5, "completion": 6, "label": 2},
     f"prompt: expected a string or a list of messages; completion: expected a string or a list of messages; "
     f"label: {LABEL_WORDS}; got 2"),
    ({"messages": [USER, {"role": "assistant", "content": "<think>a"}], "kto_tag": "maybe"},
     f'messages[1].content: unclosed <think> block; kto_tag: {LABEL_WORDS}; got "maybe"'),
    ({"prompt": "q", "completion": "a"},
     "labeled completion: missing field label (true = desirable, false = undesirable)"),
])
def test_every_problem_of_a_kto_row_is_said_its_label_s_last(record: dict, said: str) -> None:
    """The label was read first and its problem raised alone: a row whose prompt was also undecodable or missing was
    refused for its label only, and fixing the label met the next refusal. Problems are said in the row's order."""
    with pytest.raises(PreferenceProblem) as info:
        parse_preference(record, "labeled")
    assert str(info.value) == said


def test_data_prepare_says_a_kto_csv_row_s_prompt_and_label_problems(tmp_path: Path) -> None:
    source = tmp_path / "kto.csv"
    source.write_bytes(b"prompt,completion,label\n2+2?,4,true\n3+3?,5,false\nab\xc8,6,maybe\n")
    cfg = DsftConfig.model_validate({"data": {"train": [str(source)], "val_ratio": 0}})
    report = prepare_preference(cfg, tmp_path / "out", "kto").report
    assert report["rejected_examples"] == [
        f'{source} row 3 (line 4): prompt.content: not valid UTF-8 (byte 0xC8 at character 2); label: {LABEL_WORDS}; '
        'got "maybe"']


def test_each_problem_of_a_refused_row_is_a_reason_of_its_own_as_sft_data_s_are(tmp_path: Path) -> None:
    """A row's problems were joined into one reason: rows sharing the label problem but not the other were counted
    under two reasons, neither of them the label's, and rejects.jsonl held one string where SFT data holds a list."""
    source = tmp_path / "kto.csv"
    source.write_bytes(b"prompt,completion,label\n2+2?,4,true\n3+3?,5,false\nab\xc8,6,maybe\nq,<think>a,maybe\n")
    cfg = DsftConfig.model_validate({"data": {"train": [str(source)], "val_ratio": 0}})
    report = prepare_preference(cfg, tmp_path / "out", "kto").report
    label = f'label: {LABEL_WORDS}; got "maybe"'
    undecodable = "prompt.content: not valid UTF-8 (byte 0xC8 at character 2)"
    unclosed = "completion.content: unclosed <think> block"
    assert report["rejected_reasons"] == [
        {"reason": label, "records": 2, "first": f"{source} row 3 (line 4)"},
        {"reason": undecodable, "records": 1, "first": f"{source} row 3 (line 4)"},
        {"reason": unclosed, "records": 1, "first": f"{source} row 4 (line 5)"}]
    rows = [json.loads(line) for line in (tmp_path / "out" / "rejects.jsonl").open(encoding="utf-8")]
    assert [row["reasons"] for row in rows] == [[undecodable, label], [unclosed, label]]


SIDES_COLUMNS = {"prompt": "question", "chosen": "good", "rejected": "bad"}


@pytest.mark.parametrize(("record", "columns", "objective", "said"), [
    ({"question": "q", "good": "4", "bad": "4"}, SIDES_COLUMNS, "dpo", "good and bad are identical: nothing to prefer"),
    ({"question": "q", "good": "4", "bad": "4"}, SIDES_COLUMNS, "kto",
     "good and bad are identical: the same text marked desirable and undesirable"),
    # The implicit prompt's sides are their last turns, named so as any problem of theirs is (bad[1].content: ...).
    ({"good": [USER, {"role": "assistant", "content": "4"}], "bad": [USER, {"role": "assistant", "content": "4"}]},
     {"chosen": "good", "rejected": "bad"}, "dpo", "good[1] and bad[1] are identical: nothing to prefer"),
])
def test_identical_sides_are_named_as_the_file_writes_them(tmp_path: Path, record: dict, columns: dict, objective: str,
                                                           said: str) -> None:
    """data.columns renamed good and bad to chosen and rejected: every other problem of the row named the file's
    fields, this one dsft's (chosen and rejected are identical), which the file does not have."""
    source = tmp_path / "pairs.jsonl"
    other = {columns.get("prompt", "prompt"): "q", "good": "a", "bad": "b"}
    source.write_text(json.dumps(record) + "\n" + json.dumps(other) + "\n", encoding="utf-8")
    cfg = DsftConfig.model_validate({"data": {"train": [str(source)], "val_ratio": 0, "columns": columns}})
    report = prepare_preference(cfg, tmp_path / "out", objective).report
    assert report["rejected_examples"] == [f"{source}:1: {said}"]


@pytest.mark.parametrize("objective", ["dpo", "kto"])
@pytest.mark.parametrize(("bad", "said"), [
    ("Rome\u200b", "good and bad are identical after normalize_unicode: {}"),  # a text rewrite made them the same
    ("rome", "good and bad differ only in case, Unicode form or whitespace: {}"),  # deduplication's comparison
])
def test_sides_made_the_same_are_named_as_the_file_writes_them(tmp_path: Path, objective: str, bad: str,
                                                               said: str) -> None:
    source = tmp_path / "pairs.jsonl"
    source.write_text(json.dumps({"question": "q", "good": "Rome", "bad": bad}) + "\n"
                      + json.dumps({"question": "q", "good": "a", "bad": "b"}) + "\n", encoding="utf-8")
    cfg = DsftConfig.model_validate({"data": {"train": [str(source)], "val_ratio": 0, "columns": SIDES_COLUMNS}})
    prepare_preference(cfg, tmp_path / "out", objective)
    lesson = "nothing to prefer" if objective == "dpo" else "the same text marked desirable and undesirable"
    removed = [json.loads(line)["reason"] for line in (tmp_path / "out" / "removed.jsonl").open(encoding="utf-8")]
    assert removed == [said.format(lesson)]
