"""Data inputs named in the config that exist but are not regular files are refused as such: the message
names the key, the path and what the path is (dsft.disk.not_a_file_reason), never "no such file"."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest


def _directory(path: Path) -> None:
    path.mkdir()


def _device(path: Path) -> None:
    path.symlink_to("/dev/null")  # the name keeps the suffix the reader looks at


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _dangling_link(path: Path) -> None:
    path.symlink_to(path.with_name("moved-away.txt"))


# (id, makes the path, what the message says it is)
NOT_FILES: list[tuple[str, Callable[[Path], None], Callable[[Path], str]]] = [
    ("directory", _directory, lambda path: "is a directory, not a file"),
    ("device", _device, lambda path: "exists but is not a regular file (a device, pipe or socket)"),
    ("fifo", _fifo, lambda path: "exists but is not a regular file (a device, pipe or socket)"),
    ("dangling-link", _dangling_link,
     lambda path: f"a symbolic link to {path.with_name('moved-away.txt')}, which does not exist"),
    ("missing", lambda path: None, lambda path: "no such file or directory"),
]


def _data(tmp: Path) -> str:
    path = tmp / "d.jsonl"
    path.write_text(json.dumps({"prompt": "水库的总库容是多少？", "completion": "十亿立方米"}) + "\n")
    return str(path)


def _prepare_refusal(tmp: Path, run_cli, references: Path) -> str:
    """`dsft data prepare` with ``references`` as data.clean.relevance_references: exit 2 without a traceback, its
    message on one line."""
    code, _, err = run_cli(["data", "prepare", _data(tmp), "--out", str(tmp / "p"), "--tokenizer", "deepseek",
                            "--set", f"data.clean.relevance_references=[{references}]",
                            "--set", "data.clean.relevance_min=0.1"])
    assert code == 2 and "Traceback" not in err, err
    return " ".join(err.split())


@pytest.mark.parametrize("make, reason", [c[1:] for c in NOT_FILES], ids=[c[0] for c in NOT_FILES])
def test_relevance_references_that_are_not_files(tmp_path: Path, run_cli, make, reason) -> None:
    references = tmp_path / "refs.txt"
    make(references)
    message = _prepare_refusal(tmp_path, run_cli, references)
    assert f"data.clean.relevance_references: {references}: {reason(references)}" in message, message


@pytest.mark.parametrize("encoding, said", [
    ("gb18030", "not UTF-8 text (byte 2); it reads as GBK/GB18030 Chinese: save the file as UTF-8"),  # Chinese Notepad
    ("utf-16", "not UTF-8 text; it is UTF-16 text (byte-order mark FF FE)"),  # Notepad's "Unicode"
])
def test_a_relevance_reference_in_another_encoding_is_refused_not_read_as_garbage(tmp_path: Path, run_cli,
                                                                                   encoding: str, said: str) -> None:
    """It was read with its bytes replaced: every record was compared with garbage and removed as off-topic, the
    run stopping at 'no records left to train on' with the first record removed for another reason."""
    references = tmp_path / "refs.txt"
    references.write_bytes("水库的总库容与防洪调度。\n\n水库大坝的安全监测。\n".encode(encoding))
    message = _prepare_refusal(tmp_path, run_cli, references)
    assert f"data.clean.relevance_references: {references}: {said}" in message, message
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("make, reason", [c[1:] for c in NOT_FILES], ids=[c[0] for c in NOT_FILES])
def test_a_cilin_synonym_file_that_is_not_a_file(tmp_path: Path, run_cli, make, reason) -> None:
    cilin = tmp_path / "cilin.txt"
    make(cilin)
    code, _, err = run_cli(["data", "augment", _data(tmp_path), "--out", str(tmp_path / "a"),
                            "--set", "data.augment.synonym_copies=1", "--set", f"data.augment.synonyms_zh={cilin}"])
    message = " ".join(err.split())
    assert code == 2 and "Traceback" not in err, err
    assert f"data.augment.synonyms_zh: {cilin}: {reason(cilin)} (a Cilin synonym file was expected)" in message, message
    assert not (tmp_path / "a").exists()


def test_a_cilin_synonym_file_in_gbk_is_refused_not_a_traceback(tmp_path: Path, run_cli) -> None:
    """HIT's Cilin is distributed in GBK: `dsft data augment` ended in a UnicodeDecodeError traceback."""
    cilin = tmp_path / "cilin.txt"
    cilin.write_bytes("Aa01A01= 人 士 人物\nAa01A02= 人类 生人\n".encode("gb18030"))
    code, _, err = run_cli(["data", "augment", _data(tmp_path), "--out", str(tmp_path / "a"),
                            "--set", "data.augment.synonym_copies=1", "--set", f"data.augment.synonyms_zh={cilin}"])
    message = " ".join(err.split())
    assert code == 2 and "Traceback" not in err, err
    assert f"data.augment.synonyms_zh: {cilin}: not UTF-8 text (byte 9); it reads as GBK/GB18030 Chinese: save the " \
           "file as UTF-8 (e.g. iconv -f GB18030 -t UTF-8 IN > OUT)" in message, message
    assert not (tmp_path / "a").exists()


def test_a_relevance_reference_read_as_data_names_the_key_too(tmp_path: Path, run_cli) -> None:
    code, _, err = run_cli(["data", "prepare", _data(tmp_path), "--out", str(tmp_path / "p"), "--tokenizer", "deepseek",
                            "--set", "data.clean.relevance_references=[/dev/null]",
                            "--set", "data.clean.relevance_min=0.1"])
    message = " ".join(err.split())
    assert code == 2 and "Traceback" not in err, err
    assert "data.clean.relevance_references: /dev/null: exists but is not a regular file" in message, message
