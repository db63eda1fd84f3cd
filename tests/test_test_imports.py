"""Test files share settings and helpers through modules of their own, named for what they hold
(tests/jsonl_files.py, tests/grpo_toy_task.py, tests/realmodel/smollm2_recipe.py), never by importing another
test file: that runs the other file's module code (its marks, its imports) and makes one test's settings
look like another test's private detail. Nor from a ``conftest``, whose name pytest gives to every test
directory's, so which one is found depends on the order the directories were given in.
"""

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent



def _imported_test_modules(path: Path) -> set[str]:
    """The modules named ``test_*`` or ``conftest`` that ``path`` imports (absolute imports, anywhere in it)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found |= {name for name in names if name.split(".")[0].startswith("test_") or name == "conftest"}
    return found


def test_no_test_file_imports_another_test_file() -> None:
    imports = {f"{path.relative_to(TESTS).as_posix()}: {module}"
               for path in TESTS.rglob("*.py") for module in _imported_test_modules(path)}
    assert not imports, f"move what these share into a helper module: {sorted(imports)}"
