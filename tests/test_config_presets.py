"""Size presets: guide 001's table, applied over the file and under --set, printed with their source."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import dsft.training.run

from dsft.config import load_config
from dsft.errors import ConfigError

GUIDE_TABLE = {"7b": (3e-5, 32, 16), "13b": (2e-5, 48, 8), "34b": (1e-5, 64, 4)}


@pytest.mark.parametrize("name", list(GUIDE_TABLE))
def test_preset_fills_the_guides_values(name: str) -> None:
    lr, rank, batch = GUIDE_TABLE[name]
    cfg = load_config(None, [], preset=name)
    assert (cfg.train.lr, cfg.lora.r, cfg.train.micro_batch_size * cfg.train.grad_accum) == (lr, rank, batch)


def test_preset_sits_between_file_and_set(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 1.0e-3\n  epochs: 3\nlora:\n  r: 4\n", encoding="utf-8")
    cfg = load_config(path, ["lora.r=8"], preset="7b")
    assert cfg.train.lr == 3e-5  # the preset replaces the file's value
    assert cfg.lora.r == 8  # --set wins over the preset
    assert cfg.train.epochs == 3  # keys outside the preset are the file's


REPLACED = ("--preset 7b replaces what {path} sets: train.lr 0.001 -> 3e-05, lora.r 4 -> 32 (a preset is applied over "
            "the config file; keep the file's value with --set KEY=VALUE, or remove it from the file)")


def _file_and_data(tmp_path: Path) -> tuple[Path, Path]:
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "Q?"},
                                             {"role": "assistant", "content": "A."}]}) + "\n", encoding="utf-8")
    path = tmp_path / "c.yaml"
    path.write_text(f"model:\n  name_or_path: tiny-deepseek-v3\ndata:\n  train: [{data}]\ntrain:\n  lr: 1.0e-3\n"
                    "  micro_batch_size: 16\nlora:\n  r: 4\n", encoding="utf-8")
    return path, data


def test_a_value_of_the_file_the_preset_replaces_is_named(tmp_path: Path, run_cli) -> None:
    """`dsft config show c.yaml --preset 7b` printed train.lr 3e-05 and lora.r 32 over the file's 1e-3 and 4
    without a word: the docs define the preset over the file, but the file's values were written on purpose."""
    path, _ = _file_and_data(tmp_path)
    code, out, err = run_cli(["config", "show", str(path), "--preset", "7b"])
    assert code == 0, err
    assert " ".join(err.split()) == REPLACED.format(path=path)  # micro_batch_size 16 is the preset's too: not named
    assert yaml.safe_load(out)["train"]["lr"] == 3e-5  # stdout stays the config
    code, out, err = run_cli(["config", "show", str(path), "--preset", "7b", "--set", "train.lr=1e-3", "--set",
                              "lora.r=4"])  # the opt-out: --set keeps the file's value
    assert code == 0 and err == "" and yaml.safe_load(out)["lora"]["r"] == 4
    code, _, err = run_cli(["config", "show", str(path)])  # no preset, nothing replaced
    assert code == 0 and err == ""


def test_dsft_train_names_what_the_preset_replaced_before_training(tmp_path: Path, run_cli, monkeypatch) -> None:
    path, _ = _file_and_data(tmp_path)
    seen = []

    def trained(cfg, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202 - the config it would train, no run
        seen.append(cfg)
        raise SystemExit(3)

    monkeypatch.setattr(dsft.training.run, "run_training", trained)
    code, _, err = run_cli(["train", str(path), "--out", str(tmp_path / "run"), "--preset", "7b"])
    assert code == 3 and seen[0].train.lr == 3e-5, err  # the documented order: file < preset < --set
    assert REPLACED.format(path=path) in " ".join(err.split())


def test_unknown_preset_is_one_error() -> None:
    with pytest.raises(ConfigError, match="--preset 70b: unknown size preset; choose one of 7b, 13b, 34b"):
        load_config(None, [], preset="70b")


def test_config_preset_command_prints_yaml_with_its_source(run_cli, tmp_path: Path) -> None:
    code, out, _ = run_cli(["config", "preset", "13b"])
    assert code == 0
    assert "guide 001" in out.splitlines()[0]
    assert yaml.safe_load(out) == {"train": {"lr": 2e-5, "micro_batch_size": 8, "grad_accum": 1}, "lora": {"r": 48}}
    code, out, _ = run_cli(["config", "preset"])
    assert code == 0 and all(name in out for name in GUIDE_TABLE)
    code, out, _ = run_cli(["config", "show", "--preset", "34b"])
    shown = yaml.safe_load(out)
    assert shown["train"]["lr"] == 1e-5 and shown["lora"]["r"] == 64
    code, out, err = run_cli(["config", "preset", "nope"])
    assert code == 2 and "unknown size preset" in out + err


@pytest.mark.parametrize(("name", "expected"), [
    ("nope", "error: NAME nope: unknown size preset; choose one of 7b, 13b, 34b"),
    ("", "error: NAME '': unknown size preset"),
])
def test_config_preset_names_the_argument_the_user_typed(run_cli, name: str, expected: str) -> None:
    """`dsft config preset nope` was told '--preset nope: ...', a flag the command does not take (and '' was
    '--preset : ...')."""
    code, out, err = run_cli(["config", "preset", name])
    said = " ".join((out + err).split())
    assert code == 2 and said.startswith(expected) and "--preset" not in said, said
