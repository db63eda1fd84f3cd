"""Imports point one way: a package imports only packages listed before it (docs/internals.md)."""

import ast
from pathlib import Path

ORDER = ["config", "models", "data", "templates", "training", "eval", "export", "serve", "plan", "doctor", "cli"]
ROOT = Path(__file__).resolve().parents[1] / "src" / "dsft"


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
