"""prepare(): accounting identity, outputs, explicit eval files, policies, errors, load_prepared."""

import json
import logging
import random
from pathlib import Path

import pytest

from dsft.config import load_config
from dsft.data.pipeline import prepare
from dsft.data.prepared_folder import load_prepared
from dsft.data.samples import sample_path
from dsft.errors import DataError


def _identity(report: dict) -> None:
    assert report["read"] + sum(report["added"].values()) == (
        report["kept"] + report["rejected"] + sum(report["removed"].values()))
    assert sum(report["splits"].values()) == report["kept"]


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def mixed_rows(qa) -> list:
    rng = random.Random(0)
    words = "reservoir dam river valley mill north south basin flood gauge spillway season rain sluice".split()
    questions = [" ".join(rng.choice(words) for _ in range(14)) + "?" for _ in range(40)]
    rows = [qa(q, f"It is {i} metres deep.", domain="a" if i % 3 else "b") for i, q in enumerate(questions)]
    rows += [rows[0], rows[1]]  # exact duplicates
    rows += [qa(questions[2] + "!", "It is 2 metres deep.")]  # near-duplicate of row 2 (Jaccard ~0.95)
    rows += [qa("long " * 300, "x")]  # over max_tokens
    rows += [{"messages": [{"role": "assistant", "content": "first"}]}, "not an object"]
    return rows


def test_accounting_and_outputs(tmp_path: Path, tokenizer, qa, write_jsonl) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", mixed_rows(qa))
    with open(path, "ab") as handle:
        handle.write(b"{broken\n")
    cfg = load_config(None, ["data.clean.near_dedup=true", "data.clean.max_tokens=200", "data.test_ratio=0.1",
                             "data.clean.strip_html=true"])
    prepared = prepare(cfg, tokenizer, tmp_path / "out", [str(path)])
    report = prepared.report
    _identity(report)
    assert report["read"] == 47 and report["rejected"] == 3
    assert report["removed"] == {"strip_html": 0, "normalize_unicode": 0, "exact_dedup": 2, "near_dedup": 1, "length_filter": 1}
    assert report["kept"] == 40 and report["splits"] == {"train": 32, "val": 4, "test": 4}
    out = tmp_path / "out"
    assert len(_lines(out / "rejects.jsonl")) == 3 and len(_lines(out / "removed.jsonl")) == 4
    assert {r["where"] for r in _lines(out / "rejects.jsonl")} == {f"{path}:45", f"{path}:46", f"{path}:47"}
    for name, count in report["splits"].items():
        assert len(_lines(out / f"{name}.jsonl")) == count
    assert (out / "token_lengths.png").stat().st_size > 1000
    assert "## Accounting" in (out / "data_report.md").read_text()
    assert json.loads((out / "data_report.json").read_text())["read"] == 47
    loaded = load_prepared(out)
    assert {k: [c.to_dict() for c in v] for k, v in loaded.splits.items()} == \
        {k: [c.to_dict() for c in v] for k, v in prepared.splits.items()}
    assert loaded.report["kept"] == 40


def test_fail_policy_raises_one_error_and_writes_rejects(tmp_path: Path, tokenizer, qa, write_jsonl) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [qa("q", "a"), {"messages": [{"role": "user", "content": "only"}]}, 7])
    cfg = load_config(None, ["data.on_error=fail"])
    with pytest.raises(DataError) as info:
        prepare(cfg, tokenizer, tmp_path / "out", [str(path)])
    assert str(info.value).startswith("2 invalid record(s)")
    assert info.value.problems[0].startswith(f"{path}:2: messages[0]: the last message must be an assistant turn")
    assert len(_lines(tmp_path / "out" / "rejects.jsonl")) == 2


def test_explicit_eval_files_win_dedup_and_contamination_drop(tmp_path: Path, tokenizer, qa, write_jsonl) -> None:
    leak = "the quick brown fox jumps over the lazy dog near the old mill by the river today"
    train = write_jsonl(tmp_path / "train.jsonl", [qa(f"train question {i}", f"answer {i}") for i in range(10)]
                        + [qa("shared", "record"), qa(leak, "copied")])
    val = write_jsonl(tmp_path / "val.jsonl", [qa("shared", "record"), qa(leak + " again", "other")])
    cfg = load_config(None, [f"data.val=[{val}]", "data.clean.drop_contaminated=true", "data.val_ratio=0.5"])
    report = prepare(cfg, tokenizer, tmp_path / "out", [str(train)]).report
    _identity(report)
    assert report["splits"] == {"train": 10, "val": 2, "test": 0}  # val files replace val_ratio
    assert report["removed"]["exact_dedup"] == 1 and report["removed"]["contamination"] == 1
    assert report["contamination"]["contaminated"] == 1 and report["contamination"]["dropped"]
    removed = _lines(tmp_path / "out" / "removed.jsonl")
    assert {r["where"] for r in removed} == {f"{train}:11", f"{train}:12"}


def test_balance_oversampling_and_reasoning_mix(tmp_path: Path, tokenizer) -> None:
    cfg = load_config(None, ["data.clean.balance_by=lang", "data.clean.balance_mode=over", "data.reasoning=mix",
                             "data.think_ratio=0.5", "data.val_ratio=0.1"])
    report = prepare(cfg, tokenizer, tmp_path / "out", [str(sample_path("reservoirs"))]).report
    _identity(report)
    assert report["read"] == 200 and report["formats"] == {"messages": 200}
    before = report["reasoning"]["train_before_policy"]["with_reasoning"]
    after = report["reasoning"]["splits"]["train"]["with_reasoning"]
    assert before > 0 and after == round(before * 0.5)
    assert report["reasoning"]["splits"]["train"]["reasoning_tokens"]["max"] > 0


def test_records_without_the_balance_field_are_a_class_and_a_warning_says_how_many_were_dropped(
        tmp_path: Path, tokenizer, qa, write_jsonl, caplog) -> None:
    """balance_by=domain, 12 records with no domain: undersampling to the smallest class (6) cut half of them
    without a word (the report counted them, the log said nothing)."""
    rows = [qa(f"question {i} about reservoir {i * 7}", f"answer {i}", **({"domain": "a"} if i < 12 else {}))
            for i in range(24)]
    rows += [qa(f"question {i} about dam {i * 11}", f"answer {i}", domain="b") for i in range(24, 30)]
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    cfg = load_config(None, ["data.clean.balance_by=domain", "data.val_ratio=0", "data.clean.near_dedup=false"])
    with caplog.at_level(logging.WARNING, logger="dsft"):
        report = prepare(cfg, tokenizer, tmp_path / "out", [str(path)]).report
    _identity(report)
    dropped = [r for r in _lines(tmp_path / "out" / "removed.jsonl") if "domain=(missing)" in r["reason"]]
    assert report["removed"]["balance"] == 12 and len(dropped) == 6  # the report's figures, as before
    notes = [r.getMessage() for r in caplog.records if "domain" in r.getMessage()]
    assert notes == ["data.clean.balance_by=domain: 12 of 30 train records have no 'domain' and were balanced as "
                     "one class '(missing)'; undersampling dropped 6 of them (each in removed.jsonl)"], notes
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dsft"):
        prepare(load_config(None, ["data.clean.balance_by=domain", "data.clean.balance_mode=over", "data.val_ratio=0",
                                   "data.clean.near_dedup=false"]), tokenizer, tmp_path / "over", [str(path)])
    assert [r.getMessage() for r in caplog.records if "domain" in r.getMessage()] == [
        "data.clean.balance_by=domain: 12 of 30 train records have no 'domain' and were balanced as one class "
        "'(missing)'; oversampling added 0 copies of them"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dsft"):
        prepare(load_config(None, ["data.clean.balance_by=domain", "data.val_ratio=0"]), tokenizer, tmp_path / "all",
                [str(write_jsonl(tmp_path / "all.jsonl", rows[:12] + rows[24:]))])
    assert not [r for r in caplog.records if "balance_by" in r.getMessage()]  # every record has the field


def test_balance_classes_that_differ_only_in_case_are_named_with_what_undersampling_cut(
        tmp_path: Path, tokenizer, qa, write_jsonl, caplog) -> None:
    """Guide 001's difficulty labels with one typed 'Intermediate' among 'intermediate': a class of one record, so
    undersampling cut every class to one record (14 of 18 train records gone) and the log said nothing."""
    levels = ["basic"] * 8 + ["intermediate"] * 5 + ["advanced"] * 4
    rows = [qa(f"question {i} about reservoir {i * 7}", f"answer {i}", difficulty=level) for i, level in enumerate(levels)]
    rows.insert(3, qa("question about the dam", "answer", difficulty="Intermediate"))
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    with caplog.at_level(logging.WARNING, logger="dsft"):
        report = prepare(load_config(None, ["data.clean.balance_by=difficulty", "data.val_ratio=0"]), tokenizer,
                         tmp_path / "out", [str(path)]).report
    assert report["removed"]["balance"] == 14
    notes = [r.getMessage() for r in caplog.records if "balance_by" in r.getMessage()]
    assert notes == [f"data.clean.balance_by=difficulty: the classes 'Intermediate' (1 record, first at {path}:4) and "
                     "'intermediate' (5) differ only in case or spaces and were balanced as separate classes; "
                     "undersampling cut every class to 1 record, removing 14 of 18 train records (each in "
                     "removed.jsonl): write each class one way"], notes
    caplog.clear()
    rows[3] = qa("question about the dam", "answer", difficulty="intermediate")
    with caplog.at_level(logging.WARNING, logger="dsft"):
        prepare(load_config(None, ["data.clean.balance_by=difficulty", "data.val_ratio=0"]), tokenizer,
                tmp_path / "fixed", [str(write_jsonl(tmp_path / "fixed.jsonl", rows))])
    assert not [r for r in caplog.records if "balance_by" in r.getMessage()]


def test_answers_ending_with_an_end_marker_as_text_are_a_warning(tmp_path: Path, tokenizer, caplog) -> None:
    """Guide 002 appends "<|endoftext|>" to every Response by hand. To a DeepSeek tokenizer that is text, not a token:
    the records were kept and trained, the model taught to write the 13 characters before its real EOS, and
    nothing was said."""
    rows = [{"Question": f"问题{i}？", "Complex_CoT": f"分析{i}。", "Response": f"答案{i}。<|endoftext|>"} for i in range(2)]
    rows.append({"Question": "发烧怎么办？", "Complex_CoT": "可能是感冒。", "Response": "多喝水，休息。"})
    path = tmp_path / "medical_o1.json"
    path.write_text(json.dumps(rows, ensure_ascii=False, indent=2), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="dsft"):
        prepare(load_config(None, ["data.val_ratio=0"]), tokenizer, tmp_path / "out", [str(path)])
    notes = [r.getMessage() for r in caplog.records if "end an answer" in r.getMessage()]
    assert notes == [f"data: 2 of 3 records end an answer with '<|endoftext|>' written as text (first at {path} item 1): "
                     "it is not this model's end-of-sequence token, so the model learns to write those characters; "
                     f"every trained answer already ends with the model's own {tokenizer.eos_token!r}: remove the "
                     "marker from the data"], notes
    assert len(load_prepared(tmp_path / "out").splits["train"]) == 3  # kept: a warning, not a rejection
    caplog.clear()
    rows = [{"Question": "标记是什么？", "Complex_CoT": "引用。", "Response": "Qwen 的结束标记 <|endoftext|> 在句中。"}]
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="dsft"):  # quoted inside an answer, not ending it
        prepare(load_config(None, ["data.val_ratio=0"]), tokenizer, tmp_path / "quoted", [str(path)])
    assert not [r for r in caplog.records if "end an answer" in r.getMessage()]


def test_text_records_holding_chat_role_markers_are_a_warning(tmp_path: Path, tokenizer, qa, write_jsonl,
                                                               caplog) -> None:
    """Guide 000's format_conversation output saved as {"text": "<|user|>\\nQ\\n<|assistant|>\\nA"}: read as plain
    text (continued pre-training), every token supervised, the questions too, and the hand-made markers learnt as
    characters, while the log said nothing."""
    rows = [{"text": f"<|user|>\n水库{i}的建成月？\n<|assistant|>\n{1950 + i}年5月"} for i in range(3)]
    rows += [{"text": f"A plain document about reservoir {i} and its dam, {i * 7} metres high."} for i in range(3)]
    path = write_jsonl(tmp_path / "formatted.jsonl", rows)
    with caplog.at_level(logging.WARNING, logger="dsft"):
        prepare(load_config(None, ["data.val_ratio=0"]), tokenizer, tmp_path / "out", [str(path)])
    notes = [r.getMessage() for r in caplog.records if "role markers" in r.getMessage()]
    assert notes == [f"data: 3 of 6 plain-text records hold chat role markers ('<|user|>', first at {path}:1): they "
                     "train as plain text, every token supervised, the prompts too, not with the model's chat template; "
                     "to train on the answers alone, write each as a conversation ({\"messages\": [{\"role\": \"user\", "
                     "\"content\": ...}, {\"role\": \"assistant\", \"content\": ...}]})"], notes
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dsft"):  # a conversation's own text may quote a marker
        prepare(load_config(None, ["data.val_ratio=0"]), tokenizer, tmp_path / "chat",
                [str(write_jsonl(tmp_path / "chat.jsonl", [qa("What does <|user|> mean here?", "A role marker.")]))])
    assert not [r for r in caplog.records if "role markers" in r.getMessage()]


def test_a_ratio_beside_the_files_of_its_split_is_said_not_applied(tmp_path: Path, tokenizer, qa, write_jsonl,
                                                                     caplog) -> None:
    """Guide 000's val.jsonl given as data.val, with data.val_ratio=0.2 asked too: the ratio was dropped without a
    word (the validation split is the file), so the user's 20% never left the train split."""
    train = write_jsonl(tmp_path / "train.jsonl", [qa(f"question {i} about reservoir {i * 7}", f"answer {i}")
                                                    for i in range(10)])
    val = write_jsonl(tmp_path / "val.jsonl", [qa("question about the dam", "answer")])
    with caplog.at_level(logging.WARNING, logger="dsft"):
        report = prepare(load_config(None, [f"data.val=[{val}]", "data.val_ratio=0.2"]), tokenizer, tmp_path / "out",
                         [str(train)]).report
    assert report["splits"] == {"train": 10, "val": 1, "test": 0}
    notes = [r.getMessage() for r in caplog.records if "_ratio" in r.getMessage()]
    assert notes == [f"data.val_ratio=0.2: not applied; data.val gives the validation records ({val}), and no share "
                     "of the train records is dealt to it (remove data.val to split val_ratio off the train records, "
                     "or remove the key)"], notes
    caplog.clear()
    for quiet in ([], ["data.val_ratio=0"]):  # the default beside a file, or no share: nothing is lost, nothing said
        with caplog.at_level(logging.WARNING, logger="dsft"):
            prepare(load_config(None, [f"data.val=[{val}]", *quiet]), tokenizer, tmp_path / f"quiet{len(quiet)}",
                    [str(train)])
        assert not [r for r in caplog.records if "_ratio" in r.getMessage()]


def test_a_training_input_named_as_a_validation_file_is_a_warning(tmp_path: Path, tokenizer, qa, write_jsonl,
                                                                   caplog) -> None:
    """Guide 000's train.jsonl and val.jsonl given together ('dsft data prepare train.jsonl val.jsonl'): both were
    read as training data and split again, the validation records trained on, without a word."""
    train = write_jsonl(tmp_path / "train.jsonl", [qa(f"question {i} about reservoir {i * 7}", f"answer {i}")
                                                    for i in range(10)])
    val = write_jsonl(tmp_path / "val.jsonl", [qa("question about the dam", "answer")])
    with caplog.at_level(logging.WARNING, logger="dsft"):
        prepare(load_config(None, []), tokenizer, tmp_path / "out", [str(train), str(val)])
    notes = [r.getMessage() for r in caplog.records if "read as training data" in r.getMessage()]
    assert notes == [f"{val}: read as training data, though its name says val: to hold it out, name it in data.val "
                     f"(--set data.val=[{val}]) and pass only the training files"], notes
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dsft"):  # given as data.val, it is what it says
        prepare(load_config(None, [f"data.val=[{val}]"]), tokenizer, tmp_path / "held", [str(train)])
    assert not [r for r in caplog.records if "read as training data" in r.getMessage()]


def test_a_stratify_field_the_records_lack_is_a_warning_naming_the_fields_they_have(
        tmp_path: Path, tokenizer, qa, write_jsonl, caplog) -> None:
    """data.stratify_by misspelt (guide 001's 'difficulty' typed 'difficuly'): every record lacked the field, so
    all of them were one stratum and the split was not stratified, without a word (balance_by says so)."""
    rows = [qa(f"question {i} about reservoir {i * 7}", f"answer {i}", difficulty=("basic", "advanced")[i % 2],
               domain="medical") for i in range(20)]
    path = write_jsonl(tmp_path / "in.jsonl", rows + [qa("question about a dam", "answer", domain="medical")])
    with caplog.at_level(logging.WARNING, logger="dsft"):
        prepare(load_config(None, ["data.stratify_by=difficuly", "data.val_ratio=0.2"]), tokenizer, tmp_path / "typo",
                [str(path)])
    notes = [r.getMessage() for r in caplog.records if "stratify_by" in r.getMessage()]
    assert notes == ["data.stratify_by=difficuly: 21 of 21 records have no 'difficuly' and were split as one "
                     "stratum '(missing)'; the records' meta fields are difficulty, domain"], notes
    caplog.clear()
    plain = write_jsonl(tmp_path / "plain.jsonl", [qa(f"question {i} about reservoir {i}", f"answer {i}") for i in range(9)])
    with caplog.at_level(logging.WARNING, logger="dsft"):  # named 'origin', where each record was read, as a field
        prepare(load_config(None, ["data.stratify_by=difficulty", "data.val_ratio=0.2"]), tokenizer,
                tmp_path / "plain", [str(plain)])
    assert [r.getMessage() for r in caplog.records if "stratify_by" in r.getMessage()] == [
        "data.stratify_by=difficulty: 9 of 9 records have no 'difficulty' and were split as one stratum '(missing)'; "
        "the records have no meta fields"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dsft"):
        prepare(load_config(None, ["data.stratify_by=difficulty", "data.val_ratio=0.2"]), tokenizer,
                tmp_path / "some", [str(path)])
    assert [r.getMessage() for r in caplog.records if "stratify_by" in r.getMessage()] == [
        "data.stratify_by=difficulty: 1 of 21 records have no 'difficulty' and were split as one stratum '(missing)'"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dsft"):
        prepare(load_config(None, ["data.stratify_by=domain", "data.val_ratio=0.2"]), tokenizer, tmp_path / "all",
                [str(path)])
    assert not [r for r in caplog.records if "stratify_by" in r.getMessage()]  # every record has the field


def test_nothing_left_is_an_error_after_the_report(tmp_path: Path, tokenizer, write_jsonl) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [{"foo": 1}, {"bar": 2}])
    with pytest.raises(DataError, match="no records left to train on: read 2, rejected 2") as err:
        prepare(load_config(), tokenizer, tmp_path / "out", [str(path)])
    assert (tmp_path / "out" / "data_report.json").is_file()
    # The message says why, not only where to look: the most frequent reasons, each with its first place.
    assert f"\n  1 x unknown format (keys: foo); set data.format and data.columns (first: {path}:1)" in str(err.value)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(DataError, match="read 0, .*: the inputs hold no records"):
        prepare(load_config(), tokenizer, tmp_path / "out4", [str(empty)])
    with pytest.raises(DataError, match="removed 2, kept 0 .*; removed by length_filter 2; first removed: .*two.jsonl:1: "):
        prepare(load_config(None, ["data.clean.max_tokens=1"]), tokenizer, tmp_path / "out5",
                [str(write_jsonl(tmp_path / "two.jsonl", [{"prompt": "a b c d e", "completion": "f g h i j"},
                                                          {"prompt": "k l m n o", "completion": "p q r s t"}]))])
    same = write_jsonl(tmp_path / "same.jsonl", [{"prompt": "p", "completion": "c"}])
    with pytest.raises(DataError, match="no records left to train on: .* kept 1 \\(splits \\{'train': 0, 'val': 1"):
        prepare(load_config(None, [f"data.val=[{same}]"]), tokenizer, tmp_path / "out3", [str(same)])
    with pytest.raises(DataError, match="no training data"):
        prepare(load_config(), tokenizer, tmp_path / "out2")
    with pytest.raises(DataError, match="not a prepared data directory"):
        load_prepared(tmp_path / "nowhere")


def test_a_named_split_partly_rejected_and_partly_filtered_says_both(tmp_path: Path, tokenizer, write_jsonl) -> None:
    """data.val: one record rejected, the other removed by a length filter; the error said only the rejection, so
    the record that was read and kept by the reader went unexplained."""
    train = write_jsonl(tmp_path / "train.jsonl", [{"prompt": f"q{i}", "completion": f"a{i}"} for i in range(4)])
    val = write_jsonl(tmp_path / "val.jsonl", [{"prompt": "long " * 50, "completion": "x"}, {"foo": 1}])
    with pytest.raises(DataError, match="data.val: no records left to validate on: read 2, rejected 1 ") as err:
        prepare(load_config(None, [f"data.val=[{val}]", "data.clean.max_tokens=20"]), tokenizer, tmp_path / "out",
                [str(train)])
    said = str(err.value)
    assert f"; removed by length_filter 1, first {val}:1: " in said, said  # what removed it, named
    assert said.endswith(f"\n  1 x unknown format (keys: foo); set data.format and data.columns (first: {val}:2)"), said


def test_a_named_split_emptied_by_deduplication_names_the_copy_kept(tmp_path: Path, tokenizer, write_jsonl) -> None:
    """data.val's records are copies of data.test's (other files): the evaluation splits are deduplicated first, test
    before val, so val's copies go; the error said 'removed by cleaning (deduplicated against train, or filtered)',
    which never happens to val. Now it names the step and the first record removed, with the copy kept."""
    train = write_jsonl(tmp_path / "train.jsonl", [{"prompt": f"q{i}", "completion": f"a{i}"} for i in range(4)])
    rows = [{"prompt": f"held out {i}", "completion": f"b{i}"} for i in range(2)]
    val, test = write_jsonl(tmp_path / "val.jsonl", rows), write_jsonl(tmp_path / "test.jsonl", rows)
    with pytest.raises(DataError, match="data.val: no records left to validate on: read 2, rejected 0 ") as err:
        prepare(load_config(None, [f"data.val=[{val}]", f"data.test=[{test}]"]), tokenizer, tmp_path / "out",
                [str(train)])
    said = str(err.value)
    assert said.endswith(f"; removed by exact_dedup 2, first {val}:1: exact duplicate of {test}:1"), said
    assert "deduplicated against train" not in said


@pytest.mark.parametrize("near", ["false", "true"])
def test_copies_that_train_different_turns_are_kept_on_one_side(tmp_path: Path, tokenizer, write_jsonl, near) -> None:
    """Each conversation given twice, loss on its first turn then on its second: both copies are kept (they were
    removed as exact duplicates) and land in the same split, so validation never holds a training conversation."""
    rows = []
    for i in range(30):
        for trained in (1, 3):
            turns = [{"role": "user", "content": f"river {i} length?"}, {"role": "assistant", "content": f"{i} km"},
                     {"role": "user", "content": f"and dam {i}?"}, {"role": "assistant", "content": f"{i * 7} m high"}]
            for index in (1, 3):
                turns[index]["loss"] = index == trained
            rows.append({"messages": turns})
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    cfg = load_config(None, [f"data.clean.near_dedup={near}", "data.val_ratio=0.3"])
    prepared = prepare(cfg, tokenizer, tmp_path / "out", [str(path)])
    assert prepared.report["kept"] == 60
    sides = {}
    for name, part in prepared.splits.items():
        for conversation in part:
            sides.setdefault(conversation.messages[0].content, set()).add(name)
    assert all(len(names) == 1 for names in sides.values()) and prepared.report["splits"]["val"] > 0


def test_masking_last_removes_records_whose_last_turn_is_not_trained(tmp_path: Path, tokenizer, write_jsonl) -> None:
    """template.masking=last trains only the last assistant turn: with loss false there it trains nothing. Such a
    record was kept and counted, then dropped at training ("no supervised token"); it is removed here, with why."""
    def turns(i: int, last_loss: bool | None, first_loss: bool | None = None) -> dict:
        messages = [{"role": "user", "content": f"river {i}?"}, {"role": "assistant", "content": f"{i} km"},
                    {"role": "user", "content": f"dam {i}?"}, {"role": "assistant", "content": f"{i * 7} m"}]
        for index, loss in ((1, first_loss), (3, last_loss)):
            if loss is not None:
                messages[index]["loss"] = loss
        return {"messages": messages}
    rows = [turns(0, False), turns(1, None), turns(2, False, first_loss=True), turns(3, True), turns(4, False)]
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    prepared = prepare(load_config(None, ["template.masking=last"]), tokenizer, tmp_path / "out", [str(path)])
    _identity(prepared.report)
    assert prepared.report["kept"] == 3 and prepared.report["removed"]["nothing_trained"] == 2
    removed = [r for r in _lines(tmp_path / "out" / "removed.jsonl") if r["step"] == "nothing_trained"]
    assert [r["where"] for r in removed] == [f"{path}:1", f"{path}:5"]
    assert removed[0]["reason"] == ("template.masking=last trains only the last assistant turn, messages[3], "
                                    "which has loss: false: nothing to train on")
    # The default masking trains the first turn of those two: nothing is removed, and the step is not listed.
    everything = prepare(load_config(), tokenizer, tmp_path / "out2", [str(path)])
    assert everything.report["kept"] == 5 and "nothing_trained" not in everything.report["removed"]


def test_a_folder_whose_preparation_did_not_finish_is_not_read_as_prepared_data(tmp_path: Path, run_cli) -> None:
    """A preparation writes a placeholder report first, which stays when it stops before its real report (a bad
    record under data.on_error: fail; a process killed after writing its splits). Every reader that knows prepared
    data by its report took such a folder for a finished one: dsft eval --data pointed at its splits, data.train
    called it a preparation to train on, the dashboard offered it, and data.prepared_dir trained on its splits."""
    from dsft.config import DsftConfig
    from dsft.data.input_checks import input_problems
    from dsft.data.preference_pipeline import load_prepared_preference
    from dsft.ui.launch import is_prepared_dir

    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"prompt": "p", "completion": "c"}) + "\n" + json.dumps({"prompt": "no answer"}) + "\n")
    out = tmp_path / "prep"
    code, _, err = run_cli(["data", "prepare", str(source), "--out", str(out), "--tokenizer", "deepseek",
                            "--set", "data.on_error=fail"])
    assert code == 2 and (out / "rejects.jsonl").is_file(), err
    (out / "train.jsonl").write_text(source.read_text().splitlines()[0] + "\n")  # as a stop after the splits leaves it
    code, _, err = run_cli(["eval", "tiny-deepseek-v3", "--data", str(out), "--out", str(tmp_path / "eval")])
    said = " ".join(err.split())
    assert code == 2 and "Traceback" not in err and f"--data {out}: a preparation that did not finish" in said, said
    [problem] = input_problems(DsftConfig.model_validate({"data": {"prepared_dir": str(out)}}))
    assert problem.startswith(f"data.prepared_dir: {out}: a preparation that did not finish (its data_report.json is "
                              "still the placeholder"), problem
    [problem] = input_problems(DsftConfig.model_validate({"data": {"train": [str(out)]}}))
    assert problem.startswith(f"data.train: {out}: a preparation that did not finish"), problem
    assert problem.endswith(f"rerun the preparation into it, then train on it with data.prepared_dir: {out}"), problem
    for load in (load_prepared, lambda path: load_prepared_preference(path, "dpo")):
        with pytest.raises(DataError, match="a preparation that did not finish"):
            load(out)
    assert not is_prepared_dir(out)


def test_prepare_names_a_removed_or_rejected_turn_where_it_is_in_the_file(tmp_path: Path, tokenizer,
                                                                           write_jsonl) -> None:
    """Cleaning and the control-token check named the messages dsft built: an Alpaca output emptied by HTML
    stripping was 'messages[1] empty after HTML stripping', a turn after a system field one place off."""
    rows = [{"instruction": "Say hi", "output": "<p></p>"},
            {"system": "s", "messages": [{"role": "user", "content": "q<｜end▁of▁sentence｜>"},
                                         {"role": "assistant", "content": "a"}]},
            {"system": "s", "messages": [{"role": "user", "content": "river?"}, {"role": "assistant", "content": "a"},
                                         {"role": "user", "content": "dam?"},
                                         {"role": "assistant", "content": "b", "loss": False}]},
            {"instruction": "What is deep?", "output": "The river."}]
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    cfg = load_config(None, ["data.clean.strip_html=true", "data.clean.normalize_unicode=false",  # NFKC defuses the EOS
                             "template.masking=last", "data.val_ratio=0"])
    prepare(cfg, tokenizer, tmp_path / "out", [str(path)])
    removed = {r["where"]: r["reason"] for r in _lines(tmp_path / "out" / "removed.jsonl")}
    assert removed == {f"{path}:1": "output empty after HTML stripping",
                       f"{path}:3": ("template.masking=last trains only the last assistant turn, messages[3], "
                                     "which has loss: false: nothing to train on")}
    [rejected] = _lines(tmp_path / "out" / "rejects.jsonl")
    assert rejected["where"] == f"{path}:2"
    assert rejected["reasons"][0].startswith("messages[0].content: holds the tokenizer's control token")
