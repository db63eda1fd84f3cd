"""Preflight problems that a ``--set`` caused name that ``--set``, in ``dsft train``, ``dsft sweep``, ``dsft demo`` and
``dsft config show`` alike (sweep labelled them with the config file's name, the demo with ``dsft demo``), and so
do the problems found when the config loads (labelled with the config file's name, or ``config``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dsft.config.loader import problems_source
from dsft.training.environment import Environment

PLAIN_CPU = pytest.mark.skipif(Environment().has_cuda() or bool(os.environ.get("WORLD_SIZE")),
                               reason="checks the refusal a CPU-only machine gives a plain command")


def _config(tmp: Path, **eval_keys: object) -> str:
    data = tmp / "d.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"Q{i}?"},
                                                     {"role": "assistant", "content": f"A{i}."}]}) + "\n"
                            for i in range(10)), encoding="utf-8")
    path = tmp / "c.yaml"
    path.write_text(json.dumps({"model": {"name_or_path": "tiny-deepseek-v3"},
                                "data": {"train": [str(data)], "val_ratio": 0.2}, "eval": eval_keys}),
                    encoding="utf-8")
    return str(path)


def _command(name: str, tmp: Path, config: str) -> list[str]:
    return {"train": ["train", config, "--out", str(tmp / "run")],
            "sweep": ["sweep", config, "--grid", "train.lr=1e-5,2e-5", "--out", str(tmp / "sweep")],
            "demo": ["demo", "--out", str(tmp / "demo")],
            "config-show": ["config", "show", config]}[name]


CASES = [pytest.param(command, "eval.metric=nope", "eval.metric: unknown metric 'nope'", id=f"preflight-{command}")
         for command in ("train", "sweep", "demo", "config-show")] + [
    # The launcher refusal of what trains in this process (config show trains nothing).
    pytest.param(command, "train.distributed=deepspeed", "DeepSpeed runs in a launcher's processes", marks=PLAIN_CPU,
                 id=f"launcher-{command}") for command in ("train", "sweep", "demo")] + [
    # A schema problem (a wrong value, an unknown key) a --set caused: it was labelled with the config file's name,
    # which holds no such value.
    pytest.param(command, override, problem, id=f"schema-{command}-{override.split('=')[0]}")
    for command in ("train", "sweep", "config-show")
    for override, problem in (("data.format=conversation", "data.format: Input should be 'auto'"),
                              ("train.learning_rate=1e-5", "train.learning_rate: unknown key; use train.lr"))]


@pytest.mark.parametrize("command, override, problem", CASES)
def test_a_problem_a_set_caused_names_that_set(tmp_path: Path, run_cli, command: str, override: str,
                                               problem: str) -> None:
    code, out, err = run_cli([*_command(command, tmp_path, _config(tmp_path)), "--set", "train.lr=1e-4",
                              "--set", override])
    said = " ".join((out + err).split())
    assert code == 2 and f"--set {override}: 1 problem(s) - " in said and problem in said, said
    assert "c.yaml: " not in said and "dsft demo: " not in said, said
    assert not [p for p in tmp_path.iterdir() if p.name not in ("c.yaml", "d.jsonl")], "refused before any output"


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_problems_of_the_file_and_of_a_set_name_both(tmp_path: Path, run_cli, command: str) -> None:
    config = _config(tmp_path, metrics=["nope"])  # eval.metrics, a key no --set names
    code, out, err = run_cli([*_command(command, tmp_path, config), "--set", "train.lr=1e-4",
                              "--set", "eval.metric=nope"])
    said = " ".join((out + err).split())
    assert code == 2 and f"{config} and --set eval.metric=nope: 2 problem(s)" in said, said
    code, out, err = run_cli([*_command(command, tmp_path, _config(tmp_path, metric="nope")),
                              "--set", "train.lr=1e-4"])
    said = " ".join((out + err).split())
    assert code == 2 and f"{config}: 1 problem(s) - eval.metric: unknown metric 'nope'" in said, said


def test_the_set_that_took_effect_is_named() -> None:
    """A key set twice (the demo's own value, then the user's): the later one is the value the config has."""
    overrides = ["eval.steps=10", "train.lr=1e-4", "eval.steps=7"]
    problems = ["train.save_steps (20) must be a multiple of eval.steps (7) so the best checkpoint is saved"]
    assert problems_source("dsft demo", overrides, problems) == "--set eval.steps=7"
    assert problems_source("c.yaml", overrides, ["eval.metrics: unknown metric 'x'"]) == "c.yaml"  # not eval.metric
    assert problems_source("c.yaml", ["eval.steps=7"], [*problems, "train.lr: must be > 0"]) == \
        "c.yaml and --set eval.steps=7"


@pytest.mark.parametrize("command", ["train", "sweep", "demo", "config-show"])
def test_a_value_a_set_made_invalid_names_that_set(tmp_path: Path, run_cli, command: str) -> None:
    """Load-time problems (the schema's own checks) are labelled as preflight ones: the --set that caused them."""
    code, out, err = run_cli([*_command(command, tmp_path, _config(tmp_path)), "--set", "eval.steps=5",
                              "--set", "train.lr=-1"])
    said = " ".join((out + err).split())
    assert code == 2 and "--set train.lr=-1: 1 problem(s) - train.lr: " in said, said
    assert "c.yaml" not in said and "config: " not in said and "--set eval.steps" not in said, said
    assert not [p for p in tmp_path.iterdir() if p.name not in ("c.yaml", "d.jsonl")], "refused before any output"


def test_a_value_the_file_made_invalid_names_the_file(tmp_path: Path, run_cli) -> None:
    config = _config(tmp_path, steps=-1)  # eval.steps, a key no --set names
    code, out, err = run_cli(["config", "show", config, "--set", "train.lr=-1"])
    said = " ".join((out + err).split())
    assert code == 2 and f"{config} and --set train.lr=-1: 2 problem(s)" in said, said


@pytest.mark.parametrize("override, problem", [
    ("data.test_ratio=0.95", "data: val_ratio + test_ratio must be < 1, got val_ratio=0.2, test_ratio=0.95"),
    # guide 002 without the datagen extra: its min_similarity stays, so the --set is what is wrong
    ("data.clean.semantic.embedding_model=null", ("data.clean.semantic: min_similarity / keep_top_similarity need "
                                                  "embedding_model, got embedding_model=null, min_similarity=0.8")),
    ("data.augment.paraphrase_copies=2", ("data.augment: paraphrase_copies / back_translation need endpoint.base_url "
                                          "and endpoint.model, got paraphrase_copies=2")),
])
def test_a_rule_across_a_section_names_the_set_that_broke_it_and_the_values_it_read(
        tmp_path: Path, run_cli, override: str, problem: str) -> None:
    """A rule over several keys of a section was labelled with the config file, which held nothing wrong, and quoted
    the whole section (every key the file wrote there: train paths, cleaning settings ...) as what it 'got'."""
    config = _config(tmp_path)
    edited = json.loads(Path(config).read_text(encoding="utf-8"))
    edited["data"]["clean"] = {"semantic": {"embedding_model": "multilingual-e5-small", "min_similarity": 0.8}}
    Path(config).write_text(json.dumps(edited), encoding="utf-8")
    code, out, err = run_cli(["config", "show", config, "--set", override])
    said = " ".join((out + err).split())
    assert code == 2 and f"error: --set {override}: 1 problem(s) - {problem}" in said, said
    assert "'train':" not in said and "Traceback" not in said, said


def test_load_time_labels_are_opt_in() -> None:
    """Overrides a program adds (the dashboard's form, the demo's own settings) are no --set the user typed."""
    from dsft.config import load_config
    from dsft.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^config: 1 problem\(s\)"):
        load_config(None, ["train.lr=-1"])
    with pytest.raises(ConfigError, match=r"^--set train.lr=-1: 1 problem\(s\)"):
        load_config(None, ["data.train=[a.jsonl]", "train.lr=-1"], set_flags=["train.lr=-1"])


@pytest.mark.parametrize("grid, label, problem", [
    ("train.lr=1e-5,-1", "--grid train.lr=-1 (trial-001)", "train.lr: Input should be greater than 0"),  # load time
    ("eval.metric=eval_loss,nope", "--grid eval.metric=nope (trial-001)", "eval.metric: unknown metric 'nope'"),
])
def test_a_problem_a_grid_value_caused_names_that_value_and_its_trial(
    tmp_path: Path, run_cli, grid: str, label: str, problem: str,
) -> None:
    config = _config(tmp_path)
    code, out, err = run_cli(["sweep", config, "--grid", grid, "--set", "train.lr=1e-4", "--out", str(tmp_path / "s")])
    said = " ".join((out + err).split())
    assert code == 2 and f"error: {label}: 1 problem(s) - {problem}" in said, said
    assert not (tmp_path / "s").exists(), "refused before any output"


def test_a_grid_point_labels_the_file_and_sets_beside_the_grid_value() -> None:
    assert problems_source("c.yaml", ["eval.steps=7"], ["eval.steps: x", "train.lr: y", "lora.r: z"],
                           grid=["train.lr=-1"], trial="trial-002") == \
        "c.yaml and --set eval.steps=7, --grid train.lr=-1 (trial-002)"
    # A --grid key also given with --set: the grid's value is the one the trial has.
    assert problems_source("c.yaml", ["train.lr=1e-4"], ["train.lr: y"], grid=["train.lr=-1"], trial="trial-000") == \
        "--grid train.lr=-1 (trial-000)"


@pytest.mark.parametrize("command", [["data", "prepare"], ["data", "augment"], ["data", "distill"]])
def test_the_data_commands_name_the_set_too(tmp_path: Path, run_cli, command: list[str]) -> None:
    config = _config(tmp_path)
    data = str(tmp_path / "d.jsonl")
    code, out, err = run_cli([*command, data, "--config", config, "--out", str(tmp_path / "out"),
                              "--set", "data.val_ratio=2"])
    said = " ".join((out + err).split())
    assert code == 2 and "--set data.val_ratio=2: 1 problem(s) - data.val_ratio: " in said, said
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("override, problem", [
    # int() and float() read any script's digits: a full-width 8 set train.max_steps to 8 and ２e-4 set train.lr
    # to 0.0002, values the same text in the config file (and typer, in a flag) is refused for.
    ("train.max_steps=８", "train.max_steps: Input should be a valid integer, unable to parse string as an integer, "
                          "got '８'"),
    ("train.max_steps=１０", "train.max_steps: Input should be a valid integer"),
    ("train.lr=２e-4", "train.lr: Input should be a valid number, unable to parse string as a number, got '２e-4'"),
])
def test_a_set_value_is_read_as_the_config_file_reads_it(tmp_path: Path, run_cli, override: str,
                                                         problem: str) -> None:
    config = _config(tmp_path)
    key, value = override.split("=", 1)
    section, name = key.split(".")
    in_file = tmp_path / "in_file.yaml"
    in_file.write_text(f"{section}:\n  {name}: {value}\n", encoding="utf-8")
    code, out, err = run_cli(["config", "show", str(in_file)])
    assert code == 2 and problem in " ".join((out + err).split()), out + err  # the file: refused
    code, out, err = run_cli(["config", "show", config, "--set", override])
    said = " ".join((out + err).split())
    assert code == 2 and f"error: --set {override}: 1 problem(s) - {problem}" in said, said
    assert "Traceback" not in said
