"""The worked examples in the data modules' docstrings are true."""

import doctest
import importlib

import pytest

MODULES = ["clean", "conversation", "formats", "near_dedup", "readers", "reasoning_policy", "relevance", "semantic", "synonyms", "table_templates", "augment", "distill",
           "split", "validate", "samples", "preference", "preference_fields", "preference_pipeline", "mix", "ledger", "control_tokens", "report", "prepared_folder", "preference_dedup",
           "empty_splits"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(f"dsft.data.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0, f"dsft.data.{name} has no worked example"
