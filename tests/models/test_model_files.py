"""A local model directory missing files (weights, a shard, the tokenizer) is refused by name before the data is
prepared and before torch loads, by every command that takes a model directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsft.errors import DsftError
from dsft.models.resolve import check_model_files


def model_dir(root: Path, *files: str) -> Path:
    root.mkdir()
    (root / "config.json").write_text("{}")
    for name in files:
        (root / name).write_text("x")
    return root


def test_a_complete_directory_passes_and_names_that_are_no_directory_are_left_alone(tmp_path: Path) -> None:
    check_model_files(model_dir(tmp_path / "m", "model.safetensors", "tokenizer.json"))
    check_model_files(model_dir(tmp_path / "bin", "pytorch_model.bin", "tokenizer.model"))
    check_model_files("tiny-deepseek-v3")
    check_model_files("deepseek-ai/DeepSeek-R1")


@pytest.mark.parametrize(("files", "problem"), [
    (["tokenizer.json"], "no weights (model.safetensors"),
    (["model.safetensors"], "no tokenizer files (tokenizer.json"),
    ([], "no weights"),
])
def test_missing_weights_or_tokenizer_are_named(tmp_path: Path, files: list[str], problem: str) -> None:
    with pytest.raises(DsftError, match="model directory is incomplete") as err:
        check_model_files(model_dir(tmp_path / "m", *files))
    assert problem in str(err.value)


def test_a_shard_the_index_names_but_the_directory_lacks_is_named(tmp_path: Path) -> None:
    root = model_dir(tmp_path / "m", "tokenizer.json", "model-00001-of-00002.safetensors")
    (root / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}))
    with pytest.raises(DsftError) as err:
        check_model_files(root)
    assert "names shard(s) not in the directory: model-00002-of-00002.safetensors" in str(err.value)
    (root / "model-00002-of-00002.safetensors").write_text("x")
    check_model_files(root)


def test_train_and_eval_refuse_a_model_directory_without_weights_before_any_data_is_read(
        tmp_path: Path, run_cli) -> None:
    model = model_dir(tmp_path / "model", "tokenizer.json")
    data = tmp_path / "qa.jsonl"
    data.write_text(json.dumps({"context": "患者主诉持续发热3天", "question": "可能病因有哪些?",
                                "answer": "需考虑上呼吸道感染"}, ensure_ascii=False) + "\n")
    run = tmp_path / "run"
    code, _, err = run_cli(["train", "/dev/null", "--out", str(run), "--set", f"model.name_or_path={model}",
                            "--set", f"data.train=[{data}]"])
    assert code == 2 and "no weights" in err and "Traceback" not in err, err
    assert not run.exists()  # refused before the data was prepared into it
    code, _, err = run_cli(["eval", str(model), "--data", str(data), "--out", str(tmp_path / "eval")])
    assert code == 2 and "no weights" in err and "Traceback" not in err, err
    assert not (tmp_path / "eval").exists()
