"""``null`` (``~``) means what YAML's null means for the key, the same in a config file and in ``--set``: nothing for
a key that may be unset, empty for a list or mapping, the defaults for a section; a key that needs a value says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsft.config import DsftConfig, load_config
from dsft.errors import ConfigError


@pytest.mark.parametrize("null", ["null", "~", "Null", "NULL"])
def test_set_null_empties_a_list_key(null: str) -> None:
    cfg = load_config(None, [f"data.val={null}"], set_flags=[f"data.val={null}"])
    assert cfg.data.val == []
    assert load_config(None, ["data.val=[a.jsonl]", f"data.val={null}"]).data.val == []


def test_null_means_the_same_in_a_file_and_in_set(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    # `val:` with nothing after it, a section whose keys are all commented out: YAML reads both as null.
    config.write_text("data:\n  train: [t.jsonl]\n  val:\n  columns:\nlora:\n  # r: 8\n"
                      "train:\n  report_to:\neval:\n  metrics: ~\nmodel:\n  revision:\n")
    from_file = load_config(config)
    assert from_file.data.val == [] and from_file.data.columns == {}
    assert from_file.lora == DsftConfig().lora
    assert from_file.train.report_to == [] and from_file.eval.metrics == []
    assert from_file.model.revision is None
    from_set = load_config(None, ["data.train=[t.jsonl]", "data.val=null", "data.columns=null", "lora=null",
                                  "train.report_to=null", "eval.metrics=null", "model.revision=null"])
    assert from_set == from_file


def test_null_unsets_a_key_that_may_be_unset() -> None:
    cfg = load_config(None, ["data.clean.semantic.ifd_max=null", "model.attention_dropout=~"])
    assert cfg.data.clean.semantic.ifd_max is None and cfg.model.attention_dropout is None


@pytest.mark.parametrize("override, got", [("train.lr=null", "train.lr: "), ("train.method=~", "train.method: ")])
def test_null_for_a_key_that_needs_a_value_names_it(override: str, got: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(None, [override], set_flags=[override])
    assert str(raised.value).startswith(f"--set {override}: 1 problem(s)")
    (problem,) = raised.value.problems
    assert problem.startswith(got) and problem.endswith("got null"), problem


def test_dsft_config_show_takes_set_null(run_cli) -> None:
    code, out, err = run_cli(["config", "show", "examples/tiny-cpu.yaml", "--set", "data.val=null"])
    assert code == 0, err
    assert "  val: []" in out
