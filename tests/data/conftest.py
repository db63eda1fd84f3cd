"""Fixtures for the data tests: the real DeepSeek tokenizer and small file writers."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def tokenizer() -> Any:
    from dsft.models.tokenizers import load_deepseek_tokenizer

    return load_deepseek_tokenizer()


@pytest.fixture()
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture()
def write_jsonl() -> Callable[[Path, list[Any]], Path]:
    def write(path: Path, rows: list[Any]) -> Path:
        path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
        return path

    return write


def qa(question: str, answer: str, **extra: Any) -> dict[str, Any]:
    """A messages-format record (also importable as a plain function via the ``qa`` fixture)."""
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}], **extra}


@pytest.fixture(name="qa")
def qa_fixture() -> Callable[..., dict[str, Any]]:
    return qa
