"""A data file named with a trailing '/' (``data.jsonl/``) is refused naming the key or parameter and the path. A
trailing slash names a directory (``open("data.jsonl/")``, ``cat`` and ``ls`` fail: Not a directory), but ``Path``
drops it, so dsft read the file as if the slash were not there. A directory with one (``data/``) is read as before."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_in_subprocess import run_dsft


def _data(folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / "a.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"q{i}", "completion": f"a{i}"}) + "\n" for i in range(4)))
    return path


def _said(path: Path, name: str) -> str:
    return f"{name}{path}/: a file named with a trailing '/', which names a directory; write {path}"


@pytest.mark.parametrize("key", ["data.train", "data.val", "data.test", "data.mix"])
def test_a_config_key_naming_a_file_with_a_trailing_slash_is_refused(tmp_path: Path, run_cli, key: str) -> None:
    data, other = _data(tmp_path), _data(tmp_path / "other")
    value = f"[{{path: {other}/, ratio: 0.2}}]" if key == "data.mix" else f"[{other}/]"
    args = ["data", "prepare", "--out", str(tmp_path / "o"), "--tokenizer", "deepseek", "--set", f"{key}={value}"]
    code, _, err = run_cli(args if key == "data.train" else [*args, "--set", f"data.train=[{data}]"])
    said = " ".join(err.split())
    assert code == 2 and "Traceback" not in err, err
    named = "data.mix.0.path: " if key == "data.mix" else f"{key}: "
    assert _said(other, named) in said, said
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args, name", [
    (["data", "prepare", "DATA/", "--out", "OUT"], "INPUTS "),
    (["data", "inspect", "DATA/", "--template", "deepseek-r1", "--tokenizer", "deepseek"], "SOURCE "),
    (["eval", "tiny-deepseek-v3", "--data", "DATA/", "--out", "OUT"], "--data "),
], ids=["prepare", "inspect", "eval"])
def test_a_data_file_with_a_trailing_slash_on_the_command_line_is_refused(tmp_path: Path, args: list[str],
                                                                          name: str) -> None:
    data = _data(tmp_path / "d")
    argv = [arg.replace("DATA", str(data)).replace("OUT", str(tmp_path / "o")) for arg in args]
    code, heavy, err = run_dsft(argv, tmp_path)
    assert code == 2 and "Traceback" not in err, err
    assert _said(data, name) in err, err
    assert not heavy and not (tmp_path / "o").exists()


def test_train_refuses_it_before_torch(tmp_path: Path) -> None:
    data = _data(tmp_path / "d")
    (tmp_path / "c.yaml").write_text(json.dumps({"data": {"train": [f"{data}/"]}}))
    code, heavy, err = run_dsft(["train", "c.yaml", "--out", "run"], tmp_path)
    assert code == 2 and _said(data, "data.train: ") in err, err
    assert not heavy and not (tmp_path / "run").exists()


def test_a_relevance_reference_with_a_trailing_slash_is_refused(tmp_path: Path, run_cli) -> None:
    references = tmp_path / "refs.txt"
    references.write_text("水库的总库容与防洪调度。\n")
    code, _, err = run_cli(["data", "prepare", str(_data(tmp_path / "d")), "--out", str(tmp_path / "o"),
                            "--tokenizer", "deepseek", "--set", f"data.clean.relevance_references=[{references}/]",
                            "--set", "data.clean.relevance_min=0.1"])
    assert code == 2 and _said(references, "data.clean.relevance_references: ") in " ".join(err.split()), err


def test_a_directory_with_a_trailing_slash_is_read(tmp_path: Path, run_cli) -> None:
    folder = _data(tmp_path / "d").parent
    code, stdout, err = run_cli(["data", "prepare", f"{folder}/", "--out", str(tmp_path / "o"), "--tokenizer",
                                 "deepseek", "--set", "data.val_ratio=0"])
    assert code == 0, err
    assert json.loads((tmp_path / "o" / "data_report.json").read_text())["read"] == 4
