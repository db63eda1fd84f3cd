"""Size presets: guide 001's table, applied over the file and under --set, printed with their source."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

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
