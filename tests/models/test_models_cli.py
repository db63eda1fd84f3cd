"""`dsft models list | tiny | targets`: output and error paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsft.cli.app import main
from dsft.models.presets import REAL_MODEL_PRESETS
from dsft.models.tiny import TINY_PRESETS


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_list_json_names_every_preset(capsys) -> None:
    code, out, _ = run(["models", "list", "--json"], capsys)
    assert code == 0
    listed = json.loads(out)
    assert [row["name"] for row in listed["tiny"]] == list(TINY_PRESETS)
    assert [row["name"] for row in listed["real"]] == list(REAL_MODEL_PRESETS)


def test_list_table(capsys) -> None:
    code, out, _ = run(["models", "list"], capsys)
    assert code == 0 and "tiny-deepseek-v3" in out and "deepseek-v3" in out


def test_tiny_writes_a_checkpoint(tmp_path: Path, capsys) -> None:
    code, out, _ = run(["models", "tiny", "tiny-deepseek-llm", "--out", str(tmp_path / "m"), "--seed", "1"], capsys)
    assert code == 0, out
    assert (tmp_path / "m" / "model.safetensors").is_file() and (tmp_path / "m" / "tokenizer.json").is_file()
    # Writing again over it is refused with one message, exit 2.
    code, _, err = run(["models", "tiny", "tiny-deepseek-llm", "--out", str(tmp_path / "m")], capsys)
    assert code == 2 and "not empty" in err and "Traceback" not in err


def test_unknown_preset_exit_2(tmp_path: Path, capsys) -> None:
    code, _, err = run(["models", "tiny", "tiny-gpt", "--out", str(tmp_path / "x")], capsys)
    assert code == 2
    assert "unknown tiny preset 'tiny-gpt'" in err and "tiny-deepseek-v3" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_targets_of_a_real_preset_without_weights(capsys) -> None:
    code, out, _ = run(["models", "targets", "deepseek-v3"], capsys)
    assert code == 0
    shown = json.loads(out)
    assert "q_a_proj" in shown["target_modules"] and "gate" not in shown["target_modules"]
    assert shown["target_parameters"] == ["mlp.experts.down_proj", "mlp.experts.gate_up_proj"]


def test_targets_unknown_model_exit_2(capsys) -> None:
    code, _, err = run(["models", "targets", "no-such-model"], capsys)
    assert code == 2 and "tiny presets" in err
