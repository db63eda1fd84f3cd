"""A number key given a boolean is refused naming the key. Pydantic's lax mode read ``true`` as 1 and ``false`` as 0
for every int and float key: ``--set train.max_steps=true`` trained one step, ``data.val_ratio: no`` (YAML 1.1's
false) held nothing out. Every number key of the schema is checked, in ``--set`` and in a file alike."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import pytest
from pydantic import BaseModel

from dsft.config import DsftConfig, load_config
from dsft.errors import ConfigError

REFUSED = "must be a number, not a boolean"


def _types(annotation: Any) -> set[Any]:
    """The types a field accepts, through unions and ``Annotated`` constraints."""
    if get_origin(annotation) is Annotated:
        return _types(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        return set().union(*(_types(arg) for arg in get_args(annotation)))
    return {annotation}


def _number_keys(model: type[BaseModel] = DsftConfig, prefix: str = "") -> list[str]:
    """The dotted keys of the fields that take an int or a float and no boolean (sections walked, lists of
    sections left to the cases below)."""
    keys = []
    for name, field in model.model_fields.items():
        accepted = _types(field.annotation)
        sections = [t for t in accepted if isinstance(t, type) and issubclass(t, BaseModel)]
        if sections:
            keys += _number_keys(sections[0], f"{prefix}{name}.")
        elif accepted & {int, float} and bool not in accepted:
            keys.append(f"{prefix}{name}")
    return keys


NUMBER_KEYS = _number_keys()


def test_the_walk_finds_the_number_keys() -> None:
    assert {"train.max_steps", "train.lr", "data.val_ratio", "lora.r", "export.tolerance"} <= set(NUMBER_KEYS)
    assert len(NUMBER_KEYS) > 50


@pytest.mark.parametrize("word", ["true", "false", "yes", "off"])
def test_every_number_key_refuses_a_boolean_in_set(word: str) -> None:
    overrides = [f"{key}={word}" for key in NUMBER_KEYS]
    with pytest.raises(ConfigError) as caught:
        load_config(None, overrides, set_flags=overrides)
    problems = caught.value.problems
    missed = [key for key in NUMBER_KEYS if not any(p.startswith(f"{key}: {REFUSED}") for p in problems)]
    assert not missed, (missed, problems)


def test_a_boolean_in_a_file_is_refused_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("train:\n  max_steps: true\n  epochs: on\ndata:\n  val_ratio: no\n")
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert sorted(caught.value.problems) == [f"data.val_ratio: {REFUSED}, got false",
                                             f"train.epochs: {REFUSED}, got true",
                                             f"train.max_steps: {REFUSED}, got true"]
    assert str(config) in str(caught.value)


@pytest.mark.parametrize(("override", "said"), [
    ("train.adam_betas=[0.9, true]", f"train.adam_betas: item 1 {REFUSED}"),
    ("data.clean.max_tokens_per_role={user: false}", f"data.clean.max_tokens_per_role: 'user' {REFUSED}"),
    ("data.mix=[{path: g.jsonl, ratio: true}]", f"data.mix.0.ratio: {REFUSED}"),
])
def test_a_boolean_inside_a_number_list_or_mapping_is_refused(override: str, said: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, [override], set_flags=[override])
    assert any(p.startswith(said) for p in caught.value.problems), caught.value.problems


def test_booleans_and_numbers_stay_what_they_were() -> None:
    cfg = load_config(None, ["train.max_steps=3", "train.lr=1e-4", "template.thinking=true",
                             "eval.greater_is_better=false", "train.adam_betas=[0.9, 0.95]", "train.loss_chunk_size=auto"])
    assert (cfg.train.max_steps, cfg.train.lr, cfg.template.thinking) == (3, 1e-4, True)
    assert cfg.eval.greater_is_better is False and cfg.train.adam_betas == (0.9, 0.95)


def test_config_show_refuses_it_in_one_line(run_cli) -> None:
    code, stdout, err = run_cli(["config", "show", "--set", "train.max_steps=true"])
    assert code == 2 and not stdout and "Traceback" not in err, err
    assert "error: --set train.max_steps=true: 1 problem(s)" in err and f"train.max_steps: {REFUSED}, got true" in err
