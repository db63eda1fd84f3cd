"""A wrong ``lora.targets`` is refused before the run directory is written or the data prepared: one message
naming the key, the bad name and the names the model has, checked on the model's weightless skeleton."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dsft.config import load_config
from dsft.errors import DsftError
from dsft.models import skeleton
from dsft.models.skeleton import check_lora_targets
from dsft.training.run import run_training

from cli_in_subprocess import ROOT, run_dsft
from preference_pairs import write_pairs
from tiny_runs import make_cfg, write_data

V3_MODULES = "down_proj, gate_proj, kv_a_proj_with_mqa, kv_b_proj, o_proj, q_a_proj, q_b_proj, up_proj"


def _train(run_cli, tmp_path: Path, *sets: str) -> tuple[int, str, Path]:
    config = tmp_path / "config.yaml"
    config.write_text("{}\n", encoding="utf-8")
    run = tmp_path / "run"
    args = ["train", str(config), "--out", str(run), "--set", "train.max_steps=1", "--set", "train.max_seq_len=128"]
    for override in sets:
        args += ["--set", override]
    code, out, err = run_cli(args)
    return code, out + err, run


def test_train_refuses_a_mistyped_target_before_the_run_directory(run_cli, tmp_path: Path, tiny_model_dir) -> None:
    tiny_model_dir("tiny-deepseek-v3")  # the session cache (DSFT_CACHE)
    data = write_data(tmp_path / "train.jsonl", 8)
    code, said, run = _train(run_cli, tmp_path, "model.name_or_path=tiny-deepseek-v3", f"data.train=[{data}]",
                             "lora.targets=[q_a_proj, kv_b_prj]")
    assert code == 2, said
    assert "lora.targets: 'kv_b_prj' matches no adaptable Linear" in said and "did you mean 'kv_b_proj'" in said
    assert f"adaptable modules: {V3_MODULES}" in said and "DeepseekV3ForCausalLM" in said
    assert "Traceback" not in said
    assert not run.exists()  # no config.yaml, no prepared data left behind


def test_dpo_refuses_a_mistyped_target_before_the_run_directory(run_cli, tmp_path: Path, tiny_model_dir) -> None:
    tiny_model_dir("tiny-r1-distill-qwen")
    data = write_pairs(tmp_path / "pairs.jsonl", 4)
    code, said, run = _train(run_cli, tmp_path, "model.name_or_path=tiny-r1-distill-qwen", "train.objective=dpo",
                             f"data.train=[{data}]", "lora.targets=q_proj,v_prj")
    assert code == 2, said
    assert "lora.targets: 'v_prj' matches no adaptable Linear" in said and "Qwen2ForCausalLM" in said
    assert not run.exists()


@pytest.mark.parametrize("method", ["lora", "qlora"])
@pytest.mark.parametrize("objective", ["sft", "grpo"])
def test_lora_and_qlora_targets_are_checked_on_the_skeleton(method: str, objective: str) -> None:
    base = ["model.name_or_path=tiny-r1-distill-qwen", f"train.method={method}", f"train.objective={objective}"]
    with pytest.raises(DsftError) as refused:
        check_lora_targets(load_config(None, [*base, "lora.targets=[q_proj, vproj]"]))
    message = str(refused.value)
    assert "lora.targets: 'vproj' matches no adaptable Linear" in message and "did you mean 'v_proj'" in message
    assert "adaptable modules: down_proj, gate_proj, k_proj, o_proj, q_proj, up_proj, v_proj" in message
    check_lora_targets(load_config(None, [*base, "lora.targets=[q_proj, v_proj]"]))


def test_a_full_fine_tune_reads_no_lora_key() -> None:
    check_lora_targets(load_config(None, ["model.name_or_path=tiny-r1-distill-qwen", "train.method=full",
                                          "lora.targets=[vproj]"]))


def test_expert_targets_with_dropout_are_refused_on_the_skeleton() -> None:
    with pytest.raises(DsftError, match="lora.dropout: 0"):
        check_lora_targets(load_config(None, ["model.name_or_path=tiny-deepseek-v3", "lora.dropout=0.1"]))



def _sets(tmp_path: Path) -> list[str]:
    data = write_data(tmp_path / "train.jsonl", 8)
    return ["model.name_or_path=tiny-deepseek-v3", f"data.train=[{data}]", "lora.targets=[q_a_proj, kv_b_prj]"]


def test_config_show_refuses_a_mistyped_target_as_train_does(run_cli, tmp_path: Path, tiny_model_dir) -> None:
    """`dsft config show` printed a config whose lora.targets named no module of the model, exit 0, while `dsft
    train` refused it: the check ran only inside the training stack. Both now say the same, from one check."""
    tiny_model_dir("tiny-deepseek-v3")
    sets = _sets(tmp_path)
    code, out, err = run_cli(["config", "show", *[arg for text in sets for arg in ("--set", text)]])
    shown = " ".join((out + err).split())
    assert code == 2 and out == "", out
    assert "lora.targets: 'kv_b_prj' matches no adaptable Linear" in shown and "did you mean 'kv_b_proj'" in shown
    code, said, _ = _train(run_cli, tmp_path, *sets)
    assert code == 2 and " ".join(said.split()) == shown


# What `dsft train` runs: the modules loaded by the time it exits (the training stack's, beyond the skeleton's).
PROBE = """
import json, sys
from dsft.cli.app import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    print(json.dumps([exc.code, [m for m in ("peft", "trl", "datasets") if m in sys.modules]]))
"""


def test_train_refuses_a_mistyped_target_before_the_training_stack_loads(tmp_path: Path, tiny_model_dir) -> None:
    """The check builds the model on the meta device (torch and transformers); peft, TRL and datasets, which the
    training run imports, are not loaded to refuse it. A config that names no targets imports not even torch."""
    tiny_model_dir("tiny-deepseek-v3")
    sets = _sets(tmp_path)
    args = ["train", "/dev/null", "--out", str(tmp_path / "run"), *[arg for text in sets for arg in ("--set", text)]]
    result = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [2, []], result.stderr
    assert "'kv_b_prj' matches no adaptable Linear" in result.stderr
    code, heavy, _ = run_dsft(["config", "show", "--set", sets[0], "--set", sets[1]], tmp_path)
    assert code == 0 and heavy == []


def _count_skeletons(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names each weightless skeleton is built for, from now on."""
    built: list[str] = []
    build = skeleton.model_skeleton
    monkeypatch.setattr(skeleton, "model_skeleton", lambda name, *a, **k: built.append(str(name)) or build(name, *a, **k))
    return built


def test_train_builds_the_skeleton_once(run_cli, tmp_path: Path, tiny_model_dir, monkeypatch) -> None:
    """`dsft train` checked lora.targets before the training stack loaded, and run_training built the skeleton and
    checked them again: one check a run, the command's."""
    tiny_model_dir("tiny-r1-distill-qwen")
    data = write_data(tmp_path / "train.jsonl", 8)
    built = _count_skeletons(monkeypatch)
    code, said, run = _train(run_cli, tmp_path, "model.name_or_path=tiny-r1-distill-qwen", f"data.train=[{data}]",
                             "lora.targets=[q_proj, v_proj]", "data.val_ratio=0")
    assert code == 0, said
    assert (run / "final" / "adapter_model.safetensors").is_file()
    assert built == ["tiny-r1-distill-qwen"]


def test_run_training_checks_the_targets_of_a_library_caller(tmp_path: Path, tiny_model_dir, monkeypatch) -> None:
    """A library caller of run_training, which no command checked for, is refused before the run directory is
    written, from one skeleton."""
    tiny_model_dir("tiny-deepseek-v3")
    cfg = make_cfg(write_data(tmp_path / "train.jsonl", 8), "tiny-deepseek-v3", "lora.targets=[q_a_proj, kv_b_prj]")
    built = _count_skeletons(monkeypatch)
    with pytest.raises(DsftError, match="'kv_b_prj' matches no adaptable Linear"):
        run_training(cfg, tmp_path / "run")
    assert built == ["tiny-deepseek-v3"] and not (tmp_path / "run").exists()


@pytest.mark.parametrize(("model", "entry", "said"), [
    ("tiny-r1-distill-qwen", "vproj", "; did you mean 'v_proj'?"),  # not also 'q_proj'
    ("tiny-deepseek-v3", "vproj", ""),  # not 'o_proj' or 'kv_b_proj', modules that only share letters with it
    ("tiny-deepseek-v3", "gate", "; did you mean 'gate_proj'?"),  # a name's start alone, as for a config key
])
def test_a_target_is_suggested_only_where_it_is_a_slip(model: str, entry: str, said: str) -> None:
    """The did-you-mean of lora.targets is a config key's (dsft.config.spelling.meant_key): one module it is a slip of,
    else none; every adaptable module is listed either way."""
    with pytest.raises(DsftError) as refused:
        check_lora_targets(load_config(None, [f"model.name_or_path={model}", f"lora.targets=[{entry}]"]))
    line = next(line for line in str(refused.value).splitlines() if f"{entry!r} matches no" in line)
    assert line.endswith("(routers, lm_head and embeddings are never targets)" + said), line
    assert "adaptable modules: " in str(refused.value)
