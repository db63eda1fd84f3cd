"""Keyword flags take their word in any case (``--format GGUF``, ``--dtype Q8_0``, ``--engine vLLM``), as README's
"Flag values" says; a word that is none of the flag's is still refused as typed.

Each case gives the keywords in capitals together with a model, preset or file that does not exist: the command
must get past the keywords and stop at that, the next thing it checks (before, the keyword itself was refused).
"""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import pytest

from dsft.cli import keywords

MISSING = "no-such-model-dir"


def _config(tmp: Path) -> str:
    path = tmp / "c.yaml"
    path.write_text(json.dumps({"train": {"max_steps": 2}}))
    return str(path)


# (id, argv builder taking tmp_path, what the refusal names instead of a keyword)
CASES = [
    ("export-format-dtype", lambda t: ["export", MISSING, "--format", "GGUF", "--dtype", "Q8_0", "--out", str(t / "o")],
     MISSING),
    ("serve-quantize-dtype", lambda t: ["serve", MISSING, "--quantize", "INT8", "--dtype", "BFloat16"], MISSING),
    ("serve-engine", lambda t: ["serve", MISSING, "--engine", "vLLM", "--dry-run"], MISSING),
    ("chat-quantize", lambda t: ["chat", MISSING, "--quantize", "Int8"], MISSING),
    ("models-random-dtype", lambda t: ["models", "random", "no-such-preset", "--dtype", "Float16", "--out",
                                       str(t / "o")], "unknown real-model preset 'no-such-preset'"),
    ("plan-method-offload", lambda t: ["plan", "--model", MISSING, "--method", "QLoRA", "--offload", "Optimizer"],
     MISSING),
    ("sweep-sampler-launch", lambda t: ["sweep", _config(t), "--out", str(t / "o"), "--sampler", "GRID", "--launch",
                                        "Script", "--grid", "train.lr=1e-5,2e-5", "--prune"],
     "--prune needs a sampler that compares trials"),
    ("bench-method-precision-loss-dtype-lengths",
     lambda t: ["bench", "train", "--method", "Full", "--precision", "FP32", "--loss-dtype", "BF16", "--lengths",
                "Reasoning", "--steps", "0", "--out", str(t / "b.json")], "bench --steps 0: must be >= 1"),
    ("template-mode-masking", lambda t: ["template", "render", "--template", "deepseek-r1", "--messages",
                                         str(t / "absent.json"), "--mode", "Train", "--masking", "LAST"],
     "absent.json"),
]


@pytest.mark.parametrize("build, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_keywords_in_capitals_are_taken(run_cli, tmp_path: Path, build, expected: str) -> None:
    args = build(tmp_path)
    code, out, err = run_cli(args)
    message = " ".join(err.split())
    assert code == 2 and expected in message and "Traceback" not in err, (out, err)
    capitals = [value for flag, value in zip(args, args[1:]) if flag.startswith("--") and value != value.lower()]
    assert not any(value in message for value in capitals if value not in expected), message


def test_launch_takes_the_launcher_in_capitals(run_cli, tmp_path: Path) -> None:
    code, out, err = run_cli(["launch", _config(tmp_path), "--launcher", "DeepSpeed", "--nodes", "1",
                              "--gpus-per-node", "2", "--out", str(tmp_path / "o")])
    assert code == 0, err
    assert (tmp_path / "o" / "deepspeed_launch.sh").is_file(), out


@pytest.mark.parametrize("args, expected", [
    (["export", MISSING, "--format", "GGUF2", "--out", "o"], "--format GGUF2: unknown; choose one of hf, adapter"),
    (["serve", MISSING, "--engine", "VLLM2"], "--engine VLLM2: choose transformers or vllm"),
])
def test_a_word_that_is_none_of_the_flag_s_is_refused_as_typed(run_cli, args: list[str], expected: str) -> None:
    code, _, err = run_cli(args)
    assert code == 2 and expected in " ".join(err.split()), err
    assert doctest.testmod(keywords).failed == 0  # keyword()'s worked example


# The dtype spellings README's "Flag values" lists beside dsft's own (torch's) names: train.precision's (fp16, bf16,
# fp32), llama.cpp's (f16, f32) and torch's half. Before, every --dtype refused them ("--dtype fp16: unknown").
DTYPE_SPELLINGS = [
    ("export-fp16", lambda t: ["export", MISSING, "--dtype", "fp16", "--out", str(t / "o")], MISSING),
    ("export-BF16", lambda t: ["export", MISSING, "--dtype", "BF16", "--out", str(t / "o")], MISSING),
    ("export-fp32-hf", lambda t: ["export", MISSING, "--format", "hf", "--dtype", "fp32", "--out", str(t / "o")],
     MISSING),
    ("export-f16-gguf", lambda t: ["export", MISSING, "--format", "gguf", "--dtype", "f16", "--out", str(t / "o")],
     MISSING),
    ("serve-bf16", lambda t: ["serve", MISSING, "--dtype", "bf16"], MISSING),
    ("serve-half", lambda t: ["serve", MISSING, "--dtype", "half"], MISSING),
    ("models-random-fp16", lambda t: ["models", "random", "no-such-preset", "--dtype", "fp16", "--out", str(t / "o")],
     "unknown real-model preset 'no-such-preset'"),
]


@pytest.mark.parametrize("build, expected", [c[1:] for c in DTYPE_SPELLINGS], ids=[c[0] for c in DTYPE_SPELLINGS])
def test_every_dtype_flag_takes_the_usual_spellings(run_cli, tmp_path: Path, build, expected: str) -> None:
    code, out, err = run_cli(build(tmp_path))
    message = " ".join(err.split())
    assert code == 2 and expected in message and "--dtype" not in message and "Traceback" not in err, (out, err)


def test_a_dtype_that_is_none_of_them_is_refused_as_typed(run_cli, tmp_path: Path) -> None:
    code, _, err = run_cli(["export", MISSING, "--dtype", "fp8", "--out", str(tmp_path / "o")])
    assert code == 2 and "--dtype fp8: unknown; choose one of auto, float32, float16, bfloat16, q8_0" in err, err
