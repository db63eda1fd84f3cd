"""The worked examples in the eval modules' docstrings are executed, so they cannot drift from the code."""

import doctest
import importlib

import pytest

MODULES = ["dsft.eval.text", "dsft.eval.numbers", "dsft.eval.metrics", "dsft.eval.reasoning", "dsft.eval.rewards",
           "dsft.eval.answer_check", "dsft.eval.eval_set"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
