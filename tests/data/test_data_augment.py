"""Augmentation: table templates, synonyms (zh, en), paraphrase and back-translation through an endpoint.

Every generated record names its parent and method, is counted as added, stays on its parent's side of
the split, and near copies are dropped and counted; the ledger identity holds.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from fake_endpoint import Reply, fake_endpoint, last_user, ok

from dsft.config import DsftConfig
from dsft.data.conversation import Conversation
from dsft.data.pipeline import prepare
from dsft.data.samples import sample_path
from dsft.data.split import family_of
from dsft.data.synonyms import load_thesaurus, replace_synonyms
from dsft.errors import DataError


def identity_holds(report: dict[str, Any]) -> bool:
    return (report["read"] + sum(report["added"].values())
            == report["kept"] + report["rejected"] + sum(report["removed"].values())
            and report["kept"] == sum(report["splits"].values()))


def test_bundled_synonym_tables_replace_words_but_never_numbers_or_names() -> None:
    zh, en = load_thesaurus("zh"), load_thesaurus("en")
    assert "蓄水池" in zh["水库"] and "accomplished" in en["completed"]
    rng = random.Random(0)
    for _ in range(20):
        text = replace_synonyms("青山水库于1958年10月建成，该水库的总库容是多少万立方米？", zh, 0.5, rng, True)
        assert "1958" in text and "青山" in text
        english = replace_synonyms("When was the Qingshan Reservoir completed in October 1958?", en, 0.5, rng, False)
        assert "1958" in english and "Qingshan Reservoir" in english and "October" in english


def test_table_templates_fill_every_row_and_keep_a_rows_phrasings_on_one_side(tmp_path: Path, tokenizer) -> None:
    table = tmp_path / "reservoirs.csv"
    table.write_text("name,year,capacity\n" + "".join(f"水库{i},{1950 + i},{100 * i}\n" for i in range(10)),
                     encoding="utf-8")
    seed = tmp_path / "seed.jsonl"
    seed.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"},
                                             {"role": "assistant", "content": "hello"}]}) + "\n", encoding="utf-8")
    cfg = DsftConfig.model_validate({"data": {"val_ratio": 0.3, "augment": {"templates": [{
        "table": str(table), "answer": "{name}于{year}年建成。",
        "questions": ["{name}是哪年建成的？", "{name}的建成年份是？", "请问{name}哪一年建成？"]}]}}})
    prepared = prepare(cfg, tokenizer, tmp_path / "out", [str(seed)])
    report = prepared.report
    assert report["added"] == {"augment_template": 30} and identity_holds(report)
    sides = {}
    for name in ("train", "val"):
        for c in prepared.splits[name]:
            if "augment_method" in c.meta:
                assert c.meta["augment_method"] == "template"
                sides.setdefault(c.meta["augment_parent"], set()).add(name)
    assert len(sides) == 10 and all(len(s) == 1 for s in sides.values())
    assert any(s == {"val"} for s in sides.values())  # whole rows (unseen reservoirs) in validation
    first = prepared.splits["train"][0] if "augment_method" in prepared.splits["train"][0].meta else prepared.splits["train"][1]
    assert first.messages[1].content.endswith("年建成。") and "row" in first.meta["origin"]


def test_a_template_naming_a_missing_column_is_one_error_before_reading(tmp_path: Path, tokenizer) -> None:
    table = tmp_path / "t.csv"
    table.write_text("name\nA\n", encoding="utf-8")
    cfg = DsftConfig.model_validate({"data": {"augment": {"templates": [{
        "table": str(table), "questions": ["{name}?"], "answer": "{year}"}]}}})
    with pytest.raises(DataError, match=r"data.augment.templates\[0\]: .*t.csv row 1.*no column 'year'"):
        prepare(cfg, tokenizer, tmp_path / "out", [str(tmp_path / "never-read.jsonl")])


def test_synonym_children_stay_in_train_name_their_parent_and_near_copies_are_counted(tmp_path: Path, tokenizer) -> None:
    cfg = DsftConfig.model_validate({"data": {"val_ratio": 0.2, "augment": {"synonym_copies": 2}}})
    prepared = prepare(cfg, tokenizer, tmp_path / "out", [str(sample_path("reservoirs"))])
    report = prepared.report
    assert report["added"]["augment_synonym"] > 100 and identity_holds(report)
    train_origins = {c.meta["origin"] for c in prepared.splits["train"] if "augment_method" not in c.meta}
    children = [c for c in prepared.splits["train"] if "augment_method" in c.meta]
    assert children and all(c.meta["augment_parent"] in train_origins for c in children)
    assert not any("augment_method" in c.meta for name in ("val", "test") for c in prepared.splits[name])
    parent = next(c for c in prepared.splits["train"] if c.meta["origin"] == children[0].meta["augment_parent"])
    assert children[0].messages[-1] == parent.messages[-1] and children[0].messages[0] != parent.messages[0]
    # With a loose threshold most children are near copies of their parents: dropped and counted.
    loose = cfg.model_copy(deep=True)
    loose.data.augment.near_duplicate_threshold = 0.5
    report = prepare(loose, tokenizer, tmp_path / "loose", [str(sample_path("reservoirs"))]).report
    assert report["removed"]["augment_near_duplicate"] > 0 and identity_holds(report)
    removed = [json.loads(line) for line in (tmp_path / "loose" / "removed.jsonl").read_text().splitlines()]
    assert any(r["step"] == "augment_near_duplicate" and "near-duplicate" in r["reason"] for r in removed)


def _paraphraser(body: dict[str, Any], count: int) -> Reply:
    prompt = last_user(body)
    text = prompt.rsplit("\n\n", 1)[1]
    if "Guangzhou" in text or "广州" in text:
        return Reply(500)  # this question always fails
    if prompt.startswith("Rewrite"):
        return ok(f"<think>easy</think>Could you tell me: {text}")
    if "into English" in prompt:
        return ok(f"[en] {text}")
    return ok(f"{text.removeprefix('[en] ')}（回译）")


def test_paraphrase_and_back_translation_through_an_endpoint_resume_from_the_cache(tmp_path: Path, tokenizer) -> None:
    rows = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]} for q, a in [
        ("What is the capital of France, the country in western Europe?", "Paris."),
        ("青山水库是哪一年建成并投入使用的？", "1958年。"),
        ("How many people live in Guangzhou today?", "About 19 million."),
    ]]
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    with fake_endpoint(_paraphraser) as endpoint:
        cfg = DsftConfig.model_validate({"data": {"val_ratio": 0, "augment": {
            "paraphrase_copies": 1, "back_translation": True,
            "endpoint": {"base_url": endpoint.base_url, "model": "teacher", "max_retries": 1, "backoff": 0}}}})
        prepared = prepare(cfg, tokenizer, tmp_path / "out", [str(data)])
        asked = len(endpoint.requests)
        again = prepare(cfg, tokenizer, tmp_path / "out", [str(data)])
        assert len(endpoint.requests) == asked + 4  # only the failing question (2 tries x 2 methods) is asked again
    report = prepared.report
    assert report["added"] == {"augment_paraphrase": 2, "augment_back_translation": 2} and identity_holds(report)
    assert report["augment_skipped"] == {"paraphrase: request failed": 1, "back_translation: request failed": 1}
    assert again.report["added"] == report["added"]
    texts = {c.meta["augment_method"] + ":" + c.messages[0].content
             for c in prepared.splits["train"] if "augment_method" in c.meta}
    assert "paraphrase:Could you tell me: What is the capital of France, the country in western Europe?" in texts
    assert "back_translation:青山水库是哪一年建成并投入使用的？（回译）" in texts


def test_paraphrase_without_an_endpoint_is_a_config_error() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="need endpoint.base_url and endpoint.model"):
        DsftConfig.model_validate({"data": {"augment": {"paraphrase_copies": 1}}})


def test_dsft_data_augment_writes_the_copies_and_a_ledger_that_prepare_keeps_together(tmp_path: Path, run_cli) -> None:
    out = tmp_path / "aug"
    code, stdout, err = run_cli(["data", "augment", str(sample_path("reservoirs")), "--out", str(out),
                                 "--set", "data.augment.synonym_copies=1"])
    assert code == 0, err
    report = json.loads((out / "augment_report.json").read_text())
    assert report["read"] == 200 and report["added"]["augment_synonym"] > 150
    assert report["read"] + report["added"]["augment_synonym"] == report["kept"] + report["removed"]["augment_near_duplicate"]
    assert len((out / "augmented.jsonl").read_text().splitlines()) == report["kept"] and "kept" in stdout
    # Prepared afterwards, each parent and its copy land on the same side of the split.
    code, _, err = run_cli(["data", "prepare", str(out / "augmented.jsonl"), "--out", str(tmp_path / "p"),
                            "--tokenizer", "deepseek", "--set", "data.val_ratio=0.3"])
    assert code == 0, err
    sides: dict[str, set[str]] = {}
    for name in ("train", "val"):
        for line in (tmp_path / "p" / f"{name}.jsonl").read_text().splitlines():
            sides.setdefault(family_of(Conversation.from_dict(json.loads(line))), set()).add(name)
    assert len(sides) == 200 and all(len(s) == 1 for s in sides.values())  # 200 families: a parent + its copy


def test_dsft_data_augment_user_errors_name_the_key_before_reading(tmp_path: Path, run_cli) -> None:
    code, _, err = run_cli(["data", "augment", str(sample_path("reservoirs")), "--out", str(tmp_path / "o")])
    assert code == 2 and "data.augment: nothing to do" in err and "Traceback" not in err
    code, _, err = run_cli(["data", "augment", str(tmp_path / "never-read.jsonl"), "--out", str(tmp_path / "o"),
                            "--set", "data.augment.synonym_copies=1", "--set", f"data.augment.synonyms_en={tmp_path}"])
    assert code == 2 and "data.augment.synonyms_en:" in err and "not a WordNet dict directory" in err
    code, _, err = run_cli(["data", "augment", "--out", str(tmp_path / "o"), "--set",
                            'data.augment.templates=[{table: absent.csv, questions: ["{a}"], answer: "{b}"}]'])
    assert code == 2 and "data.augment.templates[0].table: absent.csv: no such file" in err


def test_dsft_data_augment_says_the_most_frequent_reasons_of_its_rejections(tmp_path: Path, run_cli) -> None:
    """It said only how many seed records it rejected, as dsft data prepare did: now the reasons, as prepare says them."""
    turns = [{"role": "user", "content": "How many dams?"}, {"role": "assistant", "content": "Three dams."}]
    source = tmp_path / "seed.jsonl"
    source.write_text("\n".join([json.dumps({"messages": turns}), "{bad", " {bad", json.dumps({"answr": "a"})]) + "\n")
    out = tmp_path / "aug"
    code, stdout, err = run_cli(["data", "augment", str(source), "--out", str(out), "--set", "data.augment.synonym_copies=1"])
    assert code == 0, err
    assert "\n".join([f"data: 3 of 4 records rejected; each one and why: {out / 'rejects.jsonl'}",
                      "  2 x malformed JSON: Expecting property name enclosed in double quotes (column N) "
                      f"(first: {source}:2)", "  1 x unknown format (keys: answr); set data.format and data.columns "
                      f"(first: {source}:4)"]) in stdout, stdout
