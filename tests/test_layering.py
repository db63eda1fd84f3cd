"""Imports point one way: a package imports only packages listed before it (docs/internals.md).

Modules at the package root are below every layer: ``dsft.errors`` and the two tables every layer reads,
``dsft.markers`` (the DeepSeek marker strings) and ``dsft.template_families`` (the family names). A test
holds them to that: they import no dsft package.
"""

import ast
from pathlib import Path

ORDER = ["config", "models", "data", "templates", "training", "eval", "sweep", "export", "serve", "plan", "doctor", "ui", "cli"]
ROOT = Path(__file__).resolve().parents[1] / "src" / "dsft"


def _runtime_nodes(tree: ast.Module) -> list[ast.AST]:
    """Every node of a module except those under ``if TYPE_CHECKING:`` (never imported at run time)."""
    top = [n for n in tree.body if not (isinstance(n, ast.If) and getattr(n.test, "id", None) == "TYPE_CHECKING")]
    return [node for statement in top for node in ast.walk(statement)]


def _dsft_packages_imported(path: Path) -> set[str]:
    """The dsft packages (layers) a file imports at run time, anywhere in it."""
    found = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        names = [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else (
            [a.name for a in node.names] if isinstance(node, ast.Import) else [])
        found |= {name.split(".")[1] for name in names if name.startswith("dsft.") and name.split(".")[1] in ORDER}
    return found


def test_imports_point_down_the_layers() -> None:
    rank = {name: i for i, name in enumerate(ORDER)}
    problems = []
    for path in ROOT.rglob("*.py"):
        own = path.relative_to(ROOT).parts[0].removesuffix(".py")
        if own not in rank:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                bits = name.split(".")
                if len(bits) > 1 and bits[0] == "dsft" and bits[1] in rank and rank[bits[1]] > rank[own]:
                    problems.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name}")
    assert not problems, "upward imports:\n" + "\n".join(problems)


def test_every_package_is_in_the_order() -> None:
    packages = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages <= set(ORDER), packages - set(ORDER)


def test_root_modules_import_no_layer() -> None:
    for path in ROOT.glob("*.py"):
        if path.name not in ("__init__.py", "__main__.py"):
            assert not _dsft_packages_imported(path), f"{path.name} imports a dsft layer: it must stay a root table"
