"""pyproject.toml promises only the versions the suite was checked on: every dependency has a floor, the floor is
not below the lowest release docs/install.md records as checked, and the two files state the same range.

CI installs the newest release each range allows, so a floor is only ever exercised when someone checks it; the
table in docs/install.md records, per package, the lowest release that was (and how). The GPU extra is left out:
CI has no GPU, so nothing there is checked (docs/install.md says so).
"""

import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")

ROOT = Path(__file__).resolve().parents[1]
UNCHECKED_EXTRAS = {"gpu": "needs a CUDA GPU; CI has none"}
# | `name` | `range` | lowest release checked | how |
ROW = re.compile(r"^\| `([A-Za-z0-9_.-]+)` \| `([^`]+)` \| ([0-9][0-9A-Za-z.+]*) \|", re.M)


def _declared() -> dict[str, list[Requirement]]:
    """Every requirement of the core and of each checked extra, by package (the self-reference dsft[x] left out)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    lines = list(project["dependencies"])
    for extra, requirements in project["optional-dependencies"].items():
        if extra not in UNCHECKED_EXTRAS:
            lines += requirements
    found: dict[str, list[Requirement]] = {}
    for line in lines:
        requirement = Requirement(line)
        if canonicalize_name(requirement.name) != "dsft":
            found.setdefault(canonicalize_name(requirement.name), []).append(requirement)
    return found


def _table() -> dict[str, tuple[str, Version]]:
    """docs/install.md's rows: package -> (range, lowest release checked)."""
    text = (ROOT / "docs" / "install.md").read_text(encoding="utf-8")
    return {canonicalize_name(name): (spec, Version(checked)) for name, spec, checked in ROW.findall(text)}


def _floor(requirement: Requirement) -> Version | None:
    bounds = [Version(s.version) for s in requirement.specifier if s.operator in (">=", "==", "~=")]
    return max(bounds, default=None)


def test_every_dependency_has_one_range_with_a_floor() -> None:
    problems = []
    for name, requirements in _declared().items():
        ranges = {str(r.specifier) for r in requirements}
        if len(ranges) > 1:
            problems.append(f"{name}: stated differently in two places of pyproject.toml: {sorted(ranges)}")
        problems += [f"{name}: no floor in {str(r)!r}" for r in requirements if _floor(r) is None]
    assert not problems, "\n".join(problems)


def test_the_install_docs_table_states_each_range_pyproject_does() -> None:
    declared, table = _declared(), _table()
    problems = [f"{name}: not in docs/install.md's table" for name in declared.keys() - table.keys()]
    problems += [f"{name}: in docs/install.md's table, not in pyproject.toml" for name in table.keys() - declared.keys()]
    for name in declared.keys() & table.keys():
        stated, documented = declared[name][0].specifier, table[name][0]
        if stated != Requirement(f"x{documented}").specifier:
            problems.append(f"{name}: pyproject.toml says {str(stated) or 'no range'}, docs/install.md {documented}")
    assert not problems, "\n".join(problems)


def test_no_floor_is_below_the_lowest_release_checked() -> None:
    """A floor may be the release line of what was checked (>=4.7 for 4.7.0 checked), not an older one."""
    table = _table()
    problems = []
    for name, requirements in _declared().items():
        floor = _floor(requirements[0])
        if name in table and floor is not None:
            checked = table[name][1]
            line = Version(".".join(str(part) for part in checked.release[:2]))
            if floor < line:
                problems.append(f"{name}: floor {floor} is below {line}, the line of {checked}, the lowest checked")
    assert not problems, "\n".join(problems)


def test_the_suite_runs_inside_the_declared_ranges() -> None:
    """What this environment has installed is what the suite is checking: it must lie in the range promised."""
    problems = []
    for name, requirements in _declared().items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            problems.append(f"{name}: not installed (pip install -e '.[test]')")
            continue
        if not requirements[0].specifier.contains(installed, prereleases=True):
            problems.append(f"{name}: {installed} installed, outside {requirements[0].specifier}")
    assert not problems, "\n".join(problems)
