"""A generation that ends inside a multi-byte character leaves no half character in the text a client receives or
an evaluation scores (a Chinese answer cut by max_tokens ended '北�' in both)."""

from __future__ import annotations

from dsft.eval.generate import _decode_new
from dsft.models.tokenizers import load_deepseek_tokenizer
from dsft.serve.decoding import RowDecoder

CUT = "北京🦜"  # the parrot is three byte tokens in the DeepSeek tokenizer; the text is cut after the first


def _cut_ids() -> tuple[object, list[int]]:
    tokenizer = load_deepseek_tokenizer()
    ids = tokenizer.encode(CUT, add_special_tokens=False)
    assert tokenizer.decode(ids[:2]) == "北京\ufffd" and tokenizer.decode(ids) == CUT
    return tokenizer, ids


def test_a_stream_cut_inside_a_character_ends_without_its_half() -> None:
    tokenizer, ids = _cut_ids()
    row = RowDecoder(tokenizer)
    pieces = [row.push(token) for token in ids[:2]] + [row.flush()]
    assert "".join(pieces) == row.text == "北京"
    whole = RowDecoder(tokenizer)
    assert "".join([whole.push(token) for token in ids] + [whole.flush()]) == CUT  # a finished character is kept


def test_an_evaluated_answer_cut_inside_a_character_ends_without_its_half() -> None:
    tokenizer, ids = _cut_ids()
    assert _decode_new(tokenizer, ids[:2], stops=[]).text == "北京"
    assert _decode_new(tokenizer, ids, stops=[]).text == CUT
