"""``data.mix``: a general file mixed into the task data at a stated share of the train split."""

import json
from pathlib import Path

import pytest

from dsft.config import load_config
from dsft.data.pipeline import prepare
from dsft.errors import DataError


def _identity(report: dict) -> None:
    assert report["read"] + sum(report["added"].values()) == (
        report["kept"] + report["rejected"] + sum(report["removed"].values()))


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture()
def files(tmp_path: Path, qa, write_jsonl) -> dict[str, Path]:
    """40 task records (reservoir depths), 100 general records and 5 more, all distinct."""
    task = [qa(f"How deep is reservoir number {i} of the northern basin?", f"Reservoir {i} is {i + 3} metres deep.")
            for i in range(40)]
    general = [qa(f"What is {i} plus {i + 1}, written as a number?", f"{i} plus {i + 1} is {2 * i + 1}.")
               for i in range(100)]
    return {"task": write_jsonl(tmp_path / "task.jsonl", task),
            "general": write_jsonl(tmp_path / "general.jsonl", general),
            "small": write_jsonl(tmp_path / "small.jsonl", [qa(f"What is {i} times two?", f"{i} times two is {2 * i}.")
                                                            for i in range(5)])}


def _prepare(tokenizer, files, out: Path, *sets: str):
    cfg = load_config(None, [f"data.train=[{files['task']}]", *sets])
    return prepare(cfg, tokenizer, out)


def _is_general(record: dict) -> bool:
    return "plus" in record["messages"][0]["content"] or "times" in record["messages"][0]["content"]


def test_a_ratio_gives_that_share_of_the_train_split(tmp_path, tokenizer, files) -> None:
    prepared = _prepare(tokenizer, files, tmp_path / "out", "data.val_ratio=0",
                        f"data.mix=[{{path: {files['general']}, ratio: 0.2}}]")
    train = _lines(tmp_path / "out" / "train.jsonl")
    assert len(train) == 50 and sum(map(_is_general, train)) == 10  # 10 of 50 = 0.2
    report = prepared.report
    _identity(report)
    assert report["mix"] == [{"path": str(files["general"]), "ratio": 0.2, "available": 100, "drawn": 10, "repeats": 0}]
    assert report["removed"]["mix_sample"] == 90 and "mix_repeat" not in report["added"]
    assert all("mix_source" not in r.get("meta", {}) for r in train)  # the tag does not leak into the files
    removed = [r for r in _lines(tmp_path / "out" / "removed.jsonl") if r["step"] == "mix_sample"]
    assert len(removed) == 90 and "data.mix" in removed[0]["reason"]
    assert "## Mixed into train (data.mix)" in (tmp_path / "out" / "data_report.md").read_text()


def test_mixed_records_stay_out_of_val_and_count_against_the_final_train_split(tmp_path, tokenizer, files) -> None:
    prepared = _prepare(tokenizer, files, tmp_path / "out", "data.val_ratio=0.1",
                        f"data.mix=[{{path: {files['general']}, ratio: 0.25}}, {{path: {files['small']}, ratio: 0.15}}]")
    assert prepared.report["splits"] == {"train": 60, "val": 4, "test": 0}  # 36 task / (1 - 0.4) = 60
    assert [m["drawn"] for m in prepared.report["mix"]] == [15, 9]
    assert not any(_is_general(c.to_dict()) for c in prepared.splits["val"])
    _identity(prepared.report)


def test_a_small_source_is_repeated_evenly(tmp_path, tokenizer, files) -> None:
    prepared = _prepare(tokenizer, files, tmp_path / "out", "data.val_ratio=0",
                        f"data.mix=[{{path: {files['small']}, ratio: 0.5}}]")
    general = [c.messages[0].content for c in prepared.splits["train"] if _is_general(c.to_dict())]
    assert len(general) == 40 and {general.count(q) for q in set(general)} == {8}  # 5 records x 8
    assert prepared.report["added"]["mix_repeat"] == 35 and "mix_sample" not in prepared.report["removed"]
    _identity(prepared.report)


def test_the_draw_is_deterministic_with_the_seed(tmp_path, tokenizer, files) -> None:
    mix = f"data.mix=[{{path: {files['general']}, ratio: 0.2}}]"
    texts = []
    for run, seed in enumerate((1, 1, 2)):
        _prepare(tokenizer, files, tmp_path / str(run), "data.val_ratio=0.1", mix, f"train.seed={seed}")
        texts.append((tmp_path / str(run) / "train.jsonl").read_text())
    assert texts[0] == texts[1]
    assert texts[0] != texts[2]


def test_a_train_record_tagged_like_a_mixed_one_stays_task_data(tmp_path, tokenizer, qa, write_jsonl) -> None:
    rows = [{**qa(f"Question {i} about the dam?", f"Answer {i}."), "meta": {"mix_source": 0}} for i in range(10)]
    task = write_jsonl(tmp_path / "task.jsonl", rows)
    prepared = prepare(load_config(None, [f"data.train=[{task}]", "data.val_ratio=0"]), tokenizer, tmp_path / "out")
    assert prepared.report["splits"]["train"] == 10


def test_a_source_left_empty_after_cleaning_is_an_error_naming_the_key(tmp_path, tokenizer, files, write_jsonl) -> None:
    empty = write_jsonl(tmp_path / "empty.jsonl", [{"messages": [{"role": "assistant", "content": "no question"}]}])
    with pytest.raises(DataError, match=r"data\.mix: .*empty\.jsonl: no records left") as refused:
        _prepare(tokenizer, files, tmp_path / "out", f"data.mix=[{{path: {empty}, ratio: 0.2}}]")
    # the files the message points to exist and say why: the record has no question
    assert str(tmp_path / "out" / "rejects.jsonl") in str(refused.value)
    assert f"{empty}:1" in (tmp_path / "out" / "rejects.jsonl").read_text()
    assert json.loads((tmp_path / "out" / "data_report.json").read_text())["mix"][0]["available"] == 0


@pytest.mark.parametrize("value, expected", [
    ("[{path: g.jsonl, ratio: 1.5}]", "data.mix.0.ratio"),
    ("[{path: g.jsonl, ratio: 0}]", "data.mix.0.ratio"),
    ("[{path: g.jsonl, ratio: -0.2}]", "data.mix.0.ratio"),
    ("[{path: g.jsonl}]", "data.mix.0.ratio: Field required"),
    ("[{ratio: 0.2}]", "data.mix.0.path: Field required"),
    ("[{path: g.jsonl, ratio: 0.2, weight: 2}]", "data.mix.0.weight: unknown key"),
    ("[g.jsonl]", "data.mix: each entry is {path: FILE, ratio: SHARE}"),
    ("g.jsonl", "data.mix: each entry is {path: FILE, ratio: SHARE}"),
    ("[{path: g.jsonl, ratio: 0.6}, {path: h.jsonl, ratio: 0.5}]", "data.mix: the ratios sum to 1.1"),
])
def test_an_invalid_mix_is_one_message_naming_the_key_and_exit_2(run_cli, value: str, expected: str) -> None:
    code, out, err = run_cli(["config", "show", "--set", f"data.mix={value}"])
    assert code == 2, (out, err)
    assert "Traceback" not in err and expected in " ".join(err.split()), err


def test_mix_with_a_prepared_directory_is_refused(run_cli) -> None:
    code, _, err = run_cli(["config", "show", "--set", "data.mix=[{path: g.jsonl, ratio: 0.2}]",
                            "--set", "data.prepared_dir=prepared"])
    assert code == 2 and "data.mix is applied while data is prepared" in " ".join(err.split())


def test_a_single_mapping_means_one_source() -> None:
    cfg = load_config(None, ["data.mix={path: g.jsonl, ratio: 0.2}"])
    assert [(m.path, m.ratio) for m in cfg.data.mix] == [("g.jsonl", 0.2)]


def test_mix_with_a_preference_objective_is_refused(run_cli) -> None:
    code, _, err = run_cli(["config", "show", "--set", "data.mix=[{path: g.jsonl, ratio: 0.2}]",
                            "--set", "train.objective=dpo"])
    assert code == 2 and "data.mix: mixing applies to SFT data only" in " ".join(err.split())
