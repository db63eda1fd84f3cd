"""Tokenizer metadata for GGUF: tokens, token types, merges, pre-tokenizer name, special ids, chat template.

llama.cpp re-implements each tokenizer's pre-tokenization regex in C++ and picks it by the
``tokenizer.ggml.pre`` name, so that name must describe the *tokenizer's* regex, not the model family
(a stand-in tokenizer with V3's regex on a Llama body needs ``deepseek-v3``). The name is therefore
read off the regexes in tokenizer.json; an unknown regex is refused rather than silently tokenized
with llama.cpp's default.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsft.errors import UnsupportedError
from dsft.markers import BOS
from dsft.models.tokenizers import adds_special_tokens


# Distinctive fragments of the pre-tokenizer regexes llama.cpp implements (llama-vocab.cpp), checked in order.
_V3_CJK_SPLIT = "[一-龥぀-ゟ゠-ヿ]+"
_LLM_CJK_SPLIT = "[一-龥ࠀ-一가-퟿]+"
_GPT4O_STYLE_CONTRACTIONS = "(?i:'s|'t|'re|'ve|'m|'ll|'d)"
_DIGITS_1_TO_3 = "\\p{N}{1,3}"


@dataclass(frozen=True)
class GGUFVocab:
    """Everything ``tokenizer.ggml.*`` needs, in model-vocabulary order (padded to the embedding rows)."""

    tokens: list[str]
    token_types: list[int]
    merges: list[str]
    pre: str
    bos_id: int | None
    eos_id: int | None
    pad_id: int | None
    add_bos: bool
    add_eos: bool
    chat_template: str | None


def _split_regexes(pre_tokenizer: dict[str, Any] | None) -> list[str]:
    """Every Split regex of a (possibly nested Sequence) pre-tokenizer, in order."""
    if not pre_tokenizer:
        return []
    if pre_tokenizer.get("type") == "Sequence":
        return [rx for child in pre_tokenizer.get("pretokenizers", []) for rx in _split_regexes(child)]
    if pre_tokenizer.get("type") == "Split":
        pattern = pre_tokenizer.get("pattern", {})
        return [pattern.get("Regex") or pattern.get("String") or ""]
    return []


def _byte_level_only_steps(pre_tokenizer: dict[str, Any] | None) -> list[str] | None:
    """The step types of a pre-tokenizer without Split regexes whose byte-level step applies GPT-2's regex
    (``ByteLevel(use_regex=True)``), e.g. ``["Digits:individual", "ByteLevel"]``; None for anything else."""
    if not pre_tokenizer:
        return None
    steps = pre_tokenizer.get("pretokenizers", []) if pre_tokenizer.get("type") == "Sequence" else [pre_tokenizer]
    names = []
    for step in steps:
        kind = step.get("type")
        if kind == "ByteLevel" and step.get("use_regex", True):
            names.append("ByteLevel")
        elif kind == "Digits":
            names.append("Digits:individual" if step.get("individual_digits") else "Digits")
        else:
            return None
    return names


# Byte-level pre-tokenizers without a Split regex, as llama.cpp names them: GPT-2's regex alone, and
# SmolLM's (every digit split off first; llama.cpp's converter picks "smollm" for SmolLM/SmolLM2).
_BYTE_LEVEL_PRE = {("ByteLevel",): "gpt-2", ("Digits:individual", "ByteLevel"): "smollm"}


def detect_pre_tokenizer(tokenizer_json: dict[str, Any]) -> str:
    """llama.cpp's ``tokenizer.ggml.pre`` name for this tokenizer's pre-tokenization regexes.

    >>> detect_pre_tokenizer({"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "[一-龥぀-ゟ゠-ヿ]+"}}})
    'deepseek-v3'
    >>> detect_pre_tokenizer({"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
    ...     {"type": "Digits", "individual_digits": True}, {"type": "ByteLevel", "use_regex": True}]}})
    'smollm'
    """
    byte_level = _byte_level_only_steps(tokenizer_json.get("pre_tokenizer"))
    if byte_level is not None and tuple(byte_level) in _BYTE_LEVEL_PRE:
        return _BYTE_LEVEL_PRE[tuple(byte_level)]
    regexes = _split_regexes(tokenizer_json.get("pre_tokenizer"))
    joined = "\n".join(regexes)
    added = {tok["content"] for tok in tokenizer_json.get("added_tokens", [])}
    if _V3_CJK_SPLIT in regexes:
        return "deepseek-v3"
    if _LLM_CJK_SPLIT in regexes:
        return "deepseek-llm"
    if len(regexes) == 1 and joined.startswith(_GPT4O_STYLE_CONTRACTIONS):
        if _DIGITS_1_TO_3 in joined:
            return "llama-bpe"
        # Qwen2's regex (single digits); the R1 distills register it under their own name.
        return "deepseek-r1-qwen" if BOS in added else "qwen2"
    raise UnsupportedError(
        "GGUF export: the tokenizer's pre-tokenizer is not one dsft maps to llama.cpp's (deepseek-v3, "
        "deepseek-llm, deepseek-r1-qwen, qwen2, llama-bpe, gpt-2, smollm): "
        f"{json.dumps(tokenizer_json.get('pre_tokenizer'), ensure_ascii=False)[:300]}"
    )


def _merges(tokenizer_json: dict[str, Any]) -> list[str]:
    """BPE merges as ``"left right"`` strings (tokenizers stores either strings or pairs)."""
    merges = tokenizer_json.get("model", {}).get("merges", [])
    return [m if isinstance(m, str) else " ".join(m) for m in merges]


def read_tokenizer_json(tokenizer_dir: Path) -> dict[str, Any]:
    """``tokenizer.json`` of a byte-level BPE tokenizer (:class:`UnsupportedError` for anything else)."""
    path = tokenizer_dir / "tokenizer.json"
    if not path.is_file():
        raise UnsupportedError(f"GGUF export needs a fast tokenizer (tokenizer.json) in {tokenizer_dir}")
    tokenizer_json = json.loads(path.read_text(encoding="utf-8"))
    if tokenizer_json.get("model", {}).get("type") != "BPE":
        raise UnsupportedError(f"{path}: GGUF export supports byte-level BPE tokenizers (all DeepSeek families), "
                               f"got {tokenizer_json.get('model', {}).get('type')!r}")
    return tokenizer_json


def check_gguf_tokenizer(tokenizer_dir: Path) -> str:
    """The ``tokenizer.ggml.pre`` name, or the refusal, from the files alone (before any model loads)."""
    return detect_pre_tokenizer(read_tokenizer_json(tokenizer_dir))


def build_vocab(tokenizer: Any, tokenizer_dir: Path, vocab_size: int) -> GGUFVocab:
    """Collect the GGUF vocabulary of a byte-level BPE tokenizer for a model with ``vocab_size`` rows.

    Embedding rows beyond the tokenizer (Qwen pads 151,665 tokens to 151,936 rows) become
    ``[PAD<id>]`` tokens of type UNUSED, as llama.cpp's converter does.
    """
    tokenizer_json = read_tokenizer_json(tokenizer_dir)
    id_to_token = {token_id: token for token, token_id in tokenizer.get_vocab().items()}
    if max(id_to_token) >= vocab_size:
        raise UnsupportedError(f"{tokenizer_dir}: tokenizer has id {max(id_to_token)} but the model has only "
                               f"{vocab_size} embedding rows")
    added = tokenizer.added_tokens_decoder  # id -> AddedToken(content, special, ...)
    tokens, types = [], []
    for token_id in range(vocab_size):
        token = id_to_token.get(token_id)
        if token is None:
            tokens.append(f"[PAD{token_id}]")
            types.append(5)  # UNUSED
        elif token_id in added:
            tokens.append(token)
            # Special added tokens are CONTROL (matched only when parsing specials); the rest are
            # USER_DEFINED, which llama.cpp, like transformers, always matches as one token.
            types.append(3 if added[token_id].special else 4)
        else:
            tokens.append(token)
            types.append(1)  # NORMAL
    add_bos, add_eos = adds_special_tokens(tokenizer)
    return GGUFVocab(
        tokens=tokens, token_types=types, merges=_merges(tokenizer_json), pre=detect_pre_tokenizer(tokenizer_json),
        bos_id=tokenizer.bos_token_id, eos_id=tokenizer.eos_token_id, pad_id=tokenizer.pad_token_id,
        add_bos=add_bos, add_eos=add_eos, chat_template=tokenizer.chat_template,
    )


def write_vocab(writer: Any, vocab: GGUFVocab) -> None:
    """Write the ``tokenizer.ggml.*`` keys and ``tokenizer.chat_template``."""
    writer.add_tokenizer_model("gpt2")  # llama.cpp's name for byte-level BPE
    writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.token_types)
    writer.add_token_merges(vocab.merges)
    if vocab.bos_id is not None:
        writer.add_bos_token_id(vocab.bos_id)
    if vocab.eos_id is not None:
        writer.add_eos_token_id(vocab.eos_id)
    if vocab.pad_id is not None:
        writer.add_pad_token_id(vocab.pad_id)
    writer.add_add_bos_token(vocab.add_bos)
    writer.add_add_eos_token(vocab.add_eos)
    if vocab.chat_template:
        writer.add_chat_template(vocab.chat_template)
