"""Semantic filtering: embedding question-answer consistency and IFD, their cut-offs and accounting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dsft.config import DsftConfig
from dsft.data.conversation import Conversation, Message
from dsft.data.pipeline import prepare
from dsft.data.semantic import EmbeddingScorer, filter_by_score, score_distribution


def pair(question: str, answer: str, origin: str = "x") -> Conversation:
    return Conversation([Message("user", question), Message("assistant", answer)], meta={"origin": origin})


def test_keep_top_and_value_cuts_combine_and_unscored_records_stay() -> None:
    rows = [pair(str(i), "a", f"f:{i}") for i in range(6)]
    scores = [0.9, None, 0.1, 0.7, 0.5, 0.8]
    result = filter_by_score(rows, scores, "s", minimum=0.3, keep_top=0.5)
    # 0.1 fails the minimum; of the 4 left, the top half (0.9, 0.8) stay; None is not scored and stays.
    assert [c.meta["origin"] for c in result.kept] == ["f:0", "f:1", "f:5"]
    assert sorted(r.score for r in result.removed) == [0.1, 0.5, 0.7]
    assert result.kept[0].meta["scores"] == {"s": 0.9} and "scores" not in result.kept[1].meta
    lower = filter_by_score(rows, scores, "ifd", maximum=0.75, keep_top=0.5, higher_is_better=False)
    assert [r.score for r in lower.removed] == [0.9, 0.7, 0.8]  # > max, then the higher half of the rest


def test_score_distribution_has_quantiles_and_a_histogram() -> None:
    dist = score_distribution([0.0, 0.25, 0.5, 0.75, 1.0], bins=4)
    assert dist["p50"] == 0.5 and dist["min"] == 0.0 and dist["max"] == 1.0
    assert dist["histogram"]["counts"] == [1, 1, 1, 2] and sum(dist["histogram"]["counts"]) == dist["count"]


def test_bundled_e5_scores_matching_answers_above_off_topic_ones() -> None:
    scorer = EmbeddingScorer()
    rows = [
        pair("青山水库是哪年建成的？", "青山水库于1958年建成。"),
        pair("青山水库是哪年建成的？", "红烧肉需要先把五花肉焯水，再加冰糖炒色。"),
        pair("What is the capital of France?", "Paris is the capital of France."),
        pair("What is the capital of France?", "Mix flour, eggs and milk, then fry the batter."),
        Conversation([Message("assistant", "plain text")], meta={"kind": "text"}),
    ]
    scores = scorer(rows)
    assert scores[0] > scores[1] + 0.05 and scores[2] > scores[3] + 0.05
    assert scores[4] is None


def test_a_hugging_face_encoder_directory_works_by_path(tmp_path: Path) -> None:
    from transformers import BertConfig, BertModel, BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "dam", "built", "when", "was", "the", "cake", "bake"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt")).save_pretrained(tmp_path)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)
    BertModel(config).save_pretrained(tmp_path)
    scores = EmbeddingScorer(str(tmp_path))([pair("when was the dam built", "the dam was built"),
                                             pair("when was the dam built", "when was the dam built")])
    assert scores[1] == pytest.approx(1.0, abs=1e-5) and -1 <= scores[0] < 1


def test_prepare_drops_inconsistent_pairs_with_their_score(tmp_path: Path, write_jsonl, qa, tokenizer) -> None:
    rows = [qa("青山水库是哪年建成的？", "青山水库于1958年建成。"),
            qa("What is the capital of France?", "Paris is the capital of France."),
            qa("What is the capital of France?", "Mix flour, eggs and milk, then fry the batter."),
            qa("How tall is Mount Everest?", "Mount Everest is 8,849 metres tall.")]
    data = write_jsonl(tmp_path / "qa.jsonl", rows)
    cfg = DsftConfig.model_validate({"data": {"val_ratio": 0, "clean": {"semantic": {
        "embedding_model": "multilingual-e5-small", "keep_top_similarity": 0.75}}}})
    prepared = prepare(cfg, tokenizer, tmp_path / "out", [str(data)])
    report = prepared.report
    assert report["removed"]["qa_similarity"] == 1 and report["kept"] == 3
    assert report["read"] == report["kept"] + report["rejected"] + sum(report["removed"].values())
    removed = [json.loads(line) for line in (tmp_path / "out" / "removed.jsonl").read_text().splitlines()]
    assert removed[0]["where"].endswith("qa.jsonl:3") and 0 < removed[0]["score"] < 1
    assert report["semantic"]["qa_similarity"]["count"] == 4
    assert "## Semantic score: qa_similarity" in (tmp_path / "out" / "data_report.md").read_text()
    assert all("qa_similarity" in c.meta["scores"] for c in prepared.splits["train"])


def test_ifd_without_a_scorer_is_a_user_error_before_reading(tmp_path: Path, tokenizer) -> None:
    from dsft.errors import DataError

    cfg = DsftConfig.model_validate({"data": {"clean": {"semantic": {"ifd": True}}}})
    with pytest.raises(DataError, match="data.clean.semantic.ifd"):
        prepare(cfg, tokenizer, tmp_path / "out", [str(tmp_path / "never-read.jsonl")])


def test_cut_offs_without_their_scorer_are_config_errors() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="need embedding_model"):
        DsftConfig.model_validate({"data": {"clean": {"semantic": {"min_similarity": 0.5}}}})
    with pytest.raises(ValidationError, match="ifd_keep_top needs ifd"):
        DsftConfig.model_validate({"data": {"clean": {"semantic": {"ifd_keep_top": 0.5}}}})
