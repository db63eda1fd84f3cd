"""The example guides state what `dsft plan` says of their settings on the guide's GPU, and say it right.

A guide README's table of ``| `dsft plan ...` | PEAK GiB | fits / does not fit |`` rows is checked by running each
command (with ``--json``): the peak per GPU and the verdict must be what the planner answers today.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GUIDES = sorted((ROOT / "examples" / "guides").glob("*/README.md"))
ROW = re.compile(r"^\|\s*`(dsft plan [^`]+)`\s*\|\s*([\d.]+) GiB\s*\|\s*(fits|does not fit)\b", re.M)
# Guide 002 trains on an 8 GB RTX 4060: its README must give the planner's verdict on the guide's own settings.
GUIDE_002_SETTINGS = ("dsft plan --config examples/guides/002-medical-cot-r1-distill/config.yaml "
                      "--model deepseek-r1-distill-qwen-1.5b --gpu-mem 8")


def _rows(readme: Path) -> list[tuple[str, str, str]]:
    return ROW.findall(readme.read_text(encoding="utf-8"))


def test_guide_002_states_the_verdict_on_its_own_settings() -> None:
    commands = [command for command, _, _ in _rows(ROOT / "examples/guides/002-medical-cot-r1-distill/README.md")]
    assert GUIDE_002_SETTINGS in commands


STATED = [row for readme in GUIDES for row in _rows(readme)]


@pytest.mark.parametrize("command, peak, verdict", STATED or [
    pytest.param("", "", "", marks=pytest.mark.skip(reason="no guide states a plan verdict"))])
def test_a_plan_verdict_a_guide_states_is_what_dsft_plan_says(command: str, peak: str, verdict: str, run_cli,
                                                              monkeypatch) -> None:
    monkeypatch.chdir(ROOT)  # the commands name the config relative to the repository root
    code, out, err = run_cli([*shlex.split(command)[1:], "--json"])
    assert code == 0, err
    plan = json.loads(out)
    assert f"{plan['per_gpu_bytes'] / 2**30:.2f}" == peak, command
    assert ("fits" if plan["fits"] else "does not fit") == verdict, command
