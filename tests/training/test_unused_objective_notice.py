"""``preference.*`` / ``grpo.*`` settings under an objective that does not read them: the run says so, once.

Which objective reads which key has one owner (:mod:`dsft.training.objective_settings`); the trainers read
their settings through it, and the notice asks it.
"""

from __future__ import annotations

import ast
import json
import typing
from pathlib import Path

import pytest
from offline_train_config import MODEL_ERROR, write_offline_train_config

from dsft.config import DsftConfig
from dsft.config.schema import TrainConfig
from dsft.eval.rewards import check_rewards
from dsft.training.objective_settings import OBJECTIVE_SECTIONS, OBJECTIVE_SETTINGS, objective_settings
from dsft.training.preflight import config_notices, unused_objective_notice


def _config(objective: str, **sections: dict) -> DsftConfig:
    return DsftConfig.model_validate({"train": {"objective": objective}, **sections})


def test_a_dpo_config_switched_to_sft_names_the_preference_settings_and_who_reads_them() -> None:
    notice = unused_objective_notice(_config("sft", preference={"beta": 0.2, "loss_type": "ipo"}))
    assert notice == ("preference.beta=0.2 (read by dpo, kto, orpo), preference.loss_type=ipo (read by dpo): "
                      "not applied; train.objective=sft does not read them (set train.objective to one that does "
                      "to use them, or remove the keys)")
    assert config_notices(_config("sft", preference={"beta": 0.2}), world_size=1) == [
        "preference.beta=0.2 (read by dpo, kto, orpo): not applied; train.objective=sft does not read it (set "
        "train.objective to one that does to use it, or remove the key)"]


def test_grpo_settings_under_dpo_and_dpo_settings_under_kto() -> None:
    assert unused_objective_notice(_config("dpo", grpo={"num_generations": 4, "rewards": [{"name": "accuracy"}]})) \
        == ("grpo.num_generations=4, grpo.rewards=[accuracy] (read by grpo): not applied; train.objective=dpo does "
            "not read them (set train.objective to one that does to use them, or remove the keys)")
    assert unused_objective_notice(_config("kto", preference={"beta": 0.3, "label_smoothing": 0.1})).startswith(
        "preference.label_smoothing=0.1 (read by dpo): not applied; train.objective=kto does not read it")


def test_no_notice_where_the_settings_are_read_or_are_the_defaults() -> None:
    assert unused_objective_notice(_config("dpo", preference={"beta": 0.2, "loss_type": "ipo"})) is None
    assert unused_objective_notice(_config("grpo", grpo={"num_generations": 4})) is None
    assert unused_objective_notice(_config("sft")) is None
    # A saved config.yaml lists every key with its value: an SFT run's own config, trained again, says nothing.
    saved = DsftConfig.model_validate(json.loads(_config("sft").model_dump_json()))
    assert unused_objective_notice(saved) is None


def test_every_objective_declares_what_it_reads_and_reads_nothing_else() -> None:
    objectives = typing.get_args(TrainConfig.model_fields["objective"].annotation)
    assert set(OBJECTIVE_SETTINGS) == set(objectives)
    for objective, (section, keys) in OBJECTIVE_SETTINGS.items():
        assert section is None or section in OBJECTIVE_SECTIONS
        assert set(keys) <= set(type(getattr(DsftConfig(), section)).model_fields if section else ())
        assert sorted(vars(objective_settings(_config(objective)))) == sorted(keys)
    with pytest.raises(AttributeError):  # a trainer asking for a key its objective does not declare
        objective_settings(_config("kto")).loss_type  # noqa: B018


def test_only_objective_settings_reads_the_objective_sections() -> None:
    """``cfg.grpo.rewards`` read beside the table (preflight's reward check, a sweep's trials) answered "which
    objective reads it" a second time; every reader goes through :func:`objective_settings`."""
    src = Path(__file__).resolve().parents[2] / "src" / "dsft"
    owner = src / "training" / "objective_settings.py"
    readers = [f"{path.relative_to(src)}:{node.lineno}" for path in sorted(src.rglob("*.py")) if path != owner
               for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
               if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
               and node.value.attr in OBJECTIVE_SECTIONS]
    assert readers == []


def test_the_rewards_are_built_for_the_objectives_the_table_says_read_them(monkeypatch) -> None:
    rewards = [{"name": "accuracy"}]
    assert check_rewards(_config("grpo", grpo={"rewards": rewards})).functions
    assert not check_rewards(_config("dpo", grpo={"rewards": rewards})).grpo
    # The table decides: an objective it did not let read grpo.rewards builds none.
    monkeypatch.setitem(OBJECTIVE_SETTINGS, "grpo", ("grpo", ("max_completion_len",)))
    assert not check_rewards(_config("grpo", grpo={"rewards": rewards})).grpo


def test_dsft_train_says_it_once_before_anything_loads(tmp_path: Path, run_cli, monkeypatch, caplog) -> None:
    """`dsft train DPO_CONFIG --set train.objective=sft`: the notice comes first, once, before the model is
    fetched (a hub id this offline machine cannot fetch, which stops the run right after)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = write_offline_train_config(tmp_path, "train: {objective: dpo}\npreference: {beta: 0.2}\n")
    code, _, err = run_cli(["train", str(config), "--out", str(tmp_path / "run"), "--set", "train.objective=sft"])
    assert code == 2, err
    assert err.startswith(MODEL_ERROR), err
    said = [r.getMessage() for r in caplog.records if "not applied" in r.getMessage()]
    assert said == [unused_objective_notice(_config("sft", preference={"beta": 0.2}))]
