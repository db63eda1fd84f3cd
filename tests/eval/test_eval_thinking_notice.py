"""--thinking/--no-thinking given to eval or compare for a template with no thinking mode changes nothing; one stderr
notice names the template, as `dsft template render` and `dsft data inspect` say it (it was ignored silently)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def _data(tmp: Path) -> str:
    path = tmp / "d.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "1+1?"},
                                             {"role": "assistant", "content": "2"}]}) + "\n")
    return str(path)


@pytest.mark.parametrize("command, flag", [
    (["eval", "tiny-deepseek-v3"], "--thinking"),
    (["compare", "--tuned", "tiny-deepseek-v3", "--base", "tiny-deepseek-v3"], "--no-thinking"),
], ids=["eval", "compare"])
def test_a_thinking_flag_the_template_has_no_mode_for_is_named(run_cli, tmp_path: Path, command: list[str],
                                                               flag: str) -> None:
    code, out, err = run_cli([*command, "--data", _data(tmp_path), "--out", str(tmp_path / "o"), flag,
                              "--max-new-tokens", "2", "--temperature", "0"])
    assert code == 0, (out, err)
    notice = f"notice: {flag}: template deepseek-r1 has no thinking mode; the flag changes nothing"
    assert " ".join(err.split()).count(notice) == 1, err


@pytest.mark.parametrize("command, flag, records", [
    (["eval", "tiny-deepseek-v3"], "--thinking", ["metrics.json"]),
    (["compare", "--tuned", "tiny-deepseek-v3", "--base", "tiny-deepseek-v3"], "--no-thinking",
     ["tuned/metrics.json", "base/metrics.json", "comparison.json"]),
], ids=["eval", "compare"])
def test_a_thinking_flag_the_template_has_no_mode_for_is_not_recorded_as_the_mode(
        run_cli, tmp_path: Path, command: list[str], flag: str, records: list[str]) -> None:
    """The files say what the prompts were rendered in (no mode: null) and why the flag changed nothing; they
    recorded the flag as if the model had been evaluated in that mode."""
    out = tmp_path / "o"
    code, _, err = run_cli([*command, "--data", _data(tmp_path), "--out", str(out), flag,
                            "--max-new-tokens", "2", "--temperature", "0"])
    assert code == 0, err
    for name in records:
        record = json.loads((out / name).read_text())
        record = record.get("evaluated", record)
        assert record["thinking"] is None, (name, record)
        assert record["thinking_unused"] == "template deepseek-r1 has no thinking mode", (name, record)
