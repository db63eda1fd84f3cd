"""A preference preparation's removed.jsonl shows each removed record, as SFT's shows the conversation: in the
record's own form (prompt/chosen/rejected, prompt/completion/label), as the step that removed it saw it."""

from __future__ import annotations

import json
from pathlib import Path

from dsft.config import DsftConfig
from dsft.data.preference_pipeline import prepare_preference


def _removed(tmp_path: Path, rows: list[dict], objective: str) -> list[dict]:
    tmp_path.mkdir(exist_ok=True)
    source = tmp_path / "data.jsonl"
    source.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    cfg = DsftConfig.model_validate({"data": {"train": [str(source)], "val_ratio": 0}})
    prepare_preference(cfg, tmp_path / "out", objective)
    rows = [json.loads(line) for line in (tmp_path / "out" / "removed.jsonl").open(encoding="utf-8")]
    for row in rows:
        assert row["where"].startswith(str(source)) and row["record"]["meta"]["origin"] == row["where"]
        row["where"] = row["where"][len(str(source)):]
        del row["record"]["meta"]
    return rows


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def assistant(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def test_removed_kto_records_are_written_in_their_own_form(tmp_path: Path) -> None:
    """A labelled completion as prompt/completion/label; a pair read as KTO data as the pair it was read as; a record
    a rewrite removed with its text before the rewrite (ｗide), as the step saw it."""
    rows = [{"prompt": "q", "completion": "yes", "label": True}, {"prompt": "q", "completion": "yes", "label": True},
            {"prompt": "w", "chosen": "ｗide", "rejected": "wide"}, {"prompt": "p", "chosen": "a", "rejected": "b"},
            {"prompt": "p", "chosen": "a", "rejected": "b"}]
    assert _removed(tmp_path, rows, "kto") == [
        {"step": "normalize_unicode", "where": ":3", "reason": "chosen and rejected are identical after "
         "normalize_unicode: the same text marked desirable and undesirable",
         "record": {"prompt": user("w"), "chosen": assistant("ｗide"), "rejected": assistant("wide")}},
        {"step": "exact_dedup", "where": ":2", "reason": "exact duplicate of " + str(tmp_path / "data.jsonl") + ":1",
         "record": {"prompt": user("q"), "completion": assistant("yes"), "label": True}},
        {"step": "exact_dedup", "where": ":5", "reason": "exact duplicate of " + str(tmp_path / "data.jsonl") + ":4",
         "record": {"prompt": user("p"), "chosen": assistant("a"), "rejected": assistant("b")}},
    ]


def test_removed_pairs_and_prompts_are_written_in_their_own_form(tmp_path: Path) -> None:
    pairs = [{"prompt": "q", "chosen": "A", "rejected": "B"}, {"prompt": "q", "chosen": "B", "rejected": "A"},
             {"prompt": "r", "chosen": "x", "rejected": "y"}]
    assert [row["record"] for row in _removed(tmp_path / "dpo", pairs, "dpo")] == [
        {"prompt": user("q"), "chosen": assistant("A"), "rejected": assistant("B")},
        {"prompt": user("q"), "chosen": assistant("B"), "rejected": assistant("A")}]
    prompts = [{"question": "2+2?", "answer": "4"}, {"question": "2+2?", "answer": "4"}, {"question": "1+1?"}]
    assert [row["record"] for row in _removed(tmp_path / "grpo", prompts, "grpo")] == [
        {"prompt": user("2+2?"), "answer": "4"}]
