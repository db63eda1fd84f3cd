"""Examples the renderer drops (longer than train.max_seq_len, nothing supervised) are named with their count and
the key that changes it: a run left with none says why, where it said 'see data_report.json' (which does not
hold render-time drops)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsft.training.examples import TokenizedSplit, describe_dropped


def test_describe_dropped_names_each_reason_and_its_key() -> None:
    split = TokenizedSplit([{}, {}], {"longer_than_max_seq_len": 3, "no_supervised_tokens": 1})
    text = describe_dropped(split, "train", 64)
    assert text.startswith("4 of 6 train examples are not trained on: 3 longer than train.max_seq_len (64 tokens")
    assert "1 with no supervised token (template.masking" in text
    assert describe_dropped(TokenizedSplit([{}]), "train", 64) is None


def test_a_run_whose_examples_are_all_too_long_says_so(tmp_path: Path, run_cli, tiny_model_dir) -> None:
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"context": f"患者主诉持续发热{i}天,伴咳嗽咳痰", "question": "可能病因有哪些?",
                                        "answer": "需考虑上呼吸道感染、尿路感染等,建议进行血常规和尿常规检查"},
                                       ensure_ascii=False) + "\n" for i in range(6)), encoding="utf-8")
    code, _, err = run_cli(["train", "/dev/null", "--out", str(tmp_path / "run"),
                            "--set", f"model.name_or_path={tiny_model_dir('tiny-deepseek-llm')}",
                            "--set", f"data.train=[{data}]", "--set", "data.val_ratio=0", "--set", "train.max_seq_len=16",
                            "--set", "train.max_steps=1", "--set", "train.report_to=[]"])
    assert code == 2 and "Traceback" not in err, err
    assert "no training examples left after preparation; 6 of 6 train examples are not trained on: 6 longer than " \
           "train.max_seq_len (16 tokens" in err


def test_a_record_the_template_cannot_render_is_dropped_naming_it_not_fatal() -> None:
    """A tool turn for deepseek-llm, or DSML arguments that are not a JSON object, passed preparation and then
    stopped the whole run at render time with a message naming no record ('message 1: tool_calls[0]...')."""
    from dsft.data.conversation import Conversation, Message
    from dsft.models.tokenizers import load_deepseek_tokenizer
    from dsft.templates import get_template
    from dsft.training.examples import tokenize_conversations

    tokenizer = load_deepseek_tokenizer()
    call = {"type": "function", "function": {"name": "f", "arguments": "not json"}}
    good = Conversation([Message("user", "Q"), Message("assistant", "A")], meta={"origin": "d.jsonl:1"})
    bad = Conversation([Message("user", "Q"), Message("assistant", "", tool_calls=[call]), Message("tool", "r"),
                        Message("assistant", "A")], meta={"origin": "d.jsonl:2"})
    split = tokenize_conversations([good, bad, good], get_template("deepseek-v3.2"), tokenizer)
    assert len(split.examples) == 2 and split.dropped == {"template_cannot_render": 1}
    ids = get_template("deepseek-v3.2").render_train(good, tokenizer).input_ids
    assert [e["input_ids"] for e in split.examples] == [ids, ids]  # the others render as in a batch
    assert describe_dropped(split, "train", 64) == (
        "1 of 3 train examples are not trained on: 1 the template cannot render (first: d.jsonl:2: message 1: "
        "tool_calls[0].function.arguments is not valid JSON (Expecting value); DSML writes each argument as a "
        "parameter, so it must be a JSON object)")
    llm = tokenize_conversations([bad, good], get_template("deepseek-llm"), tokenizer)
    assert llm.dropped == {"template_cannot_render": 1} and "d.jsonl:2: template 'deepseek-llm'" in llm.first["template_cannot_render"]


def test_a_template_the_tokenizer_cannot_write_still_stops_at_once() -> None:
    from dsft.data.conversation import Conversation, Message
    from dsft.errors import ConfigError
    from dsft.models.tokenizers import qwen2_tokenizer_dir
    from dsft.templates import get_template
    from dsft.training.examples import tokenize_conversations
    from transformers import PreTrainedTokenizerFast

    qwen = PreTrainedTokenizerFast.from_pretrained(str(qwen2_tokenizer_dir()))
    conv = Conversation([Message("user", "Q"), Message("assistant", "A")])
    with pytest.raises(ConfigError, match="writes special tokens this tokenizer does not have"):
        tokenize_conversations([conv], get_template("deepseek-v3"), qwen)


def test_a_preference_record_holding_a_control_token_is_dropped_naming_it() -> None:
    """A chosen answer quoting <｜end▁of▁sentence｜> was rendered with the real EOS in mid-answer, the pair's loss
    pushing the model to stop there. Preparation rejects it; a data.prepared_dir from elsewhere meets this check."""
    from dsft.data.preference import parse_preference
    from dsft.models.tokenizers import load_deepseek_tokenizer
    from dsft.templates import get_template
    from dsft.training.preference_examples import render_split

    tokenizer = load_deepseek_tokenizer()
    good = parse_preference({"prompt": "hi?", "chosen": "yes", "rejected": "no"}, "pair")
    quoted = parse_preference({"prompt": "how do replies end?", "chosen": "With <｜end▁of▁sentence｜> here.",
                               "rejected": "no"}, "pair")
    good.meta["origin"], quoted.meta["origin"] = "p.jsonl:1", "p.jsonl:2"
    split = render_split([good, quoted], get_template("deepseek-r1"), tokenizer, None, None)
    assert len(split.examples) == 1 and split.dropped == {"control_token_in_text": 1}
    assert describe_dropped(split, "train", 64) == (
        "1 of 2 train examples are not trained on: 1 holding a tokenizer control token written as text (first: "
        "p.jsonl:2: chosen.content: holds the tokenizer's control token '<｜end▁of▁sentence｜>' (at character "
        "5) as text; it would be read as that token, not as the characters: remove or rewrite it)")
