"""A preparation never writes over the user's own files: an --out (or a run's data/ directory) holding the
input, or files of the prepared names that no preparation wrote, is refused before anything is written,
and the files are left as they were. Rewriting an earlier preparation is still the rerun."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

RECORDS = [{"prompt": f"水库{i}的总库容是多少？", "completion": f"{i}亿立方米"} for i in range(12)]


def _user_data(directory: Path) -> dict[Path, bytes]:
    """``directory`` with the user's own train.jsonl and val.jsonl; their bytes by path."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "train.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in RECORDS[:10]))
    (directory / "val.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in RECORDS[10:]))
    return {path: path.read_bytes() for path in directory.iterdir()}


def _unchanged(before: dict[Path, bytes], directory: Path) -> None:
    assert {path: path.read_bytes() for path in directory.rglob("*") if path.is_file()} == before


def test_prepare_refuses_an_out_that_holds_its_input(tmp_path: Path, run_cli) -> None:
    data = tmp_path / "mydata"
    before = _user_data(data)
    code, _, err = run_cli(["data", "prepare", str(data / "train.jsonl"), "--out", str(data), "--tokenizer", "deepseek"])
    message = " ".join(err.split())
    assert code == 2 and "Traceback" not in err, err
    assert f"--out {data}: would overwrite the input {data / 'train.jsonl'} with the prepared train.jsonl" \
           in message, message
    _unchanged(before, data)


def test_prepare_refuses_an_out_holding_the_users_files(tmp_path: Path, run_cli) -> None:
    data = tmp_path / "mydata"
    before = _user_data(data)
    elsewhere = tmp_path / "input.jsonl"
    elsewhere.write_text(json.dumps(RECORDS[0], ensure_ascii=False) + "\n")
    code, _, err = run_cli(["data", "prepare", str(elsewhere), "--out", str(data), "--tokenizer", "deepseek"])
    message = " ".join(err.split())
    assert code == 2 and "Traceback" not in err, err
    assert f"--out {data}: would overwrite {data / 'train.jsonl'}, {data / 'val.jsonl'}, not written by a " \
           "preparation" in message, message
    _unchanged(before, data)


def test_prepare_refuses_rereading_its_own_output_below_an_input_directory(tmp_path: Path, run_cli) -> None:
    data = tmp_path / "mydata"
    _user_data(data)
    out = data / "prepared"
    before = {path: path.read_bytes() for path in data.rglob("*") if path.is_file()}
    code, _, err = run_cli(["data", "prepare", str(data), "--out", str(out), "--tokenizer", "deepseek"])
    assert code == 2 and f"--out {out}: inside {data}, which the input reads whole" in " ".join(err.split()), err
    assert not out.exists()
    _unchanged(before, data)


@pytest.mark.parametrize("glob", ["mydata/**/*.jsonl", "mydata/**", "*/**/train.jsonl"])
def test_prepare_refuses_an_out_its_input_glob_would_read_back(tmp_path: Path, run_cli, monkeypatch, glob: str) -> None:
    """Only an --out inside an input directory was refused: with a glob reaching it, the preparation went ahead,
    and the next one with the same glob read its splits, rejects and report as training data."""
    monkeypatch.chdir(tmp_path)
    data = Path("mydata")
    before = _user_data(data)
    out = data / "prepared"
    loads = []
    monkeypatch.setattr("dsft.cli.data.load_tokenizer_for", lambda *args: loads.append(args))
    code, _, err = run_cli(["data", "prepare", glob, "--out", str(out), "--tokenizer", "deepseek"])
    message = " ".join(err.split())
    assert code == 2 and "Traceback" not in err, err
    assert f"--out {out}: within reach of {glob}, which the input reads (it would match {out / 'train.jsonl'})" \
           in message, message
    assert not out.exists() and not loads
    _unchanged(before, data)


def test_prepare_into_a_folder_its_input_glob_does_not_reach_still_works(tmp_path: Path, run_cli) -> None:
    data = tmp_path / "mydata"
    _user_data(data)
    code, _, err = run_cli(["data", "prepare", f"{data}/*.jsonl", "--out", str(data / "prepared"), "--tokenizer",
                            "deepseek"])
    assert code == 0, err
    assert (data / "prepared" / "train.jsonl").is_file()


def test_rerunning_a_preparation_into_its_own_directory_still_works(tmp_path: Path, run_cli) -> None:
    data = tmp_path / "mydata"
    _user_data(data)
    out = tmp_path / "prepared"
    for _ in range(2):
        code, _, err = run_cli(["data", "prepare", str(data / "train.jsonl"), "--out", str(out),
                                "--tokenizer", "deepseek"])
        assert code == 0, err
    assert (out / "train.jsonl").is_file() and (out / "data_report.json").is_file()


def test_train_refuses_a_run_directory_whose_data_holds_the_input(tmp_path: Path, run_cli) -> None:
    project = tmp_path / "project"
    before = _user_data(project / "data")
    config = project / "config.yaml"
    config.write_text(f"model: {{name_or_path: tiny-deepseek-v3}}\ndata: {{train: [{project / 'data' / 'train.jsonl'}]}}\n")
    before[config] = config.read_bytes()
    code, _, err = run_cli(["train", str(config), "--out", str(project)])
    message = " ".join(err.split())
    assert code == 2 and "Traceback" not in err, err
    assert f"--out {project}: would overwrite the input {project / 'data' / 'train.jsonl'} with the prepared " \
           "train.jsonl" in message, message
    _unchanged(before, project)


def test_prepare_refuses_a_non_empty_out_of_the_users_unless_overwrite(tmp_path: Path, run_cli) -> None:
    """The output-directory rule: a non-empty --out holding no earlier preparation (here only the user's notes) is
    refused before anything loads; with --overwrite the preparation is written and the notes stay."""
    data = tmp_path / "mydata"
    _user_data(data)
    out = tmp_path / "project"
    out.mkdir()
    (out / "notes.txt").write_text("my notes\n")
    args = ["data", "prepare", str(data / "train.jsonl"), "--out", str(out), "--tokenizer", "deepseek"]
    code, _, err = run_cli(args)
    message = " ".join(err.split())
    assert code == 2 and "Traceback" not in err, err
    assert f"--out {out}: directory is not empty and holds no data_report.json" in message and "--overwrite" in message
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    code, _, err = run_cli([*args, "--overwrite"])
    assert code == 0, err
    assert (out / "data_report.json").is_file() and (out / "notes.txt").read_text() == "my notes\n"


def test_overwrite_replaces_files_of_the_prepared_names_but_never_an_input(tmp_path: Path, run_cli) -> None:
    data = tmp_path / "mydata"
    before = _user_data(data)
    elsewhere = tmp_path / "input.jsonl"
    elsewhere.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in RECORDS))
    code, _, err = run_cli(["data", "prepare", str(data / "train.jsonl"), "--out", str(data), "--tokenizer", "deepseek",
                            "--overwrite"])
    assert code == 2 and "would overwrite the input" in " ".join(err.split()), err
    _unchanged(before, data)
    code, _, err = run_cli(["data", "prepare", str(elsewhere), "--out", str(data), "--tokenizer", "deepseek",
                            "--overwrite"])
    assert code == 0, err  # the user's train.jsonl / val.jsonl of the prepared names: replaced, as asked
    assert (data / "data_report.json").is_file()


def test_a_preparation_that_failed_on_a_bad_record_can_be_rerun(tmp_path: Path, run_cli) -> None:
    """data.on_error=fail writes rejects.jsonl and stops before the report: the rerun (the record fixed, or skipped)
    was refused as 'would overwrite OUT/rejects.jsonl, not written by a preparation'."""
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in [*RECORDS, {"prompt": "no answer"}]))
    out = tmp_path / "prep"
    command = ["data", "prepare", str(source), "--out", str(out), "--tokenizer", "deepseek"]
    code, _, err = run_cli([*command, "--set", "data.on_error=fail"])
    assert code == 2 and (out / "rejects.jsonl").is_file(), err
    code, _, err = run_cli(command)
    assert code == 0, err
    assert json.loads((out / "data_report.json").read_text(encoding="utf-8"))["rejected"] == 1
