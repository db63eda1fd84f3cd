"""The worked examples in dsft's docstrings are executed, every module's, so they cannot drift from the code.

The modules are found by walking the source tree for lines that start with ``>>>``, so a module that gains
examples is tested without being listed anywhere (the data and eval packages kept lists; most other modules'
examples, the resume checks' among them, were run by no test, and one, dsft.templates.hf's, did not even parse).
"""

import doctest
import importlib
import re
from pathlib import Path

import pytest

import dsft

PACKAGE = Path(dsft.__file__).resolve().parent
EXAMPLE_LINE = re.compile(r"^\s*>>> ", re.MULTILINE)


def _modules_with_examples() -> list[str]:
    """Dotted names of the modules under dsft with a line that starts with ``>>>`` (read, not imported)."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if EXAMPLE_LINE.search(path.read_text(encoding="utf-8")):
            parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


MODULES = _modules_with_examples()


def test_the_walk_finds_the_modules_with_examples() -> None:
    assert {"dsft.training.resume", "dsft.training.resume_steps", "dsft.data.clean", "dsft.templates"} <= set(MODULES)
    assert len(MODULES) > 50, MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    tests = doctest.DocTestFinder().find(module)
    # An example that doctest does not find (in a comment, or a string that is no docstring) is never run.
    assert sum(len(test.examples) for test in tests) > 0, f"{name} has '>>>' lines that are no docstring example"
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
