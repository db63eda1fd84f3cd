"""The bytes a token stands for, for SentencePiece tokenizers with byte fallback (Llama 2's, Mistral's kind): a
character missing from the vocabulary is written as one ``<0xNN>`` token per UTF-8 byte, each decoding alone to
U+FFFD. (Byte-level BPE, DeepSeek's kind, is covered through the server in test_logprobs.)"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from dsft.serve.token_bytes import TokenBytes


def _byte_fallback_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {"<unk>": 0, "</s>": 1, "▁ok": 2, **{f"<0x{b:02X}>": 3 + b for b in range(256)}}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>", byte_fallback=True))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="</s>", unk_token="<unk>")


def test_byte_fallback_tokens_stand_for_their_byte() -> None:
    tokenizer = _byte_fallback_tokenizer()
    ids = [3 + b for b in "龘".encode("utf-8")]  # its three <0xNN> tokens
    assert [tokenizer.decode([i]) for i in ids] == ["\ufffd"] * 3
    token_bytes = TokenBytes(tokenizer)
    assert b"".join(token_bytes(i, tokenizer.decode([i])) for i in ids).decode("utf-8") == "龘"
    assert token_bytes(tokenizer.eos_token_id, "</s>") == b"</s>"
