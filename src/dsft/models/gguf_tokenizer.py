"""The tokenizer transformers rebuilds from a GGUF file, with the file's special tokens where the file has them.

transformers rebuilds a byte-level (``gpt2``) GGUF vocabulary in the byte alphabet and adds the tokens the
file marks CONTROL or USER_DEFINED as added tokens, but it skips any whose text is not in that alphabet as
a llama.cpp mislabel. llama.cpp writes added tokens as their raw text, so DeepSeek's ``<｜User｜>``,
``<｜Assistant｜>``, ``<｜begin▁of▁sentence｜>`` and ``<｜end▁of▁sentence｜>`` (full-width bars) are lost: the
text is cut into byte pieces, the R1 template cannot be written, and BOS/EOS are appended as new tokens
past the vocabulary, ids the model never saw (measured on a DeepSeek-R1-Distill-Qwen GGUF). The repair
gives every such token its id in the file.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from dsft.errors import UnsupportedError

# gguf.TokenType values: the tokens llama.cpp matches whole in text.
CONTROL, USER_DEFINED = 3, 4


def gguf_added_tokens(reader: Any) -> tuple[int, dict[int, tuple[str, bool]]]:
    """The vocabulary size and ``{id: (text, special)}`` for every CONTROL / USER_DEFINED token of an open
    ``gguf.GGUFReader`` (the caller's: opening one parses every metadata value, seconds for a large vocabulary)."""
    tokens, types = reader.fields.get("tokenizer.ggml.tokens"), reader.fields.get("tokenizer.ggml.token_type")
    if tokens is None or types is None:
        return 0, {}
    texts, kinds = tokens.contents(), types.contents()
    return len(texts), {i: (text, kind == CONTROL) for i, (text, kind) in enumerate(zip(texts, kinds))
                        if kind in (CONTROL, USER_DEFINED)}


def repaired_tokenizer_json(data: dict[str, Any], size: int, added: dict[int, tuple[str, bool]]) -> dict[str, Any] | None:
    """``tokenizer.json`` content with each of ``added`` at its id, or None when it already is.

    >>> data = {"model": {"type": "BPE", "vocab": {"a": 0, "ĠUser": 1}},
    ...         "added_tokens": [{"id": 2, "content": "<｜User｜>", "special": True}]}
    >>> fixed = repaired_tokenizer_json(data, 2, {1: ("<｜User｜>", False)})
    >>> fixed["model"]["vocab"], [(t["id"], t["content"], t["special"]) for t in fixed["added_tokens"]]
    ({'a': 0, '<｜User｜>': 1}, [(1, '<｜User｜>', False)])
    >>> repaired_tokenizer_json(fixed, 2, {1: ("<｜User｜>", False)}) is None
    True
    """
    if data.get("model", {}).get("type") != "BPE" or not added:
        return None
    vocab: dict[str, int] = dict(data["model"]["vocab"])
    by_id = {index: text for text, index in vocab.items()}
    for index, (text, _) in added.items():
        if vocab.get(text) != index:
            vocab.pop(by_id.get(index, text), None)  # the byte-alphabet respelling held the id
            vocab[text] = index
    # Added tokens past the file's vocabulary (BOS/EOS appended anew, a default <|endoftext|>) or disagreeing
    # with the file at their id go; every token the file marks goes in at its id.
    kept = [t for t in data.get("added_tokens", []) if t["id"] < size and added.get(t["id"], (t["content"],))[0] == t["content"]]
    have = {t["id"] for t in kept}
    kept += [{"id": index, "content": text, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
              "special": special} for index, (text, special) in added.items() if index not in have]
    kept.sort(key=lambda t: t["id"])
    if vocab == data["model"]["vocab"] and kept == data.get("added_tokens", []):
        return None
    return {**data, "model": {**data["model"], "vocab": vocab}, "added_tokens": kept}


def with_gguf_special_tokens(tokenizer: Any, path: Path, size: int, added: dict[int, tuple[str, bool]],
                             scratch: Path) -> Any:
    """``tokenizer`` (rebuilt by transformers from GGUF ``path``) with the file's special tokens at their ids;
    ``size`` and ``added`` are the file's (:func:`gguf_added_tokens`), ``scratch`` an empty directory the
    repaired tokenizer is written to and reloaded from."""
    from transformers import AutoTokenizer

    fixed = repaired_tokenizer_json(json.loads(tokenizer.backend_tokenizer.to_str()), size, added)
    if fixed is None:
        return tokenizer
    tokenizer.save_pretrained(str(scratch))
    (scratch / "tokenizer.json").write_text(json.dumps(fixed, ensure_ascii=False), encoding="utf-8")
    try:
        repaired = AutoTokenizer.from_pretrained(str(scratch))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    wrong = [f"{text!r}: id {repaired.convert_tokens_to_ids(text)}, the file says {index}"
             for index, (text, _) in added.items() if repaired.convert_tokens_to_ids(text) != index]
    if wrong or len(repaired) > size:
        raise UnsupportedError(f"{path}: the special tokens of this GGUF file could not be given their ids in the "
                               "converted tokenizer; use the original Hugging Face checkpoint of this model instead",
                               problems=wrong or [f"{len(repaired)} tokens, the file has {size}"])
    return repaired
