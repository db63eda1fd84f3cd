"""A wrong value of an eval flag is one message naming the flag (and, for --metrics, the known metrics), exit 2, no
traceback, before a model loads and before --out is created."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsft.eval.scoring import METRICS


def _data(tmp: Path) -> str:
    path = tmp / "d.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "1+1?"},
                                             {"role": "assistant", "content": "2"}]}) + "\n")
    return str(path)


def _predictions(tmp: Path) -> str:
    path = tmp / "p.jsonl"
    path.write_text(json.dumps({"prediction": "2", "reference": "2"}) + "\n")
    return str(path)


def _eval(tmp: Path, *flags: str) -> list[str]:
    return ["eval", "tiny-deepseek-v3", "--data", _data(tmp), "--out", str(tmp / "o"), *flags]


def _compare(tmp: Path, *flags: str) -> list[str]:
    return ["compare", "--tuned", "tiny-deepseek-v3", "--base", "tiny-deepseek-v3", "--data", _data(tmp),
            "--out", str(tmp / "o"), *flags]


KNOWN = f"choose from {', '.join(METRICS)}"
CASES = [
    ("eval-unknown-metric", lambda t: _eval(t, "--metrics", "num_acc"),
     f"--metrics num_acc: unknown metric(s) 'num_acc' (did you mean 'numeric_accuracy'?); {KNOWN}"),
    ("eval-one-unknown-of-two", lambda t: _eval(t, "-m", "f1,xx"), f"--metrics f1,xx: unknown metric(s) 'xx'; {KNOWN}"),
    ("eval-no-metric-named", lambda t: _eval(t, "--metrics", ","), f"--metrics ',': names no metric; {KNOWN}"),
    ("compare-unknown-metric", lambda t: _compare(t, "-m", "bleu4"),
     f"--metrics bleu4: unknown metric(s) 'bleu4'; {KNOWN}"),
    ("metrics-unknown-metric", lambda t: ["metrics", "-p", _predictions(t), "--metrics", "num_acc"],
     f"--metrics num_acc: unknown metric(s) 'num_acc' (did you mean 'numeric_accuracy'?); {KNOWN}"),
    ("eval-temperature", lambda t: _eval(t, "--temperature", "-1"), "--temperature -1: must be a finite number >= 0"),
    ("eval-top-p-high", lambda t: _eval(t, "--top-p", "1.5"), "--top-p 1.5: must be in (0, 1]"),
    ("eval-top-p-zero", lambda t: _eval(t, "--top-p", "0"), "--top-p 0: must be in (0, 1]"),
    ("compare-temperature", lambda t: _compare(t, "--temperature", "-0.5"), "--temperature -0.5: must be a finite number >= 0"),
    ("compare-samples", lambda t: _compare(t, "--samples", "-1"), "--samples"),
]


@pytest.mark.parametrize("build, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_wrong_eval_flag_names_the_flag(run_cli, tmp_path: Path, build, expected: str) -> None:
    code, out, err = run_cli(build(tmp_path))
    assert code == 2, (out, err)
    assert "Traceback" not in err + out
    text = " ".join(err.split())
    assert text.count("rror:") == 1, err  # one message (ours print "error:", click's "Error:")
    assert expected in text, err
    assert not (tmp_path / "o").exists()
