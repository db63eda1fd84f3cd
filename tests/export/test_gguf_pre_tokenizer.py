"""llama.cpp pre-tokenizer names for byte-level tokenizers without Split regexes (GPT-2's, SmolLM's), and
refusals of the others before any model loads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dsft.errors import UnsupportedError
from dsft.export.gguf_vocab import detect_pre_tokenizer

BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}


@pytest.mark.parametrize(("pre_tokenizer", "name"), [
    (BYTE_LEVEL, "gpt-2"),
    ({"type": "Sequence", "pretokenizers": [BYTE_LEVEL]}, "gpt-2"),
    ({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, BYTE_LEVEL]}, "smollm"),
])
def test_byte_level_only_pre_tokenizers(pre_tokenizer, name: str) -> None:
    assert detect_pre_tokenizer({"pre_tokenizer": pre_tokenizer}) == name


@pytest.mark.parametrize("pre_tokenizer", [
    {**BYTE_LEVEL, "use_regex": False},  # no regex at all: llama.cpp has no such pre-tokenizer
    {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": False}, BYTE_LEVEL]},
    {"type": "Metaspace", "replacement": "▁"},
])
def test_other_pre_tokenizers_are_refused(pre_tokenizer) -> None:
    with pytest.raises(UnsupportedError, match="pre-tokenizer is not one dsft maps"):
        detect_pre_tokenizer({"pre_tokenizer": pre_tokenizer})


def test_refused_before_the_model_loads(tiny_model_dir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dsft.export.gguf_export as gguf_export
    from dsft.export.api import export

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir("tiny-deepseek-llm"), model)
    tokenizer_file = model / "tokenizer.json"
    data = json.loads(tokenizer_file.read_text(encoding="utf-8"))
    data["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": False}
    tokenizer_file.write_text(json.dumps(data), encoding="utf-8")

    def no_model_load(*_args, **_kwargs):  # noqa: ANN202
        raise AssertionError("the model was loaded before the refusal")

    monkeypatch.setattr(gguf_export, "load_trained_model", no_model_load)
    monkeypatch.setattr(gguf_export, "load_export_tokenizer", no_model_load)
    with pytest.raises(UnsupportedError, match="Metaspace"):
        export(model, "gguf", tmp_path / "out", echo=lambda _: None)
