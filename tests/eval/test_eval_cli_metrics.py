"""`dsft metrics`: the JSON contract and bad input counted per reason."""

import json
from pathlib import Path

import pytest

from dsft.eval.predictions import score_predictions_file
from dsft.eval.report import fmt, metric_label
from dsft.eval.scoring import Sample, score_samples


def write_lines(path: Path, lines: list[object]) -> Path:
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x, ensure_ascii=False) for x in lines) + "\n")
    return path


def test_metrics_json_contract(tmp_path: Path, run_cli) -> None:
    path = write_lines(tmp_path / "p.jsonl", [
        {"prediction": "<think>\n想想\n</think>\n\n北京。", "reference": "北京"},
        {"prediction": "The total is 1,200.", "reference": "1.2k"},
    ])
    code, out, _ = run_cli(["metrics", "--predictions", str(path), "--json"])
    assert code == 0
    result = json.loads(out)  # exactly one JSON object on stdout
    for key in ("exact_match", "f1", "numeric_accuracy", "rouge1", "rouge2", "rougeL"):
        assert 0.0 <= result[key] <= 1.0, key
    assert 0.0 <= result["bleu"] <= 100.0
    assert result["count"] == 2
    assert result["exact_match"] == 0.5  # 北京 matches after </think>; the English one does not
    assert result["numeric_accuracy"] == 1.0  # 1,200 == 1.2k; 北京 has no number and is skipped
    assert result["think_rate"] == 0.5 and result["unclosed_think_rate"] == 0.0
    assert result["skipped"] == {"numeric_accuracy: reference has no number": 1}


def test_metrics_bad_lines_counted_per_reason(tmp_path: Path, run_cli) -> None:
    path = write_lines(tmp_path / "p.jsonl", [
        {"prediction": "4", "reference": "4"},
        "{not json",
        "[1, 2]",
        {"reference": "x"},
        {"prediction": "x"},
        {"prediction": "4", "reference": "   "},
        {"prediction": ["a"], "reference": "x"},
        {"prediction": "A", "reference": "A", "choices": "ABCD"},
        "",
    ])
    code, out, _ = run_cli(["metrics", "-p", str(path), "--json", "--metrics", "exact_match,numeric_accuracy"])
    assert code == 0
    result = json.loads(out)
    assert result["count"] == 1 and result["exact_match"] == 1.0 and result["numeric_accuracy"] == 1.0
    assert "f1" not in result and "bleu" not in result  # only the chosen metrics
    assert result["skipped"] == {
        "malformed JSON": 1, "not a JSON object": 1, "missing prediction": 1, "missing reference": 1,
        "empty reference": 1, "prediction is not text": 1, "choices is not a list": 1,
    }


def test_an_empty_answer_scores_zero_as_dsft_eval_scores_it(tmp_path: Path) -> None:
    # dsft eval scores every generation, the empty ones too (a model that stops at once answered
    # nothing: 0), so its predictions.jsonl rescored by dsft metrics must give its metrics.json figures.
    # A reference with nothing outside its think block has nothing to score against: skipped.
    records = [
        {"prediction": "Paris", "reference": "Paris"},
        {"prediction": "", "reference": "Paris"},
        {"prediction": " \n", "reference": "Paris"},
        {"prediction": "<think>Rome?</think>", "reference": "Paris"},
    ]
    path = write_lines(tmp_path / "p.jsonl", records + [{"prediction": "Paris", "reference": "<think>x</think>\n"}])
    from_file = score_predictions_file(path)
    as_eval = score_samples([Sample(r["prediction"], r["reference"]) for r in records]).aggregate
    assert from_file["count"] == as_eval["count"] == 4
    assert from_file["exact_match"] == as_eval["exact_match"] == 0.25  # 1 right of 4
    assert {k: from_file[k] for k in as_eval} == as_eval
    assert from_file["skipped"] == {"empty reference": 1, "numeric_accuracy: reference has no number": 4}


def test_metrics_table_output(tmp_path: Path, run_cli) -> None:
    path = write_lines(tmp_path / "p.jsonl", [{"prediction": "a", "reference": "b"}, "oops"])
    code, out, _ = run_cli(["metrics", "-p", str(path)])
    assert code == 0
    assert "exact_match" in out and "skipped 1: malformed JSON" in out


def test_the_table_shows_every_number_of_the_json_under_the_reports_names(tmp_path: Path, run_cli) -> None:
    # Both BLEUs, named as the reports name them: corpus BLEU 0 for a right 1-token answer, sentence 100.
    path = write_lines(tmp_path / "p.jsonl", [{"prediction": "Red", "reference": "Red"},
                                              {"prediction": "the cat sat on the mat", "reference": "the cat sat on a mat"}])
    _, shown, _ = run_cli(["metrics", "-p", str(path), "--json"])
    code, out, _ = run_cli(["metrics", "-p", str(path)])
    assert code == 0
    rows = {cells[0]: cells[1] for line in out.splitlines()
            if len(cells := [c.strip() for c in line.strip("│┃ ").split("│")]) == 2}
    result = json.loads(shown)
    for key, value in result.items():
        if isinstance(value, float):
            assert rows[metric_label(key)] == fmt(value), key
    assert rows["bleu (per-sample mean)"] != rows["bleu (corpus)"]


def test_metrics_missing_file_and_unknown_metric(tmp_path: Path, run_cli) -> None:
    code, _, err = run_cli(["metrics", "-p", str(tmp_path / "absent.jsonl"), "--json"])
    assert code == 2 and "absent.jsonl: no such file or directory" in err and "Traceback" not in err
    code, _, err = run_cli(["metrics", "-p", "/dev/null"])
    assert code == 2 and "predictions file /dev/null: exists but is not a regular file" in err, err
    path = write_lines(tmp_path / "p.jsonl", [{"prediction": "a", "reference": "b"}])
    code, _, err = run_cli(["metrics", "-p", str(path), "-m", "bleurt"])
    assert code == 2 and "unknown metric(s) 'bleurt'" in err


def test_a_file_with_nothing_to_score_is_refused_naming_why(tmp_path: Path, run_cli) -> None:
    """A data file given by mistake, an empty file or a GBK/UTF-16 save printed a table of dashes and exit code 0
    (a GBK file was scored as replacement characters); each is now one message and exit code 2."""
    data = write_lines(tmp_path / "train.jsonl", [{"prompt": "q", "completion": "a"}] * 3)
    code, out, err = run_cli(["metrics", "-p", str(data), "--json"])
    assert code == 2 and out == "" and "Traceback" not in err, err
    assert f"predictions file {data}: no line can be scored (missing prediction 3, first at line 1); each line needs a prediction " \
           "and a reference" in err, err
    empty = write_lines(tmp_path / "empty.jsonl", ["", "  "])
    code, _, err = run_cli(["metrics", "-p", str(empty)])
    assert code == 2 and f"predictions file {empty}: holds no lines to score" in err, err
    gbk = tmp_path / "gbk.jsonl"
    gbk.write_bytes(json.dumps({"prediction": "发热", "reference": "发热"}, ensure_ascii=False).encode("gb18030"))
    code, _, err = run_cli(["metrics", "-p", str(gbk)])
    assert code == 2 and "(not UTF-8 text 1, first at line 1)" in err and "it reads as GBK/GB18030 Chinese" in err, err
    # One such line among good ones is counted, not scored as replacement characters; a byte-order mark is no line.
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_bytes(b"\xef\xbb\xbf" + json.dumps({"prediction": "a", "reference": "a"}).encode() + b"\n"
                      + gbk.read_bytes() + b"\n")
    code, out, err = run_cli(["metrics", "-p", str(mixed), "--json"])
    result = json.loads(out)
    assert code == 0 and result["count"] == 1 and result["skipped"]["not UTF-8 text"] == 1, (out, err)


@pytest.mark.parametrize(("encoding", "said"), [("utf-32", "it is UTF-32 text (byte-order mark FF FE 00 00)"),
                                               ("utf-16-le", "it reads as UTF-16LE text")])
def test_a_predictions_file_in_utf32_or_utf16_without_a_mark_names_its_encoding(tmp_path: Path, run_cli,
                                                                                encoding: str, said: str) -> None:
    """A UTF-32 save was called UTF-16 (its byte-order mark FF FE 00 00 begins as UTF-16's), so the conversion asked
    for (iconv -f UTF-16) would garble it; a UTF-16 save without a mark read as UTF-8 full of NULs, every line
    'malformed JSON', and no encoding was named."""
    path = tmp_path / "predictions.jsonl"
    path.write_bytes("".join(json.dumps({"prediction": f"a{i}", "reference": f"a{i}"}) + "\n"
                             for i in range(4)).encode(encoding))
    code, _, err = run_cli(["metrics", "-p", str(path)])
    text = " ".join(err.split())
    family = said.split(" text")[0].split()[-1]
    assert code == 2 and "Traceback" not in err, err
    assert f"; {said}" in text and f"iconv -f {family} -t UTF-8" in text, text


def test_a_nan_or_infinite_prediction_or_reference_is_skipped_not_scored_as_text(tmp_path: Path, run_cli) -> None:
    """json.dumps writes a float NaN (pandas' missing value) as a bare NaN, which Python's json reads as a float: it
    was scored as the text 'nan' (a reference 'nan' matched by a prediction 'nan': exact match 1.0 on no answer)."""
    path = tmp_path / "p.jsonl"
    path.write_text('{"prediction": "4", "reference": "4"}\n{"prediction": "nan", "reference": NaN}\n'
                    '{"prediction": NaN, "reference": "1"}\n{"prediction": "inf", "reference": Infinity}\n'
                    '{"prediction": "1", "reference": -Infinity}\n')
    code, out, _ = run_cli(["metrics", "--predictions", str(path), "--json"])
    result = json.loads(out)
    assert code == 0 and result["count"] == 1 and result["exact_match"] == 1.0, result
    assert result["skipped"] == {"reference is NaN or infinite, not text": 3,
                                 "prediction is NaN or infinite, not text": 1}, result


def test_a_nan_label_or_choice_is_skipped_not_scored_as_text(tmp_path: Path, run_cli) -> None:
    """A NaN label was its own class "nan" in macro-F1 (0.5 here where the one real label is right), and a NaN option
    the option text "nan" (the line counted in choice accuracy); each is now skipped under its reason, as a NaN
    reference is."""
    path = tmp_path / "p.jsonl"
    path.write_text('{"prediction": "pos", "reference": "pos", "label": "pos"}\n'
                    '{"prediction": "neg", "reference": "neg", "label": NaN}\n'
                    '{"prediction": "A", "reference": "A", "choices": ["x", NaN]}\n'
                    '{"prediction": "B", "reference": "B", "choices": {"A": "x", "B": Infinity}}\n')
    code, out, _ = run_cli(["metrics", "--predictions", str(path), "--json"])
    result = json.loads(out)
    assert code == 0 and result["count"] == 1 and result["macro_f1"] == 1.0, result
    assert result["choice_accuracy"] is None, result
    assert result["skipped"] == {"label is NaN or infinite, not text": 1,
                                 "choices: an option is NaN or infinite, not text": 2,
                                 "numeric_accuracy: reference has no number": 1}, result


def test_a_blank_label_is_skipped_not_scored_as_a_class(tmp_path: Path, run_cli) -> None:
    """A blank label (a CSV's empty cell, which the data readers give as '') was a class no answer names: macro-F1
    0.5556 where both real labels are right."""
    path = write_lines(tmp_path / "p.jsonl", [{"prediction": "pos", "reference": "pos", "label": "pos"},
                                              {"prediction": "neg", "reference": "neg", "label": "neg"},
                                              {"prediction": "neg", "reference": "x", "label": " "}])
    code, out, _ = run_cli(["metrics", "--predictions", str(path), "--json"])
    result = json.loads(out)
    assert code == 0 and result["macro_f1"] == 1.0 and result["count"] == 2, result
    assert result["skipped"]["empty label"] == 1, result


def test_a_file_with_nothing_to_score_names_the_first_line_of_each_reason(tmp_path: Path, run_cli) -> None:
    """The refusal counted each reason ('missing reference 2, malformed JSON 1') without saying where a line is."""
    path = write_lines(tmp_path / "p.jsonl", ["", {"prediction": "a"}, "{not json", {"prediction": "b"}])
    code, _, err = run_cli(["metrics", "-p", str(path)])
    assert code == 2 and f"predictions file {path}: no line can be scored (missing reference 2, first at line 2; " \
        "malformed JSON 1, first at line 3); each line needs" in " ".join(err.split()), err


def test_a_json_array_of_predictions_is_told_to_be_json_lines(tmp_path: Path, run_cli) -> None:
    """dsft data reads a .json array, so one is easily given here: it was refused as 'not a JSON object 1' (or, pretty
    printed, 'malformed JSON 10') without saying the file is one array."""
    rows = [{"prediction": "a", "reference": "a"}, {"prediction": "b", "reference": "c"}]
    for name, text in (("one-line.json", json.dumps(rows)), ("pretty.json", json.dumps(rows, indent=2))):
        path = tmp_path / name
        path.write_text(text)
        code, _, err = run_cli(["metrics", "-p", str(path)])
        assert code == 2 and "the file is one JSON array, not JSON Lines: write one object per line (e.g. jq -c " \
            f"'.[]' {path} > predictions.jsonl)" in " ".join(err.split()), err
    code, _, err = run_cli(["metrics", "-p", str(write_lines(tmp_path / "p.jsonl", [{"prediction": "a"}]))])
    assert code == 2 and "JSON array" not in err, err


@pytest.mark.parametrize(("record", "hint"), [
    ({"pred": "a", "ref": "a"}, "line 1 has keys 'pred', 'ref': rename 'pred' to 'prediction', 'ref' to 'reference'"),
    ({"prediction": "a", "answer": "a"}, "line 1 has keys 'prediction', 'answer': rename 'answer' to 'reference'"),
    ({"output": "a", "gold": "a", "id": 3}, "line 1 has keys 'output', 'gold', 'id': rename 'output' to "
                                            "'prediction', 'gold' to 'reference'"),
    ({"text": "a", "id": 3}, "line 1 has keys 'text', 'id'"),
    # A training file given by mistake: 'completion' may be a prediction, but nothing here is a reference.
    ({"prompt": "q", "completion": "a"}, "line 1 has keys 'prompt', 'completion'"),
])
def test_a_file_with_other_key_names_is_told_its_keys(tmp_path: Path, run_cli, record: dict, hint: str) -> None:
    """Another tool's predictions file ('pred'/'ref', 'output'/'gold') was refused as 'missing prediction' without
    saying which keys the lines hold, so the user had to open the file to see why."""
    path = write_lines(tmp_path / "p.jsonl", [record, record])
    code, _, err = run_cli(["metrics", "-p", str(path)])
    assert code == 2 and hint in " ".join(err.split()), err
    assert ("rename" in err) == ("rename" in hint), err


def test_several_acceptable_references_per_line_are_scored_as_the_standard_definitions_do(
    tmp_path: Path, run_cli
) -> None:
    """A list of references per line (BLEU/ROUGE evaluation files) was skipped as 'reference is not text' (or
    'missing reference' under 'references'), so such a file was refused as having no line to score. Now BLEU takes
    every reference (sacrebleu's reference streams), exact match, F1, numeric accuracy and ROUGE the best one."""
    import sacrebleu

    lines = [
        {"prediction": "the cat sat on the mat", "references": ["a cat sat on a mat", "the cat sat on the mat"]},
        {"prediction": "北京", "reference": ["北京市", "北京"]},
        {"prediction": "It is 12 apples", "references": ["twelve apples", "12 apples in all"]},
        {"prediction": "blue sky", "reference": "the sky is blue"},  # one reference, as before
    ]
    path = write_lines(tmp_path / "p.jsonl", lines)
    code, out, err = run_cli(["metrics", "-p", str(path), "--json"])
    assert code == 0, err
    result = json.loads(out)
    assert result["count"] == 4 and result["skipped"] == {"numeric_accuracy: reference has no number": 3}
    assert result["exact_match"] == pytest.approx(2 / 4)  # lines 1 and 2 equal one of their references
    assert result["numeric_accuracy"] == 1.0  # 12 is the second reference's number
    streams = [["a cat sat on a mat", "北京市", "twelve apples", "the sky is blue"],
               ["the cat sat on the mat", "北京", "12 apples in all", None]]
    expected = sacrebleu.corpus_bleu([line["prediction"] for line in lines], streams, tokenize="zh").score
    assert result["bleu"] == pytest.approx(expected)

    def best(key: str, line: dict) -> float:  # the line's references scored one at a time, as single references are
        references = line.get("references") or line["reference"]
        return max(scored_alone(tmp_path, line["prediction"], reference)[key]
                   for reference in ([references] if isinstance(references, str) else references))

    for key in ("f1", "rouge1", "rouge2", "rougeL"):
        assert result[key] == pytest.approx(sum(best(key, line) for line in lines) / len(lines)), key


def scored_alone(tmp_path: Path, prediction: str, reference: str) -> dict:
    path = write_lines(tmp_path / "one.jsonl", [{"prediction": prediction, "reference": reference}])
    return score_predictions_file(path, ["f1", "rouge"])


@pytest.mark.parametrize(("references", "said"), [
    ({"references": ["a", 3]}, "'references': item 2 is a number, not text"),
    ({"reference": ["a", None]}, "'reference': item 2 is null, not text"),
    ({"references": ["a", ["b"]]}, "'references': item 2 is a list, not text"),
    ({"references": []}, "'references' is an empty list; give at least one reference"),
    ({"reference": "a", "references": ["a", "b"]}, "both 'reference' and 'references'"),
])
def test_a_malformed_list_of_references_is_refused_naming_the_file_and_line(
    tmp_path: Path, run_cli, references: dict, said: str
) -> None:
    path = write_lines(tmp_path / "p.jsonl", [{"prediction": "a", "reference": "a"}, {"prediction": "a", **references}])
    code, out, err = run_cli(["metrics", "-p", str(path), "--json"])
    assert code == 2 and out == "" and "Traceback" not in err, err
    assert f"predictions file {path}, line 2: {said}" in " ".join(err.split()), err
