"""One data file named twice in one list (``data.train: [a.jsonl, a.jsonl]``, ``./a.jsonl`` beside ``a.jsonl``, a
link to it, a directory holding it and a link to it) was read twice without a word, every record of it doubled
(or, with deduplication on, half of them counted as removed duplicates). It is refused, naming the key and both
entries, before anything heavy loads; training data is weighted in data.mix."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cli_in_subprocess import run_dsft

MIX_HINT = "to give a file more weight than the others, name it in data.mix with a ratio instead"


def _records(tmp: Path) -> None:
    """a.jsonl with four records, and link.jsonl, a symbolic link to it."""
    (tmp / "a.jsonl").write_text("".join(json.dumps({"prompt": f"q{i}", "completion": f"a{i}"}) + "\n"
                                         for i in range(4)))
    os.symlink("a.jsonl", tmp / "link.jsonl")


def _named(second: str) -> str:
    """How the refusal names a.jsonl and ``second``."""
    if second == "a.jsonl":
        return "a.jsonl is named twice"
    return f"a.jsonl and {second} are one {'file' if second == 'link.jsonl' else 'path'}"


@pytest.mark.parametrize("second", ["a.jsonl", "./a.jsonl", "link.jsonl"])
@pytest.mark.parametrize("command", ["train", "prepare", "prepare-inputs"])
def test_a_training_file_named_twice_is_refused_before_anything_loads(tmp_path: Path, command: str,
                                                                      second: str) -> None:
    _records(tmp_path)
    (tmp_path / "c.yaml").write_text(json.dumps({"data": {"train": ["a.jsonl", second]}}))
    args = {"train": ["train", "c.yaml", "--out", "out"],
            "prepare": ["data", "prepare", "--config", "c.yaml", "--out", "out"],
            "prepare-inputs": ["data", "prepare", "a.jsonl", second, "--out", "out"]}[command]
    code, heavy, err = run_dsft(args, tmp_path)
    assert code == 2 and "Traceback" not in err, err
    key = "" if command == "prepare-inputs" else "data.train: "
    assert f"{key}{_named(second)}: it would be read twice, each of its records doubled; name it once" in err, err
    assert MIX_HINT in err, err
    assert not heavy and not (tmp_path / "out").exists(), (heavy, err)


@pytest.mark.parametrize("second", ["a.jsonl", "./a.jsonl", "link.jsonl"])
def test_config_show_refuses_a_file_named_twice_as_train_does(tmp_path: Path, second: str) -> None:
    """``dsft config show`` named a path the config writes twice but read no data path, so a link to a file already
    named passed it while ``dsft train`` refused it; it checks the data paths as train does, importing nothing
    heavy."""
    _records(tmp_path)
    (tmp_path / "c.yaml").write_text(json.dumps({"data": {"train": ["a.jsonl"], "val": ["a.jsonl", second]}}))
    code, heavy, err = run_dsft(["config", "show", "c.yaml"], tmp_path)
    assert code == 2 and "Traceback" not in err, err
    assert f"data.val: {_named(second)}: it would be read twice" in err, err
    assert MIX_HINT not in err, err  # weighting is for training data
    assert not heavy, heavy


def test_config_show_refuses_a_missing_data_file_as_train_does(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(json.dumps({"data": {"train": ["absent.jsonl"]}}))
    code, heavy, err = run_dsft(["config", "show", "c.yaml"], tmp_path)
    assert code == 2 and "Traceback" not in err, err
    assert "data.train: absent.jsonl: no such file or directory" in err, err
    assert not heavy, heavy


def test_a_directory_holding_a_file_and_a_link_to_it_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    _records(tmp_path / "data")
    (tmp_path / "c.yaml").write_text(json.dumps({"data": {"train": ["data"]}}))
    code, _, err = run_dsft(["data", "prepare", "--config", "c.yaml", "--out", "out"], tmp_path)
    assert code == 2 and "Traceback" not in err, err
    assert ("data.train: data/a.jsonl (in data) and data/link.jsonl (in data) are one file: it would be read twice, "
            "each of its records doubled; leave one of them out of data, or name the files to read") in err, err
    assert not (tmp_path / "out").exists()
