"""A LoRA config switched to ``train.method=full`` keeps its lora section, and the run says it is not used."""

from __future__ import annotations

import json
from pathlib import Path

from offline_train_config import MODEL_ERROR, write_offline_train_config

from dsft.config import DsftConfig
from dsft.training.preflight import config_notices, unused_lora_notice

NOTICE = ("lora.r=8, lora.alpha=16, lora.targets=[q_proj, v_proj]: not applied; train.method=full trains every "
          "weight, with no adapter (set train.method=lora or qlora to use them, or remove the keys)")


def _config(method: str, **lora: object) -> DsftConfig:
    return DsftConfig.model_validate({"train": {"method": method}, "lora": lora})


def test_full_method_names_every_lora_key_it_does_not_apply() -> None:
    assert unused_lora_notice(_config("full", r=8, alpha=16, targets="q_proj,v_proj")) == NOTICE
    assert unused_lora_notice(_config("full", use_dora=True)) == (
        "lora.use_dora=true: not applied; train.method=full trains every weight, with no adapter (set "
        "train.method=lora or qlora to use it, or remove the key)")
    assert config_notices(_config("full", r=8, alpha=16, targets="q_proj,v_proj"), world_size=1) == [NOTICE]


def test_no_notice_where_the_lora_keys_apply_or_are_the_defaults() -> None:
    assert unused_lora_notice(_config("lora", r=8)) is None
    assert unused_lora_notice(_config("qlora", r=8)) is None
    assert unused_lora_notice(_config("full")) is None
    # A saved config.yaml lists every key with its value: a full run's own config, trained again, says nothing.
    saved = DsftConfig.model_validate(json.loads(_config("full").model_dump_json()))
    assert unused_lora_notice(saved) is None


def test_dsft_train_says_it_once_before_anything_loads(tmp_path: Path, run_cli, monkeypatch, caplog) -> None:
    """`dsft train LORA_CONFIG --set train.method=full`: the notice is the first line, said once, before the model
    is fetched (here a hub id this offline machine cannot fetch, which stops the run right after)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = write_offline_train_config(tmp_path, "train: {method: lora}\n"
                                                  "lora: {r: 8, alpha: 16, targets: [q_proj, v_proj]}\n")
    code, _, err = run_cli(["train", str(config), "--out", str(tmp_path / "run"), "--set", "train.method=full"])
    assert code == 2, err
    assert err.startswith(MODEL_ERROR), err
    assert [r.getMessage() for r in caplog.records if "not applied" in r.getMessage()] == [NOTICE]
