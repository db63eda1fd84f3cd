"""Preference / RL data: every accepted form, the rejections, and the accounting of a prepared directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsft.config import DsftConfig
from dsft.data.preference import parse_preference, split_pair_for_kto
from dsft.data.preference_fields import PreferenceProblem
from dsft.data.preference_pipeline import load_prepared_preference, prepare_preference
from dsft.errors import DataError

THINK = "<think>\nadd\n</think>\n\n4"


def test_explicit_prompt_messages_with_reasoning_on_each_side() -> None:
    record = parse_preference({
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}],
        "chosen": [{"role": "assistant", "content": "4", "reasoning_content": "2 plus 2"}],
        "rejected": {"role": "assistant", "content": "5", "reasoning_content": "guess"},
    }, "pair")
    assert [m.role for m in record.prompt] == ["system", "user"]
    assert (record.chosen.content, record.chosen.reasoning) == ("4", "2 plus 2")
    assert (record.rejected.content, record.rejected.reasoning) == ("5", "guess")


def test_inline_think_in_a_string_side_becomes_reasoning() -> None:
    record = parse_preference({"prompt": "2+2?", "chosen": THINK, "rejected": "5"}, "pair")
    assert (record.chosen.reasoning, record.chosen.content) == ("add", "4")
    assert record.rejected.reasoning is None


def test_implicit_prompt_is_the_shared_prefix() -> None:
    user = {"role": "user", "content": "Hi"}
    record = parse_preference({
        "chosen": [user, {"role": "assistant", "content": "Hello!"}],
        "rejected": [user, {"role": "assistant", "content": "Go away."}],
    }, "pair")
    assert [m.content for m in record.prompt] == ["Hi"]
    assert (record.chosen.content, record.rejected.content) == ("Hello!", "Go away.")


def test_sharegpt_pair_with_system() -> None:
    record = parse_preference({
        "conversations": [{"from": "human", "value": "Capital of France?"}], "system": "Answer in one word.",
        "chosen": {"from": "gpt", "value": "Paris"}, "rejected": {"from": "gpt", "value": "Lyon"},
    }, "pair")
    assert [m.role for m in record.prompt] == ["system", "user"]
    assert record.chosen.content == "Paris"


def test_kto_label_and_kto_tag_and_pairs() -> None:
    a = parse_preference({"prompt": "q", "completion": "good", "label": True}, "labeled")
    b = parse_preference({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "bad"}],
                          "kto_tag": False}, "labeled")
    assert (a.completion.content, a.label) == ("good", True)
    assert (b.completion.content, b.label, [m.role for m in b.prompt]) == ("bad", False, ["user"])
    halves = split_pair_for_kto({"prompt": "q", "chosen": "good", "rejected": "bad"})
    assert [(h.completion.content, h.label) for h in halves] == [("good", True), ("bad", False)]


def test_grpo_prompt_with_numeric_answer_reference() -> None:
    record = parse_preference({"question": "2+2?", "answer": 4, "solution": "2+2=4", "level": 1}, "prompt")
    assert record.references == {"answer": "4", "solution": "2+2=4"}
    assert record.meta == {"level": 1}
    assert record.conversation().messages[-1].role == "user"


@pytest.mark.parametrize(("row", "kind", "reason"), [
    ({"prompt": "q", "chosen": "a", "rejected": "a"}, "pair", "chosen and rejected are identical"),
    ({"prompt": "q", "chosen": "a", "rejected": "<think>never closed"}, "pair", "rejected.content: unclosed <think>"),
    ({"prompt": "q", "chosen": "a"}, "pair", "missing field(s) rejected"),
    ({"prompt": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "x"}], "chosen": "a",
      "rejected": "b"}, "pair", "prompt: must end with a user (or tool) turn"),
    ({"prompt": "q", "chosen": [{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}],
      "rejected": "c"}, "pair", "chosen: expected exactly one assistant message"),
    ({"prompt": "q", "chosen": "", "rejected": "b"}, "pair", "chosen.content: empty assistant message"),
    ({"prompt": "q", "completion": "a", "label": "maybe"}, "labeled", "label: expected true or false"),
    ({"prompt": "q", "completion": "a"}, "labeled", "missing field label"),
    ({"answer": "4"}, "prompt", "no prompt"),
    ({"prompt": "q", "answer": [4]}, "prompt", "answer: expected a string or a number"),
])
def test_rejections_name_the_field(row: dict, kind: str, reason: str) -> None:
    with pytest.raises(PreferenceProblem, match=None) as info:
        parse_preference(row, kind)  # type: ignore[arg-type]
    assert reason in str(info.value)


def _write(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def test_prepare_accounts_for_every_record(tmp_path: Path) -> None:
    rows = [{"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(10)]
    rows += [rows[0], {"prompt": "q", "chosen": "same", "rejected": "same"}, "{not json"]
    source = _write(tmp_path / "pairs.jsonl", rows)
    cfg = DsftConfig.model_validate({"data": {"train": [str(source)], "val_ratio": 0.2}})
    prepared = prepare_preference(cfg, tmp_path / "out", "dpo")
    report = prepared.report
    assert report["read"] == 13
    assert report["rejected"] == 2 and report["removed"] == {"exact_dedup": 1}
    assert report["splits"] == {"train": 8, "val": 2, "test": 0}
    assert report["read"] == report["kept"] + report["rejected"] + sum(report["removed"].values())
    rejects = [json.loads(line) for line in (tmp_path / "out" / "rejects.jsonl").read_text().splitlines()]
    assert [r["where"] for r in rejects] == [f"{source}:12", f"{source}:13"]
    # The written splits are ordinary input: read back, they are the same records.
    again = load_prepared_preference(tmp_path / "out", "dpo")
    assert [r.to_dict() for r in again.splits["train"]] == [
        {**r.to_dict(), "meta": {"origin": again.splits["train"][i].meta["origin"]}}
        for i, r in enumerate(prepared.splits["train"])
    ]


def test_pairs_read_as_kto_data_keep_both_halves_in_one_split(tmp_path: Path) -> None:
    rows = [{"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(10)]
    source = _write(tmp_path / "pairs.jsonl", rows)
    cfg = DsftConfig.model_validate({"data": {"train": [str(source)], "val_ratio": 0.2}})
    prepared = prepare_preference(cfg, tmp_path / "out", "kto")
    assert prepared.report["read"] == 10 and prepared.report["kept"] == 20
    for part in prepared.splits.values():
        prompts = [r.prompt[0].content for r in part]
        assert all(prompts.count(p) == 2 for p in prompts)
        assert sorted(r.label for r in part) == [False] * (len(part) // 2) + [True] * (len(part) // 2)


def test_a_pair_read_as_kto_data_that_cleaning_makes_identical_is_removed(tmp_path: Path) -> None:
    """As for DPO: a pair whose sides NFKC makes the same text would otherwise be kept labelled both desirable and
    undesirable."""
    rows = [{"prompt": "w", "chosen": "ｗide", "rejected": "wide"}, {"prompt": "q", "chosen": "good", "rejected": "bad"}]
    source = _write(tmp_path / "pairs.jsonl", [json.dumps(row, ensure_ascii=False) for row in rows])
    cfg = DsftConfig.model_validate({"data": {"train": [str(source)], "val_ratio": 0}})
    prepared = prepare_preference(cfg, tmp_path / "out", "kto")
    assert (prepared.report["read"], prepared.report["kept"]) == (2, 2)
    assert [r.completion.content for r in prepared.splits["train"]] == ["good", "bad"]
    assert prepared.report["removed"] == {"normalize_unicode": 1}
    [row] = [json.loads(line) for line in (tmp_path / "out" / "removed.jsonl").open(encoding="utf-8")]
    assert (row["where"], row["reason"]) == (f"{source}:1", "chosen and rejected are identical after normalize_unicode: "
                                                            "the same text marked desirable and undesirable")


def test_kto_records_labelled_both_ways_are_removed_naming_each_other(tmp_path: Path) -> None:
    """The same prompt and completion marked desirable in one record and undesirable in another (also when they
    differ only before NFKC, and when one is a pair's side) would push the model towards and away from one text:
    both go, each naming the other; same-label copies are still only deduplicated, and conflicts go without
    exact_dedup too."""
    rows = [{"prompt": "Capital of France?", "completion": "Paris.", "label": True},
            {"prompt": "Capital of France?", "completion": "Ｐaris.", "label": False},
            {"prompt": "2+2?", "completion": "4", "label": True},
            {"prompt": "2+2?", "completion": "4", "label": True},
            {"prompt": "2+2?", "completion": "5", "label": False},
            {"prompt": "Capital of Italy?", "chosen": "Rome.", "rejected": "Milan."},
            {"prompt": "Capital of Italy?", "completion": "Milan.", "label": True}]
    source = _write(tmp_path / "kto.jsonl", [json.dumps(row, ensure_ascii=False) for row in rows])
    cfg = DsftConfig.model_validate({"data": {"train": [str(source)], "val_ratio": 0}})
    prepared = prepare_preference(cfg, tmp_path / "out", "kto")
    report = prepared.report
    assert (report["read"], report["kept"], report["rejected"]) == (7, 2, 0)
    assert report["removed"] == {"label_conflict": 4, "exact_dedup": 1}
    assert [(r.completion.content, r.label) for r in prepared.splits["train"]] == [("4", True), ("5", False)]
    conflict = "label conflicts with {}: same prompt and completion marked {} there"
    removed = [(row["step"], row["where"], row["reason"]) for row in
               map(json.loads, (tmp_path / "out" / "removed.jsonl").open(encoding="utf-8"))]
    assert removed == [("label_conflict", f"{source}:1", conflict.format(f"{source}:2", "undesirable")),
                       ("label_conflict", f"{source}:2", conflict.format(f"{source}:1", "desirable")),
                       ("label_conflict", f"{source}:6", conflict.format(f"{source}:7", "desirable")),
                       ("label_conflict", f"{source}:7", conflict.format(f"{source}:6", "undesirable")),
                       ("exact_dedup", f"{source}:4", f"exact duplicate of {source}:3")]
    no_dedup = cfg.model_copy(update={"data": cfg.data.model_copy(
        update={"clean": cfg.data.clean.model_copy(update={"exact_dedup": False})})})
    assert prepare_preference(no_dedup, tmp_path / "kept", "kto").report["removed"] == {"label_conflict": 4}


def test_pairs_preferring_opposite_sides_are_removed_naming_each_other(tmp_path: Path) -> None:
    """A pair preferring A over B and another preferring B over A on the same prompt (also when they differ only in
    case or whitespace) would push the model both ways: both go, each naming the other; same-direction copies are
    still only deduplicated, and conflicts go without exact_dedup too."""
    rows = [{"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Lyon."},
            {"prompt": "capital of  France?", "chosen": "lyon.", "rejected": "Paris."},
            {"prompt": "2+2?", "chosen": "4", "rejected": "5"},
            {"prompt": "2+2?", "chosen": "4", "rejected": "5"},
            {"prompt": "3+3?", "chosen": "5", "rejected": "4"}]
    source = _write(tmp_path / "pairs.jsonl", [json.dumps(row) for row in rows])
    cfg = DsftConfig.model_validate({"data": {"train": [str(source)], "val_ratio": 0}})
    for objective in ("dpo", "orpo"):
        prepared = prepare_preference(cfg, tmp_path / objective, objective)
        report = prepared.report
        assert (report["read"], report["kept"], report["rejected"]) == (5, 2, 0)
        assert report["removed"] == {"preference_conflict": 2, "exact_dedup": 1}
        assert [r.meta["origin"] for r in prepared.splits["train"]] == [f"{source}:3", f"{source}:5"]
        conflict = ("preference conflicts with {}: same prompt and completions, chosen and rejected the other way round"
                    " there")
        removed = [(row["step"], row["where"], row["reason"]) for row in
                   map(json.loads, (tmp_path / objective / "removed.jsonl").open(encoding="utf-8"))]
        assert removed == [("preference_conflict", f"{source}:1", conflict.format(f"{source}:2")),
                           ("preference_conflict", f"{source}:2", conflict.format(f"{source}:1")),
                           ("exact_dedup", f"{source}:4", f"exact duplicate of {source}:3")]
    no_dedup = cfg.model_copy(update={"data": cfg.data.model_copy(
        update={"clean": cfg.data.clean.model_copy(update={"exact_dedup": False})})})
    assert prepare_preference(no_dedup, tmp_path / "kept", "dpo").report["removed"] == {"preference_conflict": 2}


@pytest.mark.parametrize("objective, step, lesson", [
    ("dpo", "preference_conflict", "nothing to prefer"), ("orpo", "preference_conflict", "nothing to prefer"),
    ("kto", "label_conflict", "the same text marked desirable and undesirable"),
])
def test_a_pair_whose_sides_differ_only_in_case_or_whitespace_is_removed(tmp_path: Path, objective: str, step: str,
                                                                        lesson: str) -> None:
    """Chosen "Rome", rejected "rome" are the same text as deduplication compares it: nothing to prefer (DPO/ORPO),
    and read as KTO data the same text labelled both ways. Only exactly identical sides were refused."""
    rows = [{"prompt": "Capital of Italy?", "chosen": "Rome", "rejected": "rome"},
            {"prompt": "Capital of Spain?", "chosen": "Madrid", "rejected": " Madrid  "},
            {"prompt": "Capital of France?", "chosen": "Paris", "rejected": "Lyon"}]
    source = _write(tmp_path / "pairs.jsonl", [json.dumps(row) for row in rows])
    cfg = DsftConfig.model_validate({"data": {"train": [str(source)], "val_ratio": 0}})
    report = prepare_preference(cfg, tmp_path / "out", objective).report
    assert (report["read"], report["rejected"], report["removed"]) == (3, 0, {step: 2})
    assert report["kept"] == (2 if objective == "kto" else 1)
    reason = f"chosen and rejected differ only in case, Unicode form or whitespace: {lesson}"
    removed = [(row["step"], row["where"], row["reason"]) for row in
               map(json.loads, (tmp_path / "out" / "removed.jsonl").open(encoding="utf-8"))]
    assert removed == [(step, f"{source}:1", reason), (step, f"{source}:2", reason)]


@pytest.mark.parametrize("objective, lesson", [
    ("dpo", "nothing to prefer"), ("kto", "the same text marked desirable and undesirable"),
])
def test_sides_that_are_the_same_are_said_in_one_family_however_found(tmp_path: Path, objective: str,
                                                                     lesson: str) -> None:
    """Identical as written (rejected when read), identical after NFKC (removed by the rewrite), differing only in
    case (removed by deduplication): three places found it with three wordings, one of them without what it meant
    for KTO data. One function says all three (dsft.data.preference.same_sides_problem), each with its lesson."""
    rows = [{"prompt": "a", "chosen": "same", "rejected": "same"}, {"prompt": "w", "chosen": "ｗide", "rejected": "wide"},
            {"prompt": "r", "chosen": "Rome", "rejected": "rome"}, {"prompt": "q", "chosen": "good", "rejected": "bad"}]
    source = _write(tmp_path / "pairs.jsonl", [json.dumps(row, ensure_ascii=False) for row in rows])
    cfg = DsftConfig.model_validate({"data": {"train": [str(source)], "val_ratio": 0}})
    prepare_preference(cfg, tmp_path / "out", objective)
    [rejected] = [json.loads(line) for line in (tmp_path / "out" / "rejects.jsonl").open(encoding="utf-8")]
    removed = [json.loads(line) for line in (tmp_path / "out" / "removed.jsonl").open(encoding="utf-8")]
    said = [(rejected["where"], rejected["reasons"])] + [(row["where"], [row["reason"]]) for row in removed]
    assert said == [(f"{source}:1", [f"chosen and rejected are identical: {lesson}"]),
                    (f"{source}:2", [f"chosen and rejected are identical after normalize_unicode: {lesson}"]),
                    (f"{source}:3", [f"chosen and rejected differ only in case, Unicode form or whitespace: {lesson}"])]


def test_on_error_fail_lists_problems(tmp_path: Path) -> None:
    source = _write(tmp_path / "p.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "a"}])
    cfg = DsftConfig.model_validate({"data": {"train": [str(source)], "on_error": "fail"}})
    with pytest.raises(DataError) as info:
        prepare_preference(cfg, tmp_path / "out", "dpo")
    assert f"{source}:1: chosen and rejected are identical" in str(info.value)


def test_reasoning_on_one_side_is_reported(tmp_path: Path) -> None:
    rows = [{"prompt": "q", "chosen": THINK, "rejected": "5"}, {"prompt": "r", "chosen": THINK, "rejected": THINK + "!"}]
    source = _write(tmp_path / "p.jsonl", rows)
    cfg = DsftConfig.model_validate({"data": {"train": [str(source)], "val_ratio": 0}})
    reasoning = prepare_preference(cfg, tmp_path / "out", "dpo").report["reasoning"]
    assert reasoning == {"chosen_with_reasoning": 2, "rejected_with_reasoning": 1, "completion_with_reasoning": 0,
                         "pairs_reasoning_on_one_side": 1}


def test_dsft_data_prepare_reads_preference_records(tmp_path: Path, run_cli) -> None:
    source = _write(tmp_path / "p.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b"}, "{broken"])
    code, out, err = run_cli(["data", "prepare", str(source), "--out", str(tmp_path / "prep"),
                              "--set", "train.objective=dpo", "--set", "data.val_ratio=0"])
    assert code == 0, out + err
    report = json.loads((tmp_path / "prep" / "data_report.json").read_text())
    assert (report["read"], report["kept"], report["rejected"], report["kind"]) == (2, 1, 1, "pair")
    again = load_prepared_preference(tmp_path / "prep", "dpo")
    assert again.splits["train"][0].chosen.content == "a"


def test_report_ledger_fields_and_removed_rows(tmp_path: Path) -> None:
    """The ledger's part of the report (forms, rejections quoted, removals per step) and removed.jsonl, exactly."""
    rows = [{"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(3)]
    rows += [rows[1], {"prompt": "k", "completion": "fine", "label": True}, {"prompt": "q", "completion": "x"}, "{no"]
    source = _write(tmp_path / "mixed.jsonl", rows)
    cfg = DsftConfig.model_validate({"data": {"train": [str(source)], "val_ratio": 0}})
    report = prepare_preference(cfg, tmp_path / "out", "kto").report
    assert {key: report[key] for key in ("read", "kept", "rejected", "removed", "splits", "forms")} == {
        "read": 7, "kept": 7, "rejected": 2, "removed": {"exact_dedup": 1},
        "splits": {"train": 7, "val": 0, "test": 0}, "forms": {"pair": 4, "labeled": 1},
    }
    assert report["rejected_examples"] == [f"{source}:6: labeled completion: missing field label (true = desirable, false = undesirable)",
                                           f"{source}:7: malformed JSON: Expecting property name enclosed in double "
                                           "quotes (column 2)"]
    removed = (tmp_path / "out" / "removed.jsonl").read_text(encoding="utf-8").splitlines()
    assert removed == [json.dumps({"step": "exact_dedup", "where": f"{source}:4",
                                   "reason": f"exact duplicate of {source}:2",
                                   "record": {"prompt": [{"role": "user", "content": "q1"}],
                                              "chosen": [{"role": "assistant", "content": "good 1"}],
                                              "rejected": [{"role": "assistant", "content": "bad 1"}],
                                              "meta": {"origin": f"{source}:4"}}})]
    nothing_removed = prepare_preference(cfg.model_copy(update={"data": cfg.data.model_copy(
        update={"train": [str(_write(tmp_path / "one.jsonl", rows[:1]))]})}), tmp_path / "one", "dpo").report
    assert nothing_removed["removed"] == {} and nothing_removed["rejected_examples"] == []


def test_preference_text_is_cleaned_as_sft_text_is(tmp_path: Path, tokenizer) -> None:
    """The SFT rewrites and control-token rejection apply to prompts and completions: NFKC (fullwidth letters,
    zero-width spaces, CRLF), a pair NFKC makes identical removed, a control token written as text rejected
    naming its side, and strip_html when it is on."""
    rows = [{"prompt": "Ｗhat is 2+2?\u200b", "chosen": "4\r\nsure", "rejected": "5"},
            {"prompt": "What is <|EOT|>?", "chosen": "A marker.", "rejected": "No idea."},
            {"prompt": "q", "chosen": "Stop at <|EOT|> here.", "rejected": "No."},
            {"prompt": "w", "chosen": "ｗide", "rejected": "wide"},
            {"prompt": "h", "chosen": "<p>bold</p>", "rejected": "plain"},
            {"prompt": "z", "chosen": "fine", "rejected": "\x07"}]
    source = _write(tmp_path / "p.jsonl", [json.dumps(row, ensure_ascii=False) for row in rows])
    cfg = DsftConfig.model_validate({"data": {"train": [str(source)], "val_ratio": 0, "clean": {"strip_html": True}}})
    prepared = prepare_preference(cfg, tmp_path / "out", "dpo", tokenizer)
    report = prepared.report
    assert (report["read"], report["kept"], report["rejected"]) == (6, 2, 2)
    assert report["removed"] == {"normalize_unicode": 2}
    removed = [json.loads(line)["reason"] for line in (tmp_path / "out" / "removed.jsonl").open(encoding="utf-8")]
    assert removed == ["chosen and rejected are identical after normalize_unicode: nothing to prefer",
                       "rejected empty after Unicode normalisation"]
    first, html = prepared.splits["train"]
    assert (first.prompt[0].content, first.chosen.content) == ("What is 2+2?", "4\nsure")
    assert html.chosen.content == "bold"
    reasons = {row["where"]: row["reasons"] for row in map(json.loads, (tmp_path / "out" / "rejects.jsonl").open())}
    assert reasons[f"{source}:2"][0].startswith("prompt.content: holds the tokenizer's control token '<|EOT|>'")
    assert reasons[f"{source}:3"][0].startswith("chosen.content: holds the tokenizer's control token '<|EOT|>'")


def test_grpo_references_are_cleaned_as_the_prompts_are(tmp_path: Path) -> None:
    """A GRPO reference goes through the same rewrites as its prompt (and as ``dsft eval``'s references): a fullwidth
    answer becomes ASCII, so an exact reward matches the answer of a model trained on normalised text; a reference a
    rewrite empties removes its record, named."""
    from dsft.eval.rewards import answer_accuracy

    rows = [{"prompt": "Ｗhat is 6×7?", "answer": "４２", "solution": "<p>6×7 = ４２</p>"},
            {"prompt": "blank", "answer": "\x07"}]
    source = _write(tmp_path / "g.jsonl", [json.dumps(row, ensure_ascii=False) for row in rows])
    cfg = DsftConfig.model_validate({"data": {"train": [str(source)], "val_ratio": 0, "clean": {"strip_html": True}}})
    prepared = prepare_preference(cfg, tmp_path / "out", "grpo")
    [record] = prepared.splits["train"]
    assert record.references == {"answer": "42", "solution": "6×7 = 42"}
    assert answer_accuracy(False, "42", record.references["answer"], "exact") == 1.0
    assert json.loads((tmp_path / "out" / "train.jsonl").read_text(encoding="utf-8"))["answer"] == "42"
    removed = [json.loads(line)["reason"] for line in (tmp_path / "out" / "removed.jsonl").open(encoding="utf-8")]
    assert removed == ["answer empty after Unicode normalisation"]


def test_sft_cleaning_keys_preference_preparation_runs_are_accepted() -> None:
    from dsft.training.objective_checks import objective_problems

    cfg = DsftConfig.model_validate({"train": {"objective": "dpo"},
                                     "data": {"clean": {"strip_html": True, "normalize_unicode": False}}})
    assert objective_problems(cfg) == []
    refused = DsftConfig.model_validate({"train": {"objective": "dpo"}, "data": {"clean": {"near_dedup": True}}})
    assert "data.clean.near_dedup: only data.clean.strip_html, normalize_unicode" in "\n".join(objective_problems(refused))


@pytest.mark.parametrize("objective", ["dpo", "kto"])
def test_a_named_val_file_emptied_by_cleaning_is_refused(tmp_path: Path, objective: str) -> None:
    """data.val's only pair contradicts a train pair (removed, both): the preparation went on without validation."""
    train = _write(tmp_path / "train.jsonl", [{"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"}
                                               for i in range(4)])
    val = _write(tmp_path / "val.jsonl", [{"prompt": "q0", "chosen": "bad 0", "rejected": "good 0"}])
    cfg = DsftConfig.model_validate({"data": {"train": [str(train)], "val": [str(val)]}})
    with pytest.raises(DataError) as info:
        prepare_preference(cfg, tmp_path / "out", objective)
    # What removed it, named (it said 'deduplicated against train, or filtered', which the evaluation splits,
    # deduplicated first, never are).
    step, why = {"dpo": ("preference_conflict", "preference conflicts with"),
                 "kto": ("label_conflict", "label conflicts with")}[objective]
    assert str(info.value) == (f"data.val: no records left to validate on: read 1, rejected 0 ({val}; see "
                               f"{tmp_path / 'out' / 'data_report.json'}); removed by {step} 1, first {val}:1: "
                               f"{why} {train}:1") + str(info.value).split(f"{train}:1", 1)[1]


@pytest.mark.parametrize("objective, step", [("dpo", "preference_conflict"), ("kto", "label_conflict")])
def test_nothing_left_to_train_on_names_what_removed_the_records(tmp_path: Path, objective: str, step: str) -> None:
    """Every pair removed by cleaning: the error said 'removed 2' and no more, where SFT data's names the steps and
    the first record removed, with why (one message for both, dsft.data.empty_splits)."""
    source = _write(tmp_path / "pairs.jsonl", [{"prompt": "q", "chosen": "A", "rejected": "B"},
                                               {"prompt": "q", "chosen": "B", "rejected": "A"}])
    cfg = DsftConfig.model_validate({"data": {"train": [str(source)]}})
    with pytest.raises(DataError) as info:
        prepare_preference(cfg, tmp_path / "out", objective)
    kind = {"dpo": "pair", "kto": "labeled"}[objective]
    said = str(info.value)
    assert said.startswith(f"no {kind} records left to train on: read 2, rejected 0, removed 2, kept 0 "), said
    word = {"dpo": "preference", "kto": "label"}[objective]
    assert f"; removed by {step} 2; first removed: {source}:1: {word} conflicts with {source}:2: " in said, said


def test_an_empty_preference_file_says_it_holds_no_records(tmp_path: Path) -> None:
    """An empty train file: the error gave the counts (read 0) but not that the input holds no records."""
    source = _write(tmp_path / "pairs.jsonl", [])
    cfg = DsftConfig.model_validate({"data": {"train": [str(source)]}})
    with pytest.raises(DataError, match=r"no pair records left to train on: read 0, .*: the inputs hold no records$"):
        prepare_preference(cfg, tmp_path / "out", "dpo")


def test_near_duplicate_pairs_stay_on_one_side_of_the_split(tmp_path: Path) -> None:
    """data.group_near_duplicates (on by default) keeps near-duplicate clusters on one side of the split, as the
    docs promise for preference splits too ("exactly like SFT splits"); the preference split ignored it, so a pair
    and its near copy were dealt to train and val, and validation measured memory."""
    rows = []
    for i in range(20):
        prompt = f"Question {i}: " + " ".join(f"word{i}x{j}" for j in range(12))
        for copy in range(2):  # the copies differ in one word of the answers: near duplicates, not exact ones
            rows.append({"prompt": prompt, "chosen": f"answer {i} is right and well explained {copy}",
                         "rejected": f"answer {i} is wrong and badly explained {copy}"})
    source = _write(tmp_path / "pairs.jsonl", rows)
    cfg = DsftConfig.model_validate({"data": {"train": [str(source)], "val_ratio": 0.3}})
    prepared = prepare_preference(cfg, tmp_path / "out", "dpo")
    side = {}
    for name, records in prepared.splits.items():
        for record in records:
            side.setdefault(record.prompt[-1].content, set()).add(name)
    assert len(prepared.splits["val"]) >= 8
    assert [prompt for prompt, names in side.items() if len(names) > 1] == []
