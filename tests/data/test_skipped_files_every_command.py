"""Every command that reads a data directory says which of its files it skips, being of a type dsft does not read,
in the words of `dsft data prepare` (dsft.data.input_checks.directory_skip_warnings): inspect, eval --data,
augment, distill and train read such a directory whole and skipped them without a word."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SKIPPED = "skipped 2 files of types dsft does not read (.tsv, .txt; it reads .jsonl, .json, .csv, .parquet): " \
          "notes.txt, rows.tsv"


def _data_dir(tmp: Path) -> Path:
    data = tmp / "data"
    data.mkdir()
    (data / "qa.jsonl").write_text("".join(json.dumps({"prompt": f"q{i}", "completion": "a"}) + "\n" for i in range(3)))
    for name in ("notes.txt", "rows.tsv", ".DS_Store"):
        (data / name).write_text("x")
    return data


def test_inspect_warns_of_the_files_of_a_directory_it_skips(tmp_path: Path, run_cli) -> None:
    data = _data_dir(tmp_path)
    code, _, err = run_cli(["data", "inspect", str(data), "--tokenizer", "deepseek", "--template", "deepseek-v3"])
    assert code == 0, err
    assert f"warning: {data}: {SKIPPED}" in err, err
    code, _, err = run_cli(["data", "inspect", str(data / "qa.jsonl"), "--tokenizer", "deepseek",
                            "--template", "deepseek-v3"])
    assert code == 0 and "warning" not in err, err


def test_inspect_of_a_prepared_directory_reads_its_train_split_and_warns_of_nothing(tmp_path: Path, run_cli) -> None:
    data, out = _data_dir(tmp_path), tmp_path / "prepared"
    code, _, err = run_cli(["data", "prepare", str(data), "--out", str(out), "--tokenizer", "deepseek",
                            "--set", "data.val_ratio=0"])
    assert code == 0, err
    code, _, err = run_cli(["data", "inspect", str(out), "--tokenizer", "deepseek", "--template", "deepseek-v3"])
    assert code == 0 and "warning" not in err, err  # data_report.md is the preparation's, not skipped data


def _stop_at(monkeypatch, module: str, name: str) -> None:
    """Replace the command's work (``module.name``) with a refusal, so a test sees what the command said before it."""
    import importlib

    from dsft.errors import DsftError

    def stop(*args, **kwargs):
        raise DsftError("stopped where the work begins")

    monkeypatch.setattr(importlib.import_module(module), name, stop)


def test_eval_warns_of_the_files_of_its_data_directory_it_skips(tmp_path: Path, run_cli, tiny_model_dir,
                                                                  monkeypatch) -> None:
    data = _data_dir(tmp_path)
    _stop_at(monkeypatch, "dsft.eval.evaluate", "evaluate_model")
    model = str(tiny_model_dir("tiny-deepseek-v3"))
    code, _, err = run_cli(["eval", model, "--data", str(data), "--out", str(tmp_path / "eval")])
    assert code == 2 and "stopped where the work begins" in err, err  # every check passed
    assert f"warning: --data: {data}: {SKIPPED}" in err, err
    # A refusal comes alone: before, the warning came first and the missing model after it.
    code, _, err = run_cli(["eval", "./no-such-model", "--data", str(data), "--out", str(tmp_path / "eval")])
    assert code == 2 and "no-such-model" in err and "warning" not in err, err


def test_augment_warns_of_the_files_of_an_input_directory_it_skips(tmp_path: Path, run_cli) -> None:
    data = _data_dir(tmp_path)
    code, _, err = run_cli(["data", "augment", str(data), "--out", str(tmp_path / "aug"),
                            "--set", "data.augment.synonym_copies=1"])
    assert code == 0, err
    assert f"warning: {data}: {SKIPPED}" in err, err


def test_augment_names_the_data_train_key_of_a_directory_from_the_config(tmp_path: Path, run_cli) -> None:
    data = _data_dir(tmp_path)
    code, _, err = run_cli(["data", "augment", "--out", str(tmp_path / "aug"), "--set", f"data.train=[{data}]",
                            "--set", "data.augment.synonym_copies=1"])
    assert code == 0, err
    assert f"warning: data.train: {data}: {SKIPPED}" in err, err


def test_distill_warns_of_the_files_of_an_input_directory_it_skips(tmp_path: Path, run_cli) -> None:
    data = _data_dir(tmp_path)
    code, _, err = run_cli(["data", "distill", str(data), "--out", str(tmp_path / "distilled"),
                            "--base-url", "http://127.0.0.1:9/v1", "--model", "teacher"])
    assert code != 0 and "Traceback" not in err, err  # no teacher answers there
    assert f"warning: {data}: {SKIPPED}" in err, err


@pytest.mark.parametrize("key", ["train", "val"])
def test_train_warns_of_the_files_of_a_data_directory_its_config_names(tmp_path: Path, run_cli, key: str,
                                                                       tiny_model_dir, monkeypatch) -> None:
    data = _data_dir(tmp_path)
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"prompt": "q", "completion": "a"}) + "\n")
    train, val = (data, other) if key == "train" else (other, data)
    _stop_at(monkeypatch, "dsft.training.run", "run_training")
    config = tmp_path / "config.yaml"
    for model, said in ((tiny_model_dir("tiny-deepseek-v3"), "stopped where the work begins"),
                        ("./no-such-model", "no-such-model")):
        config.write_text(f"model:\n  name_or_path: {model}\ndata:\n  train: [{train}]\n  val: [{val}]\n")
        code, _, err = run_cli(["train", str(config), "--out", str(tmp_path / "run")])
        assert code == 2 and said in err and "Traceback" not in err, err
        # Said once every check has passed; a refusal (the missing model) comes alone, where it came after it.
        assert (f"warning: data.{key}: {data}: {SKIPPED}" in err) == (model != "./no-such-model"), err


def _full(tmp: Path) -> str:
    """A non-empty directory that holds no earlier output of any command: refused as --out."""
    (tmp / "full").mkdir()
    (tmp / "full" / "mine.txt").write_text("x")
    return str(tmp / "full")


# A refusal that needs no record read comes alone: before, the skipped-files warning came first, so the user read a
# warning about notes.txt and rows.tsv, then the real reason (nothing to do, --out taken, an input missing).
REFUSED_ALONE = [
    ("augment-nothing-to-do", lambda t, d: ["data", "augment", d, "--out", str(t / "o")], "data.augment: nothing to do"),
    ("augment-out-taken", lambda t, d: ["data", "augment", d, "--out", _full(t), "--set",
                                        "data.augment.synonym_copies=1"], "directory is not empty"),
    ("augment-input-missing", lambda t, d: ["data", "augment", d, str(t / "absent.jsonl"), "--out", str(t / "o"),
                                            "--set", "data.augment.synonym_copies=1"], "absent.jsonl: no such file"),
    ("distill-no-endpoint", lambda t, d: ["data", "distill", d, "--out", str(t / "o")], "data.distill.endpoint: set"),
    ("distill-out-taken", lambda t, d: ["data", "distill", d, "--out", _full(t), "--base-url", "http://127.0.0.1:9/v1",
                                        "--model", "teacher"], "directory is not empty"),
    ("prepare-out-taken", lambda t, d: ["data", "prepare", d, "--out", _full(t), "--tokenizer", "deepseek"],
     "directory is not empty"),
    ("eval-model-missing", lambda t, d: ["eval", "./no-such-model", "--data", d, "--out", str(t / "o")],
     "no-such-model"),
    ("compare-tuned-missing", lambda t, d: ["compare", "--tuned", "./no-such-model", "--base", "tiny-deepseek-v3",
                                            "--data", d, "--out", str(t / "o")], "no-such-model"),
    ("prepare-tokenizer-missing", lambda t, d: ["data", "prepare", d, "--out", str(t / "o"), "--tokenizer",
                                                "./no-such-model"], "--tokenizer: model './no-such-model'"),
]


@pytest.mark.parametrize("build, expected", [c[1:] for c in REFUSED_ALONE], ids=[c[0] for c in REFUSED_ALONE])
def test_a_refusal_comes_alone_with_no_skipped_files_warning_before_it(tmp_path: Path, run_cli, build,
                                                                       expected: str) -> None:
    code, _, err = run_cli(build(tmp_path, str(_data_dir(tmp_path))))
    assert code == 2 and expected in err and "Traceback" not in err, err
    assert "warning" not in err and err.count("error:") == 1, err
    assert not (tmp_path / "o").exists()
