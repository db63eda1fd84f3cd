"""'' given as a path (an unset shell variable) is refused naming the parameter, not read as the current directory."""

from __future__ import annotations

import inspect
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, get_args

import pytest
import typer.main

from cli_in_subprocess import run_dsft
from dsft.cli.app import app
from dsft.errors import DsftError


def _path_parameters() -> list[tuple[tuple[str, ...], Any, list[Any]]]:
    """(command path, the Path parameter, every parameter) of each command, from the click tree typer builds."""
    found = []
    stack: list[tuple[tuple[str, ...], Any]] = [((), typer.main.get_command(app))]
    while stack:
        path, command = stack.pop()
        if getattr(command, "commands", None):
            stack.extend((path + (name,), sub) for name, sub in command.commands.items())
            continue
        annotations = {name: p.annotation for name, p in
                       inspect.signature(command.callback, eval_str=True).parameters.items()}
        for param in command.params:
            annotation = annotations.get(param.name)
            if annotation is Path or Path in get_args(annotation):
                found.append((path, param, command.params))
    return sorted(found, key=lambda case: (case[0], case[1].name))


def _argv(path: tuple[str, ...], target: Any, params: list[Any]) -> tuple[list[str], str]:
    """``dsft PATH ...`` with '' for ``target`` and a placeholder for every other required parameter; the name the
    refusal must use."""
    argv = list(path)
    for param in params:
        if param is not target and not param.required:
            continue
        value = "" if param is target else "x"
        argv += [value] if param.param_type_name == "argument" else [param.opts[0], value]
    name = target.opts[0] if target.param_type_name == "option" else target.name.upper()
    return argv, name


PATH_PARAMETERS = _path_parameters()
MESSAGES = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]


def _parse_refusal(path: Sequence[str], args: list[str]) -> str:
    """What parsing ``dsft PATH... ARGS`` refuses with (make_context runs no command); fails if it parses."""
    command = typer.main.get_command(app)
    for word in path:
        command = command.commands[word]
    with pytest.raises(DsftError) as refused:
        command.make_context(" ".join(path), args)
    return str(refused.value)


def test_every_command_has_path_parameters_to_check() -> None:
    names = {(path, param.name) for path, param, _ in PATH_PARAMETERS}
    assert {(("train",), "config"), (("train",), "out"), (("ui",), "runs"), (("data", "inspect"), "source"),
            (("template", "render"), "messages")} <= names, names


@pytest.mark.parametrize("path, target, params", PATH_PARAMETERS,
                         ids=[f"{' '.join(p)} {t.name}" for p, t, _ in PATH_PARAMETERS])
def test_an_empty_path_is_refused_naming_its_parameter(path, target, params) -> None:
    """typer reads '' as Path(''), the current directory: `dsft train ""` said '.: is a directory', `--out ""`
    wrote into the current directory and `dsft ui --runs ""` served it. Parsed only (make_context runs no command),
    so a command that would start a server or a training run never does."""
    argv, name = _argv(path, target, params)
    assert _parse_refusal(path, argv[len(path):]) == f"{name} '': an empty path names nothing; give a path ('.' for the current directory)"


@pytest.mark.parametrize("args, name", [(["train", ""], "CONFIG"), (["config", "show", ""], "CONFIG")],
                         ids=["train", "config-show"])
def test_an_empty_path_is_refused_before_torch_is_imported(tmp_path: Path, args: list[str], name: str) -> None:
    code, heavy, err = run_dsft(args, tmp_path)
    assert (code, heavy) == (2, []), err
    assert f"{name} '': an empty path names nothing" in err and "Traceback" not in err, err


@pytest.mark.parametrize("args, wanted", [
    (["data", "inspect", "d.jsonl"], "a model directory, a tiny preset, a hub id or 'deepseek'"),
    (["data", "prepare", "d.jsonl", "--out", "o"], "a model directory, a tiny preset, a hub id or 'deepseek'"),
    (["template", "render", "--template", "deepseek-v3", "--messages", "m.json", "--mode", "train"],
     "a tokenizer directory or a tiny preset"),
], ids=["data-inspect", "data-prepare", "template-render"])
def test_an_empty_tokenizer_is_refused_naming_the_flag(tmp_path: Path, args: list[str], wanted: str) -> None:
    """`--tokenizer ""` read as no --tokenizer in the data commands (the config's model tokenized) and as the current
    directory in template render (transformers' message about sentencepiece)."""
    (tmp_path / "d.jsonl").write_text(json.dumps({"messages": MESSAGES}) + "\n")
    (tmp_path / "m.json").write_text(json.dumps(MESSAGES))
    code, heavy, err = run_dsft([*args, "--tokenizer", ""], tmp_path)
    assert (code, heavy) == (2, []), err
    assert f"--tokenizer '': an empty path names nothing; give {wanted}" in err and "Traceback" not in err, err
    assert not (tmp_path / "o").exists()


MODEL = "a model or run directory, a tiny preset or a hub id"
TEXT_CASES = [
    (["eval"], ["", "--data", "d", "--out", "o"], "MODEL_OR_RUN", MODEL),
    (["eval"], ["m", "--data", "d", "--out", "o", "--base-model", ""], "--base-model",
     "a model directory, a hub id or a tiny preset"),
    (["compare"], ["--tuned", "", "--data", "d", "--out", "o"], "--tuned", MODEL),
    (["compare"], ["--tuned", "t", "--base", "", "--data", "d", "--out", "o"], "--base", MODEL),
    (["export"], ["", "--out", "o"], "RUN_OR_MODEL", MODEL),
    (["export"], ["m", "--out", "o", "--base-model", ""], "--base-model", "a model directory, a hub id or a tiny preset"),
    (["serve"], [""], "MODEL_OR_RUN", MODEL),
    (["serve"], ["m", "--base-model", ""], "--base-model", "a model directory, a hub id or a tiny preset"),
    (["chat"], [""], "MODEL_OR_RUN", MODEL),
    (["deploy", "k8s"], ["", "--out", "o"], "MODEL_OR_RUN", MODEL),
    (["train"], ["c.yaml", "--out", "o", "--resume", ""], "--resume", "auto or a checkpoint directory"),
    (["plan"], ["--model", ""], "--model", "a preset, a model directory, a config.json or a hub id"),
    (["bench", "train"], ["--out", "o", "--model", ""], "--model", MODEL),
    (["models", "targets"], [""], "NAME", "a preset, a model directory or a hub id"),
    (["models", "import"], ["", "--out", "o"], "SOURCE", "a .gguf file or ollama:NAME[:TAG]"),
]


@pytest.mark.parametrize("path, args, name, wanted", TEXT_CASES, ids=[f"{' '.join(c[0])} {c[2]}" for c in TEXT_CASES])
def test_an_empty_model_name_is_refused_naming_its_parameter(path: list[str], args: list[str], name: str,
                                                             wanted: str) -> None:
    """A model or checkpoint given as '' was read as the current directory (`deploy k8s ""`: '.: a folder of runs or
    models', `train --resume ""`: '.' checked as a checkpoint), as no value (`compare --base ""`: '--base is
    required', `--base-model ""` ignored), or refused without its name ('empty; name a model ...')."""
    assert _parse_refusal(path, args) == f"{name} '': an empty path names nothing; give {wanted}"


DATA = "a data file, a directory ('.' for the current one) or a glob"
DATA_CASES = [
    (["eval"], ["m", "--data", "", "--out", "o"], "--data"),
    (["compare"], ["--tuned", "t", "--data", "", "--out", "o"], "--data"),
    (["data", "prepare"], ["a.jsonl", "", "--out", "o"], "INPUTS"),
    (["data", "augment"], ["", "--out", "o"], "INPUTS"),
    (["data", "distill"], ["", "--out", "o"], "INPUTS"),
]


@pytest.mark.parametrize("path, args, name", DATA_CASES, ids=[" ".join(c[0]) for c in DATA_CASES])
def test_an_empty_data_input_is_refused_naming_its_parameter(path: list[str], args: list[str], name: str) -> None:
    """'' as --data or an INPUT was refused by the reader without its parameter ("'': an empty path names no data"),
    or, in data distill, only after the endpoint settings were found missing."""
    assert _parse_refusal(path, args) == f"{name} '': an empty path names nothing; give {DATA}"
