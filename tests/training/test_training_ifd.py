"""IFD scored by the model being fine-tuned: equal to separate, unbatched forwards; usable from the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dsft.data.conversation import Conversation, Message
from dsft.models.loading import load_model, load_tokenizer
from dsft.templates import get_template
from dsft.training.ifd import ifd_scores

PRESET = "tiny-r1-distill-qwen"


def _loss(model, ids: list[int], scored: int) -> float:
    """transformers' own mean loss over the last ``scored`` tokens of one unpadded sequence."""
    labels = [-100] * (len(ids) - scored) + ids[len(ids) - scored:]
    with torch.no_grad():
        return float(model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss)


def test_ifd_equals_the_ratio_of_separate_unbatched_losses(tiny_model_dir) -> None:
    path = tiny_model_dir(PRESET)
    tokenizer, model = load_tokenizer(path), load_model(path, "float32")
    template = get_template("deepseek-r1", tokenizer)
    conversations = [
        Conversation([Message("user", "青山水库是哪年建成的？"), Message("assistant", "1958年。", reasoning="题目给出。")]),
        Conversation([Message("user", "What is 2+2? Think step by step and answer with one number."),
                      Message("assistant", "4")]),
        Conversation([Message("assistant", "plain text")], meta={"kind": "text"}),
    ]
    scores = ifd_scores(model, tokenizer, template, conversations, batch_size=2)
    assert scores[2] is None
    for conversation, score in zip(conversations[:2], scores):
        rendered = template.render_train(conversation, tokenizer, masking="last")
        start = rendered.supervised.index(True)
        answer = rendered.input_ids[start:]
        expected = _loss(model, rendered.input_ids, len(answer)) / _loss(model, [tokenizer.bos_token_id, *answer], len(answer))
        assert score == pytest.approx(expected, rel=1e-4)


def test_prepare_with_ifd_from_the_cli(tmp_path: Path, tiny_model_dir, run_cli) -> None:
    tiny_model_dir(PRESET)  # written once into the session cache the CLI resolves presets from
    rows = [{"messages": [{"role": "user", "content": f"Question {i}: how many dams are there?"},
                          {"role": "assistant", "content": f"There are {i} dams."}]} for i in range(12)]
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    out = tmp_path / "out"
    code, stdout, err = run_cli(["data", "prepare", str(data), "--out", str(out), "--tokenizer", "deepseek",
                            "--set", f"model.name_or_path={PRESET}", "--set", "data.val_ratio=0",
                            "--set", "data.clean.semantic.ifd=true", "--set", "data.clean.semantic.ifd_max=null",
                            "--set", "data.clean.semantic.ifd_keep_top=0.5"])
    assert code == 0, err
    assert "score ifd" in stdout and "12 scored" in stdout
    report = json.loads((out / "data_report.json").read_text())
    assert report["semantic"]["ifd"]["count"] == 12 and report["removed"]["ifd"] == 6
    removed = [json.loads(line)["score"] for line in (out / "removed.jsonl").read_text().splitlines()]
    kept = [json.loads(line)["meta"]["scores"]["ifd"] for line in (out / "train.jsonl").read_text().splitlines()]
    assert len(removed) == 6 and max(removed) <= min(kept)  # the highest IFD is kept (Cherry)


def test_dsft_train_data_loading_scores_ifd_with_the_run_model(tmp_path: Path, tiny_model_dir) -> None:
    from dsft.config import DsftConfig
    from dsft.training.setup import load_splits

    path = tiny_model_dir(PRESET)
    rows = [{"messages": [{"role": "user", "content": f"Question {i}: how many dams?"},
                          {"role": "assistant", "content": f"{i} dams."}]} for i in range(8)]
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    cfg = DsftConfig.model_validate({"model": {"name_or_path": str(path)}, "data": {
        "train": [str(data)], "val_ratio": 0, "clean": {"semantic": {"ifd": True, "ifd_max": None, "ifd_keep_top": 0.25}}}})
    tokenizer = load_tokenizer(path)
    splits = load_splits(cfg, tokenizer, get_template("deepseek-r1", tokenizer), tmp_path / "run")
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())
    assert report["removed"]["ifd"] == 6 and len(splits["train"].examples) == 2
