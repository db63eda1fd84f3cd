"""Preference data whose fields ``data.columns`` renames is read as the same data under dsft's names."""

from __future__ import annotations

import json
from pathlib import Path

from dsft.config import DsftConfig
from dsft.data.preference_pipeline import prepare_preference


def test_a_pair_file_with_renamed_sides_is_read_as_kto_data(tmp_path: Path) -> None:
    """Whether a record is a pair (read as KTO data: its sides desirable and undesirable) was asked of the record's
    own fields, not of the names data.columns gives them: {chosen: good, rejected: bad} made every row a labelled
    completion missing its completion and label, and the whole file was rejected."""
    source = tmp_path / "pairs.jsonl"
    rows = [{"question": "2+2?", "good": "4", "bad": "5"}, {"question": "3+3?", "good": "6", "bad": "7"}]
    source.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    cfg = DsftConfig.model_validate({"data": {"train": [str(source)], "val_ratio": 0,
                                              "columns": {"prompt": "question", "chosen": "good", "rejected": "bad"}}})
    prepared = prepare_preference(cfg, tmp_path / "out", "kto")
    assert (prepared.report["read"], prepared.report["kept"], prepared.report["forms"]) == (2, 4, {"pair": 2})
    assert sorted((r.completion.content, r.label) for r in prepared.splits["train"]) == [
        ("4", True), ("5", False), ("6", True), ("7", False)]
