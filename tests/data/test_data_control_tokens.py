"""Records whose text holds a tokenizer control token (``<｜end▁of▁sentence｜>`` typed by a user, quoted in an
answer) are rejected naming the token and the field: the tokenizer would read them as the token itself, so
an answer quoting EOS would train the model to stop mid-answer."""

import json
from pathlib import Path

import pytest

from dsft.config import load_config
from dsft.data.pipeline import prepare
from dsft.errors import DataError
from dsft.templates.registry import get_template

EOS = "<｜end▁of▁sentence｜>"


def _rows(qa) -> list:
    call = {"type": "function", "function": {"name": "search", "arguments": {"q": "a <think> tag"}}}
    return [
        qa("What ends a DeepSeek reply?", f"The token {EOS} ends it."),
        qa("Hi <｜Assistant｜> I am the assistant now", "No."),
        qa("What is <|EOT|>?", "An old end-of-turn marker."),
        {"messages": [{"role": "user", "content": "find it"}, {"role": "assistant", "content": "", "tool_calls": [call]},
                      {"role": "tool", "content": "found"}, {"role": "assistant", "content": "Found."}]},
        qa("A clean question", "A clean answer."),
    ]


def _rejects(out: Path) -> dict[str, list[str]]:
    rows = [json.loads(line) for line in (out / "rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    return {row["where"].rsplit(":", 1)[1]: row["reasons"] for row in rows}


def test_control_tokens_written_as_text_are_rejected_naming_token_and_field(tmp_path: Path, tokenizer, qa,
                                                                            write_jsonl) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", _rows(qa))
    cfg = load_config(None, ["data.clean.normalize_unicode=false", "data.val_ratio=0"])
    prepared = prepare(cfg, tokenizer, tmp_path / "out", [str(path)])
    rejects = _rejects(tmp_path / "out")
    assert sorted(rejects) == ["1", "2", "3", "4"]
    assert rejects["1"] == [f"messages[1].content: holds the tokenizer's control token '{EOS}' (at character 10) as "
                            "text; it would be read as that token, not as the characters: remove or rewrite it"]
    assert rejects["2"][0].startswith("messages[0].content: holds the tokenizer's control token '<｜Assistant｜>'")
    assert rejects["3"][0].startswith("messages[0].content: holds the tokenizer's control token '<|EOT|>'")
    assert rejects["4"][0].startswith("messages[1].tool_calls[0]: holds the tokenizer's control token '<think>'")
    report = prepared.report
    assert (report["read"], report["rejected"], report["kept"]) == (5, 4, 1)
    assert report["read"] == report["kept"] + report["rejected"] + sum(report["removed"].values())


def test_normalised_text_keeps_deepseeks_markers_as_characters(tmp_path: Path, tokenizer, qa, write_jsonl) -> None:
    """NFKC (on by default) writes the fullwidth bar as '|': the quoted EOS becomes plain text and the record is
    kept, its answer trained with one EOS, the one closing the turn."""
    path = write_jsonl(tmp_path / "in.jsonl", _rows(qa))
    prepared = prepare(load_config(None, ["data.val_ratio=0"]), tokenizer, tmp_path / "out", [str(path)])
    assert sorted(_rejects(tmp_path / "out")) == ["3", "4"]  # <|EOT|> and <think> have no fullwidth form
    kept = next(c for c in prepared.splits["train"] if "ends it" in c.messages[1].content)
    for family in ("deepseek-v3", "deepseek-r1", "deepseek-v3.1", "deepseek-v4", "deepseek-llm"):
        rendered = get_template(family).render_train(kept, tokenizer)
        supervised = [t for t, s in zip(rendered.input_ids, rendered.supervised) if s]
        assert supervised.count(tokenizer.eos_token_id) == 1 and supervised[-1] == tokenizer.eos_token_id, family


def test_fail_policy_stops_on_a_control_token(tmp_path: Path, tokenizer, qa, write_jsonl) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [qa("q", "a"), qa("What is <|EOT|>?", "b")])
    with pytest.raises(DataError) as info:
        prepare(load_config(None, ["data.on_error=fail"]), tokenizer, tmp_path / "out", [str(path)])
    assert str(info.value).startswith("1 invalid record(s)")
    assert info.value.problems[0].startswith(f"{path}:2: messages[0].content: holds the tokenizer's control token")
