"""A dropout key the model's architecture does not have (``model.hidden_dropout`` on a Llama-type model) was refused
only inside the run, after peft, TRL and datasets were imported and the model's tokenizer loaded (about 10 CPU-s);
``dsft config show`` printed the config. Both refuse it from the model's config alone, before the training stack
loads or the run directory is written; the run's own check on the loaded config is the same decision."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli_in_subprocess import ROOT
from tiny_runs import write_data

PROBE = """
import json, sys
from dsft.cli.app import main
code = 0
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps([code, [m for m in ("peft", "trl", "datasets") if m in sys.modules]]))
"""
REFUSAL = ("error: model.hidden_dropout: the Llama architecture has no hidden-state dropout (only attention dropout); "
           "use model.attention_dropout or lora.dropout instead")


def _dsft(args: list[str]) -> tuple[list, str]:
    result = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    return json.loads(result.stdout.strip().splitlines()[-1]), " ".join(result.stderr.split())


@pytest.mark.parametrize("command", ["train", "config show"])
def test_hidden_dropout_on_a_llama_model_is_refused_before_the_training_stack_loads(
        tmp_path: Path, tiny_model_dir, command: str) -> None:
    tiny_model_dir("tiny-deepseek-llm")  # a LlamaForCausalLM
    data = write_data(tmp_path / "train.jsonl", 8)
    sets = ["model.name_or_path=tiny-deepseek-llm", f"data.train=[{data}]", "model.hidden_dropout=0.1"]
    args = ["train", "/dev/null", "--out", str(tmp_path / "run")] if command == "train" else ["config", "show"]
    outcome, err = _dsft([*args, *[arg for text in sets for arg in ("--set", text)]])
    assert outcome == [2, []], err
    assert REFUSAL in err and "Traceback" not in err, err
    assert not (tmp_path / "run").exists()


def test_a_dropout_the_architecture_has_passes_config_show(tmp_path: Path, tiny_model_dir) -> None:
    tiny_model_dir("tiny-deepseek-llm")
    outcome, err = _dsft(["config", "show", "--set", "model.name_or_path=tiny-deepseek-llm",
                          "--set", "model.attention_dropout=0.1"])
    assert outcome == [0, []], err
