"""`dsft config show` and `dsft launch` name the settings a run will not apply, as `dsft train` does: on stderr,
one line each, so stdout stays the config (or the files written)."""

from __future__ import annotations

from pathlib import Path

import yaml

from dsft.config import DsftConfig

LORA_UNDER_FULL = ("lora.r=8: not applied; train.method=full trains every weight, with no adapter (set "
                   "train.method=lora or qlora to use it, or remove the key)")
BETA_UNDER_SFT = ("preference.beta=0.2 (read by dpo, kto, orpo): not applied; train.objective=sft does not read it "
                  "(set train.objective to one that does to use it, or remove the key)")


def _dpo_config(tmp_path: Path) -> Path:
    config = tmp_path / "dpo.yaml"
    config.write_text("train: {objective: dpo, method: lora}\npreference: {beta: 0.2}\nlora: {r: 8}\n")
    return config


def test_config_show_says_what_is_not_applied_on_stderr(tmp_path: Path, run_cli) -> None:
    code, out, err = run_cli(["config", "show", str(_dpo_config(tmp_path)), "--set", "train.objective=sft",
                              "--set", "train.method=full"])
    assert code == 0, err
    assert err.splitlines() == [LORA_UNDER_FULL, BETA_UNDER_SFT]
    shown = DsftConfig.model_validate(yaml.safe_load(out))  # stdout is the config alone
    assert (shown.train.objective, shown.train.method, shown.preference.beta) == ("sft", "full", 0.2)
    # Its own output, shown again (every key listed), says the same: compared with the defaults, not "written".
    (tmp_path / "shown.yaml").write_text(out)
    assert run_cli(["config", "show", str(tmp_path / "shown.yaml")])[2].splitlines() == [LORA_UNDER_FULL,
                                                                                        BETA_UNDER_SFT]


def test_config_show_says_nothing_where_everything_applies(tmp_path: Path, run_cli) -> None:
    code, out, err = run_cli(["config", "show", str(_dpo_config(tmp_path))])
    assert (code, err) == (0, "")
    (tmp_path / "shown.yaml").write_text(out)
    assert run_cli(["config", "show", str(tmp_path / "shown.yaml")])[1:] == (out, "")


def test_launch_says_what_the_jobs_will_not_apply(tmp_path: Path, run_cli) -> None:
    config = tmp_path / "sft.yaml"
    config.write_text("train: {objective: sft, zero_stage: 3}\npreference: {beta: 0.2}\n")
    code, out, err = run_cli(["launch", str(config), "--out", str(tmp_path / "job"), "--nodes", "1",
                              "--gpus-per-node", "1"])
    assert code == 0, err
    # One GPU of a cluster with CUDA and DeepSpeed applies ZeRO-3: only the preference setting is not applied.
    assert err.splitlines()[0] == BETA_UNDER_SFT
    assert err.splitlines()[1:] == ["data: the config names none (data.train or data.prepared_dir), so no data was "
                                    "checked; the job's `dsft train` refuses it until one is set (in the config or "
                                    "with --set)"]
    assert all(Path(line).is_file() for line in out.splitlines())
