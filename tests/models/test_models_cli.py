"""`dsft models list | tiny | targets`: output and error paths."""

from __future__ import annotations

import json
from pathlib import Path

from dsft.models.presets import REAL_MODEL_PRESETS
from dsft.models.tiny import TINY_PRESETS


def test_list_json_names_every_preset(run_cli) -> None:
    code, out, _ = run_cli(["models", "list", "--json"])
    assert code == 0
    listed = json.loads(out)
    assert [row["name"] for row in listed["tiny"]] == list(TINY_PRESETS)
    assert [row["name"] for row in listed["real"]] == list(REAL_MODEL_PRESETS)


def test_list_table(run_cli) -> None:
    code, out, _ = run_cli(["models", "list"])
    assert code == 0 and "tiny-deepseek-v3" in out and "deepseek-v3" in out


def test_list_names_the_release_presets_dsft_plan_takes(run_cli) -> None:
    """`dsft plan --model` refuses an unknown name saying `dsft models list` shows the presets, and
    docs/planning.md lists deepseek-v2.5, deepseek-v3-0324 and deepseek-r1-0528 among them: the list names them."""
    code, out, _ = run_cli(["models", "list"])
    assert code == 0
    code, js, _ = run_cli(["models", "list", "--json"])
    aliases = json.loads(js)["plan_aliases"]
    assert {"deepseek-v2.5", "deepseek-v3-0324", "deepseek-r1-0528"} <= set(aliases)
    for alias, name in aliases.items():
        assert f"{alias} (as {name})" in out
        assert name in {row["name"] for row in json.loads(js)["real"]}


def test_tiny_writes_a_checkpoint(tmp_path: Path, run_cli) -> None:
    code, out, _ = run_cli(["models", "tiny", "tiny-deepseek-llm", "--out", str(tmp_path / "m"), "--seed", "1"])
    assert code == 0, out
    assert (tmp_path / "m" / "model.safetensors").is_file() and (tmp_path / "m" / "tokenizer.json").is_file()
    # Writing again over it is refused with one message, exit 2.
    code, _, err = run_cli(["models", "tiny", "tiny-deepseek-llm", "--out", str(tmp_path / "m")])
    assert code == 2 and "not empty" in err and "Traceback" not in err


def test_unknown_preset_exit_2(tmp_path: Path, run_cli) -> None:
    code, _, err = run_cli(["models", "tiny", "tiny-gpt", "--out", str(tmp_path / "x")])
    assert code == 2
    assert "unknown tiny preset 'tiny-gpt'" in err and "tiny-deepseek-v3" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_a_preset_of_the_other_kind_names_the_command_that_writes_it(tmp_path: Path, run_cli) -> None:
    code, _, err = run_cli(["models", "random", "tiny-deepseek-v3", "--out", str(tmp_path / "x")])
    assert code == 2 and "write it with `dsft models tiny tiny-deepseek-v3 --out DIR`" in err, err
    code, _, err = run_cli(["models", "tiny", "deepseek-v3", "--out", str(tmp_path / "x")])
    assert code == 2 and "`dsft models random deepseek-v3 --out DIR`" in err, err
    assert not (tmp_path / "x").exists()


def test_targets_of_a_real_preset_without_weights(run_cli) -> None:
    code, out, _ = run_cli(["models", "targets", "deepseek-v3"])
    assert code == 0
    shown = json.loads(out)
    assert "q_a_proj" in shown["target_modules"] and "gate" not in shown["target_modules"]
    assert shown["target_parameters"] == ["mlp.experts.down_proj", "mlp.experts.gate_up_proj"]


def test_targets_unknown_model_exit_2(run_cli) -> None:
    code, _, err = run_cli(["models", "targets", "no-such-model"])
    assert code == 2 and "tiny presets" in err


def test_targets_of_a_local_model_are_those_training_checks(run_cli, tmp_path: Path) -> None:
    """From config.json alone (no weights there), with the class dsft builds: a remote-code DeepSeek-MoE is not
    shown as the planner's Qwen2-MoE look-alike (fused experts it does not have), it is refused with the reason."""
    from dsft.models.presets import real_model_config

    v2 = tmp_path / "v2"
    v2.mkdir()
    small = {"hidden_size": 64, "intermediate_size": 128, "moe_intermediate_size": 32, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 4, "n_routed_experts": 4, "num_experts_per_tok": 2,
             "first_k_dense_replace": 1, "vocab_size": 512}
    (v2 / "config.json").write_text(json.dumps({**real_model_config("deepseek-v2-lite"), **small, "kv_lora_rank": 16,
                                                 "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16}))
    code, out, err = run_cli(["models", "targets", str(v2)])
    assert code == 0, err
    assert "q_proj" in json.loads(out)["target_modules"] and "q_a_proj" not in json.loads(out)["target_modules"]
    moe = tmp_path / "moe"
    moe.mkdir()
    (moe / "config.json").write_text(json.dumps({**real_model_config("deepseek-moe-16b"), **small}))
    code, out, err = run_cli(["models", "targets", str(moe)])
    assert code == 2 and "no native transformers class (remote code)" in err and "target_parameters" not in out


def test_list_table_shows_every_name_and_hub_id_whole_at_80_columns(run_cli, monkeypatch) -> None:
    """The names are what a user types into model.name_or_path or `dsft plan --model`: cut to
    `tiny-r1-distill-…` or `deepseek-ai/de…` they cannot be read off the table."""
    from dsft.models.presets import REAL_MODEL_FACTS

    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = run_cli(["models", "list"])
    assert code == 0 and "…" not in out
    for name in [*TINY_PRESETS, *REAL_MODEL_PRESETS, *(f.hub_id for f in REAL_MODEL_FACTS.values())]:
        assert name in out, name
