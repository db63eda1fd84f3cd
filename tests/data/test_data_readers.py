"""Readers: every file type, directories, globs, saved datasets, streaming, and input errors."""

import doctest
import json
import logging
import tracemalloc
from pathlib import Path

import pytest

from dsft import text_encoding
from dsft.data.formats import to_conversation
from dsft.data.ingest import ingest
from dsft.data.readers import expand_inputs, read_records
from dsft.data.validate import validate_conversation
from dsft.errors import DataError


RECORDS = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(3)]


def _data(path: Path) -> list:
    return [r.data for r in read_records([str(path)])]


def test_jsonl_lines_numbered_and_bad_lines_reported(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"text": "a"}\n\n{broken\n{"text": "\xff\xfe"}\n[1, 2]\n')
    records = list(read_records([str(path)]))
    assert [r.location for r in records] == ["line 1", "line 3", "line 4", "line 5"]  # blank line 2 skipped
    assert records[0].data == {"text": "a"} and records[0].where == f"{path}:1"
    assert records[1].error.startswith("malformed JSON")
    assert records[2].error.startswith("not valid UTF-8")
    assert records[3].data == [1, 2] and records[3].error is None


def test_a_json_slip_a_person_makes_is_named_with_its_fix(tmp_path: Path) -> None:
    """Guide 001's annotation example copied from its web page (typographic quotes, a '# ...' comment before the
    record), typed with a Chinese input method (full-width colon), printed from Python (single quotes, True) or
    ended with a comma: each was the decoder's own words alone ('Expecting property name enclosed in double
    quotes (column 2)'), which name none of these."""
    lines = ['{“context”: “患者主诉持续发热3天”, “question”: “可能病因有哪些?”, “answer”: “上呼吸道感染”}',
             '{"context"："患者", "question": "病因?", "answer": "感染"}',
             '# 医疗问答数据标注规范{"context": "患者", "question": "病因?", "answer": "感染"}',
             "{'context': '患者', 'question': '病因?', 'answer': '感染'}",
             '{"question": "病因?", "answer": "感染", "reviewed": True}',
             '{"question": "病因?", "answer": "感染"},',
             '{"question": "病因?", "answer": "感染",}']
    path = tmp_path / "qa.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    reasons = [r.reasons[0] for r in ingest([str(path)]).rejections]
    assert reasons == [
        "malformed JSON: Expecting property name enclosed in double quotes (column 2): '“' (U+201C) is a typographic "
        "quote (copied from a web page?), not JSON's '\"': write every quote as '\"'",
        "malformed JSON: Expecting ':' delimiter (column 11): '：' (U+FF1A) is a full-width character (typed with a "
        "Chinese input method), not JSON's ':': write it as ':'",
        "malformed JSON: Expecting value (column 1): a comment: JSON has none; delete it",
        "malformed JSON: Expecting property name enclosed in double quotes (column 2): single quotes: this is "
        "Python's way of printing a dict, not JSON; write records with json.dumps(record, ensure_ascii=False)",
        "malformed JSON: Expecting value (column 49): Python's True, not JSON's true: write true, false, null "
        "(json.dumps writes them)",
        "malformed JSON: Extra data (column 36): a ',' after the record: JSON lines are separated by line breaks "
        "alone; delete it",
        "malformed JSON: Expecting property name enclosed in double quotes (column 36): a ',' before '}': JSON allows "
        "no comma after the last item; delete it"]
    array = tmp_path / "qa.json"  # the same slip inside a JSON array: named in its item
    array.write_text('[{"question": "q", "answer": "a"}, {“question”: “q”, “answer”: “a”}]', encoding="utf-8")
    [rejection] = ingest([str(array)]).rejections
    assert rejection.where == f"{array} item 2"
    assert rejection.reasons[0].endswith("'“' (U+201C) is a typographic quote (copied from a web page?), not JSON's "
                                         "'\"': write every quote as '\"'")


def test_a_comment_line_in_json_lines_is_no_record_read(tmp_path: Path, caplog) -> None:
    """A '# ...' line of notes above the records was counted as a record read (and rejected), so the report said
    'read 3' of a file holding 2 records; it is skipped, not counted, and said once with its line. A comment before
    a record on the same line still holds that record: read, and rejected naming the comment."""
    path = tmp_path / "notes.jsonl"
    path.write_text('# reviewed 2024-05\n{"instruction": "q1", "output": "a1"}\n  // second batch\n'
                    '{"instruction": "q2", "output": "a2"}\n# note {"instruction": "q3", "output": "a3"}\n',
                    encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="dsft"):
        result = ingest([str(path)])
    assert (result.read, len(result.conversations)) == (3, 2)
    assert [(r.where, r.reasons[0]) for r in result.rejections] == [
        (f"{path}:5", "malformed JSON: Expecting value (column 1): a comment: JSON has none; delete it")]
    said = [r.getMessage() for r in caplog.records if str(path) in r.getMessage()]
    assert said == [f"{path}: 2 comment lines (lines 1, 3) skipped, not counted as records; JSON has no comments, "
                    "so other JSON readers refuse the file"]


def test_a_comment_line_among_pretty_printed_records_is_no_record_read(tmp_path: Path, caplog) -> None:
    """A '# ...' line above records pretty-printed one after another made the file look like JSON lines: each of its
    lines was a rejected record ('read 12' of 3 records, none kept). The shape is seen past comment lines, which are
    skipped there too, and said."""
    records = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(3)]
    path = tmp_path / "pretty.jsonl"
    path.write_text("# reviewed 2024-05\n" + "".join(json.dumps(r, indent=2) + "\n// next\n" for r in records),
                    encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="dsft"):
        result = ingest([str(path)])
    assert (result.read, result.rejections) == (3, [])
    assert [c.messages[0].content for c in result.conversations] == ["q0", "q1", "q2"]
    said = [r.getMessage() for r in caplog.records if str(path) in r.getMessage()]
    assert said == [f"{path}: 4 comment lines (lines 1, 6, 11, 16) skipped, not counted as records; JSON has no "
                    "comments, so other JSON readers refuse the file"]


@pytest.mark.parametrize(("name", "text", "lines"), [
    ("notes.json", "# reviewed 2024-05\n" + json.dumps(RECORDS, indent=2) + "\n", "line 1"),
    ("notes.jsonl", "# reviewed 2024-05\n" + json.dumps(RECORDS) + "\n", "line 1"),  # json.dump(records, f)
    ("wrapped.json", "// v2\n" + json.dumps({"data": RECORDS}, indent=2) + "\n", "line 1"),
    ("between.json", json.dumps(RECORDS, indent=2).replace("\n  {", "\n  # next\n  {", 2) + "\n# end\n",
     "lines 2, 7, 17"),
], ids=["array", "one-line-array-jsonl", "data-wrapper", "between-items"])
def test_a_comment_line_around_a_json_array_is_no_record_read(tmp_path: Path, caplog, name: str, text: str,
                                                               lines: str) -> None:
    """A '# ...' line above a JSON array made the whole file one rejected record ('read 1', none kept, its reason
    naming the comment), where comment lines in JSON lines and between pretty-printed records are skipped with a
    warning: skipped here too, said the same way, and the array's records read."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="dsft"):
        result = ingest([str(path)])
    assert (result.read, result.rejections) == (3, [])
    assert [c.messages[0].content for c in result.conversations] == ["q0", "q1", "q2"]
    count = lines.count(",") + 1
    said = [r.getMessage() for r in caplog.records if str(path) in r.getMessage()]
    assert said == [f"{path}: {count} comment line{'s' if count > 1 else ''} ({lines}) skipped, not counted as "
                    "records; JSON has no comments, so other JSON readers refuse the file"]


def test_an_item_of_an_array_below_a_comment_is_located_at_its_own_line(tmp_path: Path) -> None:
    """The comment lines are blanked, not cut out: a broken item is still named at the line it begins on."""
    path = tmp_path / "notes.json"
    path.write_text('# reviewed\n[\n  {"instruction": "q0", "output": "a0"},\n  {"instruction": q1},\n'
                    '  {"instruction": "q2", "output": "a2"}\n]\n', encoding="utf-8")
    result = ingest([str(path)])
    assert (result.read, len(result.conversations)) == (3, 2)
    assert [r.where for r in result.rejections] == [f"{path} item 2 (line 4)"]


def test_a_record_cut_off_after_a_comma_is_not_called_a_trailing_comma(tmp_path: Path) -> None:
    """A line cut off after a comma (a truncated file, a record split over two lines) ends where the decoder wanted
    the next key or value; it was named "a ',' before '': JSON allows no comma after the last item; delete it",
    which names no character and tells the user to delete the comma of a record that lost its rest."""
    path = tmp_path / "cut.jsonl"
    path.write_text('{"question": "q", "answer": "a",\n[1,\n', encoding="utf-8")
    reasons = [r.reasons[0] for r in ingest([str(path)]).rejections]
    assert reasons == ["malformed JSON: Expecting property name enclosed in double quotes (column 33)",
                       "malformed JSON: Expecting value (column 4)"]


def test_gbk_encoded_chinese_is_named_with_the_conversion(tmp_path: Path) -> None:
    """Guide 001's records saved by a Chinese-locale editor (GBK): each rejection says so and how to convert,
    where it said only 'bad byte at offset 13'; undecodable bytes that are not Chinese get no such guess."""
    record = {"context": "患者主诉持续发热3天", "question": "可能病因有哪些?", "answer": "需考虑上呼吸道感染"}
    jsonl = tmp_path / "gbk.jsonl"
    jsonl.write_bytes((json.dumps(record, ensure_ascii=False) + "\n").encode("gb18030") + b'{"text": "\xff"}\n')
    gbk, other = read_records([str(jsonl)])
    assert "it reads as GBK/GB18030 Chinese: save the file as UTF-8 (e.g. iconv -f GB18030 -t UTF-8" in gbk.error
    assert other.error.startswith("not valid UTF-8") and "GBK" not in other.error
    csv_file = tmp_path / "gbk.csv"
    csv_file.write_bytes(("context,question,answer\n" + ",".join(record.values()) + "\n").encode("gb18030"))
    [row] = read_records([str(csv_file)])  # CSV keeps undecodable bytes; validation names them
    problems = validate_conversation(to_conversation(row.data))
    assert problems and "it reads as GBK/GB18030 Chinese" in problems[0]


def test_jsonl_with_byte_order_mark_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"text": "a"}\r\n{"text": "b"}\r\n')
    assert _data(path) == [{"text": "a"}, {"text": "b"}]


def test_json_array_wrapper_single_object_and_jsonl_named_json(tmp_path: Path) -> None:
    (tmp_path / "arr.json").write_text(json.dumps([{"text": "a"}, {"text": "b"}]))
    (tmp_path / "wrapped.json").write_text(json.dumps({"data": [{"text": "c"}]}))
    (tmp_path / "one.json").write_text(json.dumps({"text": "d"}))
    (tmp_path / "lines.json").write_text('{"text": "e"}\n{"text": "f"}\n')
    (tmp_path / "bad.json").write_text('{"text": ')
    assert _data(tmp_path / "arr.json") == [{"text": "a"}, {"text": "b"}]
    assert _data(tmp_path / "wrapped.json") == [{"text": "c"}]
    assert _data(tmp_path / "one.json") == [{"text": "d"}]
    assert _data(tmp_path / "lines.json") == [{"text": "e"}, {"text": "f"}]
    [bad] = list(read_records([str(tmp_path / "bad.json")]))
    assert bad.data is None and "malformed JSON" in bad.error


def test_a_json_array_or_wrapper_under_a_jsonl_name_is_read_as_json(tmp_path: Path) -> None:
    """A pretty-printed array saved as .jsonl (datasets' json loader reads it): every line was a malformed record."""
    records = [{"conversations": [{"role": "user", "content": f"Q{i}"}, {"role": "assistant", "content": f"A{i}"}]}
               for i in range(3)]
    array = tmp_path / "val.jsonl"
    array.write_text(json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")
    wrapper = tmp_path / "train.jsonl"
    wrapper.write_text(json.dumps({"data": records}, indent=2), encoding="utf-8")
    for path in (array, wrapper):
        read = list(read_records([str(path)]))
        assert [(r.location, r.error, r.data) for r in read] == [(f"item {i}", None, records[i - 1]) for i in (1, 2, 3)]
    broken_first_line = tmp_path / "lines.jsonl"  # JSON lines with a damaged first line stay line by line
    broken_first_line.write_text('{"text": oops}\n{"text": "b"}\n', encoding="utf-8")
    read = list(read_records([str(broken_first_line)]))
    assert [r.location for r in read] == ["line 1", "line 2"] and read[0].error and read[1].data == {"text": "b"}


def test_csv_rows_and_undecodable_bytes_survive_as_surrogates(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(b'question,answer\nq1,"a, with comma"\nq\xff2,a2\n')
    records = list(read_records([str(path)]))
    assert records[0].data == {"question": "q1", "answer": "a, with comma"}
    assert records[0].where == f"{path} row 1 (line 2)"
    assert "\udcff" in records[1].data["question"]  # rejected later by validation, not here


@pytest.mark.parametrize("orient", ["columns", "index", "split"])
def test_a_pandas_table_written_by_to_json_is_refused_with_the_call_that_writes_records(tmp_path: Path,
                                                                                          orient: str) -> None:
    """df.to_json(path) (orient 'columns', pandas' default) was read as one record whose every column was 'an
    object, expected a string'; orient 'split' went through the {"data": [...]} wrapper as rows that were lists."""
    import pandas as pd

    path = tmp_path / "qa.json"
    pd.DataFrame({"input": ["什么是梯度检查点？", "q2"], "output": ["以计算换显存", "a2"]}).to_json(
        path, orient=orient, force_ascii=False)
    [record] = read_records([str(path)])
    assert record.data is None and record.location == "item 1"
    assert f"as pandas' DataFrame.to_json(orient='{orient}') writes it, not records; write df.to_json(PATH, " \
           "orient='records', lines=True, force_ascii=False)" in record.error, record.error
    pd.DataFrame({"input": ["q"], "output": ["a"]}).to_json(path, orient="records", lines=True)
    assert _data(path) == [{"input": "q", "output": "a"}]


def test_one_record_whose_fields_are_objects_is_no_pandas_table(tmp_path: Path) -> None:
    path = tmp_path / "pair.json"
    pair = {"prompt": "2+2?", "chosen": {"role": "assistant", "content": "4"},
            "rejected": {"role": "assistant", "content": "5"}}
    path.write_text(json.dumps(pair), encoding="utf-8")
    assert _data(path) == [pair]
    path.write_text(json.dumps({"chosen": pair["chosen"], "rejected": pair["rejected"]}), encoding="utf-8")
    assert _data(path) == [{"chosen": pair["chosen"], "rejected": pair["rejected"]}]


def test_a_csv_written_with_a_space_after_each_comma_is_read_by_its_names(tmp_path: Path) -> None:
    """'input, output' named the columns 'input' and ' output': every record was an unknown format, told to map
    data.columns: {output:  output}, which YAML reads without the space; and 'q, "a, b"' split the quoted cell."""
    path = tmp_path / "qa.csv"
    path.write_text('input, output\nq1, "a1, with a comma"\nq2, a2\n', encoding="utf-8")
    assert _data(path) == [{"input": "q1", "output": "a1, with a comma"}, {"input": "q2", "output": "a2"}]
    path.write_text("input ,output \nq1,a1\n", encoding="utf-8")  # spaces before: the names alone are trimmed
    assert _data(path) == [{"input": "q1", "output": "a1"}]
    path.write_text("input,output\nq1, a1\n", encoding="utf-8")  # a plain header keeps a cell as written
    assert _data(path) == [{"input": "q1", "output": " a1"}]


def test_a_csv_header_naming_a_column_twice_is_one_reject_not_rows_missing_a_cell(tmp_path: Path) -> None:
    """csv.DictReader keeps the last cell of a name: 'input,output,input' trained every row on its third cell as the
    question, the first lost without a word (a spreadsheet with two columns of one heading)."""
    path = tmp_path / "qa.csv"
    path.write_text("input,output,input\nq,a,b\n", encoding="utf-8")
    [record] = read_records([str(path)])
    assert record.data is None and record.where == f"{path}:1" and record.raw == "input,output,input"
    assert record.error == ("malformed CSV: the header names column 'input' twice (columns 1 and 3), so every row "
                            "would keep only the last of those cells; rename the columns apart")
    path.write_text("input,output,,\nq,a,,\n", encoding="utf-8")  # empty trailing columns hold nothing
    assert [r.error for r in read_records([str(path)])] == [None]


def test_a_csv_row_with_line_breaks_in_a_cell_is_located_from_its_first_line(tmp_path: Path) -> None:
    """Excel writes a cell with Alt+Enter line breaks as a quoted field over several lines: the row was named by
    its last line (csv's line_num), so a user sent to 'line 3' found the end of an answer, not the row."""
    path = tmp_path / "t.csv"
    path.write_bytes(b'question,answer\r\n"q1","first\r\nsecond\r\nthird"\r\n\r\nq2,a2\r\n"q3\nstill q3",a3,extra\r\n')
    records = list(read_records([str(path)]))
    assert [r.where for r in records] == [f"{path} row 1 (lines 2-4)", f"{path} row 2 (line 6)",
                                          f"{path} row 3 (lines 7-8)"]  # the empty line 5 is skipped
    assert records[0].data == {"question": "q1", "answer": "first\r\nsecond\r\nthird"}
    assert records[2].error == "more cells than header columns"


@pytest.mark.parametrize(("text", "where", "lines"), [
    ('prompt,completion\nhi,there\n"stray quote,a\nnext,row\nlast,one\n', 3, "lines 3-5"),
    ('prompt,completion\nhi,"two\nlines"\nq,"never closed\nmore', 4, "lines 4-5"),  # no final newline
    ('prompt,completion\r\nhi,there\r\nq,"open\r\n', 3, "line 3"),
    ('"prompt,completion\nhi,there\n', 1, "lines 1-2"),  # in the header
])
def test_a_csv_quote_never_closed_is_one_reject_where_it_opens(tmp_path: Path, text: str, where: int,
                                                               lines: str) -> None:
    """The csv module read the rest of the file into the quoted field without a word: the rows after it vanished
    into one cell (kept as data when that cell was the completion)."""
    path = tmp_path / "t.csv"
    path.write_bytes(text.encode())
    *rows, last = read_records([str(path)])
    assert all(row.error is None for row in rows) and last.data is None
    assert last.where == f"{path}:{where}", last.where
    assert f"opens a quoted field on line {where} that is never closed, so {lines} (the rest" in last.error


def test_a_csv_quote_closed_at_the_end_of_the_file_is_a_row(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(b'prompt,completion\nq,"a\nb"')
    assert [(r.data, r.error) for r in read_records([str(path)])] == [({"prompt": "q", "completion": "a\nb"}, None)]


def test_a_json_array_on_one_line_under_a_jsonl_name_is_read_as_json(tmp_path: Path) -> None:
    """json.dump(records, f) into a .jsonl name writes the whole array on one line: read line by line, that line was
    one record, rejected as 'record is a list, expected a JSON object', and nothing was left to train on."""
    records = [{"input": f"q{i}", "output": f"a{i}"} for i in range(3)]
    for name, value in (("one_line.jsonl", records), ("wrapped.jsonl", {"data": records})):
        path = tmp_path / name
        path.write_text(json.dumps(value) + "\n", encoding="utf-8")
        assert [(r.location, r.error, r.data) for r in read_records([str(path)])] == [
            (f"item {i}", None, records[i - 1]) for i in (1, 2, 3)], name
    lines = tmp_path / "lines.jsonl"  # one record a line, a list among them, stays line by line
    lines.write_text(json.dumps(records[0]) + "\n" + json.dumps(records) + "\n", encoding="utf-8")
    assert [r.location for r in read_records([str(lines)])] == ["line 1", "line 2"]
    single = tmp_path / "single.jsonl"  # one record on its one line is that record
    single.write_text(json.dumps(records[0]) + "\n", encoding="utf-8")
    assert [(r.location, r.data) for r in read_records([str(single)])] == [("line 1", records[0])]


def test_pretty_printed_records_one_after_another_under_a_jsonl_name_are_read_as_records(tmp_path: Path) -> None:
    """json.dumps(record, indent=2) written record after record: every line was a malformed record (12 rejects for
    3 records, 'Extra data', 'Expecting property name ...'), nothing read."""
    records = [{"input": f"q{i}", "output": f"a{i}"} for i in range(3)]
    path = tmp_path / "pretty.jsonl"
    path.write_text("\n".join(json.dumps(r, indent=2, ensure_ascii=False) for r in records) + "\n", encoding="utf-8")
    assert [(r.where, r.data) for r in read_records([str(path)])] == [
        (f"{path}:{line}", record) for line, record in zip((1, 5, 9), records)]
    path.write_text('{\n "input": "q1",\n "output": "a1"\n}\n{\n "input": "q2",\n "output": oops\n}\n{"input": "q3"}\n',
                    encoding="utf-8")
    first, broken, last = read_records([str(path)])  # the broken record costs itself, not the rest of the file
    assert first.data == {"input": "q1", "output": "a1"} and broken.data is None and broken.where == f"{path}:5"
    assert broken.error == "malformed JSON: Expecting value (line 7, column 12)" and broken.raw.endswith("oops\n}")
    assert last.data == {"input": "q3"} and last.where == f"{path}:9"


def test_parquet_and_saved_dataset(tmp_path: Path) -> None:
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"prompt": f"p{i}", "completion": f"c{i}"} for i in range(3000)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "t.parquet", row_group_size=500)
    assert _data(tmp_path / "t.parquet") == rows
    datasets.Dataset.from_list(rows[:5]).save_to_disk(str(tmp_path / "saved"))
    assert _data(tmp_path / "saved") == rows[:5]
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows[:2]), "test": datasets.Dataset.from_list(rows[2:3])}
                         ).save_to_disk(str(tmp_path / "dd"))
    locations = [r.location for r in read_records([str(tmp_path / "dd")])]
    assert sorted(locations) == ["test row 1", "train row 1", "train row 2"]


def test_directories_and_globs(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.jsonl").write_text('{"text": "b"}\n')
    (tmp_path / "sub" / "a.jsonl").write_text('{"text": "a"}\n')
    (tmp_path / "notes.txt").write_text("ignored")
    assert [p.name for p in expand_inputs([str(tmp_path)])] == ["b.jsonl", "a.jsonl"]
    assert [p.name for p in expand_inputs([str(tmp_path / "**" / "*.jsonl")])] == ["b.jsonl", "a.jsonl"]


def test_existing_file_with_glob_characters_is_read_literally(tmp_path: Path) -> None:
    (tmp_path / "data[v2].jsonl").write_text('{"text": "v2"}\n')
    assert _data(tmp_path / "data[v2].jsonl") == [{"text": "v2"}]


@pytest.mark.parametrize(
    ("name", "message"),
    [("absent.jsonl", "no such file"), ("notes.txt", "unsupported file type"), ("*.parquet", "glob matches no"),
     ("empty_dir", "holds no")],
)
def test_input_errors_name_the_input(tmp_path: Path, name: str, message: str) -> None:
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(DataError, match=message):
        list(read_records([str(tmp_path / name)]))


def test_readers_are_lazy(tmp_path: Path) -> None:
    """The first record arrives before the rest of the file is parsed (a generator, not a list)."""
    path = tmp_path / "lazy.jsonl"
    path.write_text('{"text": "first"}\n' + "{not json\n" * 10)
    stream = read_records([str(path)])
    assert next(stream).data == {"text": "first"}
    path.write_text("")  # truncating the file after the first read cannot affect the record we hold
    assert iter(stream) is stream


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_memory_does_not_grow_with_file_size(tmp_path: Path, suffix: str) -> None:
    """Streaming 20,000 rows (~9 MB as text) peaks at a few MB of Python memory whatever the format."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"prompt": f"question {i} " + "x" * 400, "completion": f"answer {i}"} for i in range(20_000)]
    path = tmp_path / f"big{suffix}"
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif suffix == ".csv":
        path.write_text("prompt,completion\n" + "".join(f"{r['prompt']},{r['completion']}\n" for r in rows))
    else:
        pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=2000)
    del rows
    tracemalloc.start()
    count = sum(1 for _ in read_records([str(path)]))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == 20_000
    assert peak < 2_000_000, peak  # the whole file as Python objects would be over 12 MB


@pytest.mark.parametrize(("name", "content", "encoding", "hint"), [
    ("qa.csv", "问题,回答\n发热怎么办,多喝水\n", "gb18030", "it reads as GBK/GB18030 Chinese"),  # Excel's save
    ("qa.json", '[{"问题": "发热怎么办", "回答": "多喝水"}]', "gb18030", "it reads as GBK/GB18030 Chinese"),
])
def test_field_names_in_another_encoding_are_one_message_not_a_traceback(
        tmp_path: Path, run_cli, name: str, content: str, encoding: str, hint: str) -> None:
    """Undecodable column names reached data_report.json, whose write crashed (UnicodeEncodeError traceback)."""
    data = tmp_path / name
    data.write_bytes(content.encode(encoding))
    out = tmp_path / "prepared"
    code, _, err = run_cli(["data", "prepare", str(data), "--out", str(out), "--tokenizer", "deepseek"])
    assert code == 2 and "Traceback" not in err, err
    assert "field names are not valid UTF-8" in err and hint in err
    report = json.loads((out / "data_report.json").read_text(encoding="utf-8"))  # written, and valid JSON
    assert report["kept"] == 0 and report["rejected"] >= 1


@pytest.mark.parametrize("name", ["qa.json", "qa.jsonl", "qa.csv"])
@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_a_utf16_file_is_one_message_naming_it_before_anything_loads(tmp_path: Path, run_cli, name: str,
                                                                     encoding: str) -> None:
    """Guide 004's JSON saved by Windows Notepad as "Unicode" (UTF-16): a .json file was one 'malformed JSON:
    Expecting value (line 1, column 1)' record with no word of its encoding; a .jsonl file was split at its
    newline bytes into records, the second called GBK (iconv -f GB18030 would garble it), one more than it holds;
    a CSV's every row was rejected. Now the file is refused whole, naming it and its encoding, exit 2."""
    records = [{"input": "如何优化训练效率?", "output": "混合精度训练"}, {"input": "解释自注意力", "output": "加权和"}]
    text = {"qa.json": json.dumps({"data": records}, ensure_ascii=False),
            "qa.jsonl": "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
            "qa.csv": "input,output\n" + "".join(f"{r['input']},{r['output']}\n" for r in records)}[name]
    data = tmp_path / name
    data.write_bytes(text.encode(encoding))
    out = tmp_path / "prepared"
    code, _, err = run_cli(["data", "prepare", str(data), "--out", str(out), "--tokenizer", "deepseek"])
    assert code == 2 and "Traceback" not in err, err
    family = "UTF-32" if encoding == "utf-32" else "UTF-16"
    said = "is" if encoding in ("utf-16", "utf-32") else "reads as"  # a byte-order mark, or NUL bytes alone
    assert f"{data}: not UTF-8 text; it {said} {family}" in err, err
    assert f"iconv -f {family}" in err, err
    assert "GB18030" not in err and not out.exists(), err
    with pytest.raises(DataError, match=f"not UTF-8 text; it .* {family}"):  # eval reads through the same expansion
        list(read_records([str(tmp_path)]))


@pytest.mark.parametrize(("encoding", "family", "row"), [
    ("utf-16", "UTF-16", "患者发热三天伴咳嗽第{}例，应该如何处理？,建议及时就医并查血常规和胸片检查以明确诊断"),
    ("utf-32", "UTF-32", "患者发热三天伴咳嗽第{}例，应该如何处理？,建议及时就医并查血常规和胸片检查以明确诊断"),
    ("utf-16", "UTF-16", "この患者は{}日間発熱しています。どうすればよいですか,すぐに病院で血液検査を受けてください"),
])
def test_a_utf16_file_of_long_chinese_rows_is_refused_whole_too(tmp_path: Path, encoding: str, family: str,
                                                                row: str) -> None:
    """A Notepad "Unicode" save of a Chinese (or Japanese) CSV whose rows are long answers: its ASCII is only the
    commas and line breaks, under the quarter the rule asked of UTF-16 text, so the byte-order mark was not believed,
    the file was read as UTF-8 and its every row rejected ('more cells than header columns'); now it is refused."""
    rows = "问题,回答\n" + "".join(row.format(i) + "\n" for i in range(60))
    path = tmp_path / "qa.csv"
    path.write_bytes(rows.encode(encoding))
    with pytest.raises(DataError, match=f"qa.csv: not UTF-8 text; it is {family} text \\(byte-order mark"):
        expand_inputs([str(path)])
    path.write_bytes(rows.encode("utf-8"))  # the same rows in UTF-8 read, every one
    assert len(_data(path)) == 60


@pytest.mark.parametrize("damage", [b"\x00", b"\x00\x00\x00\x00", b"0\x00{\x00"])
def test_a_stray_nul_in_a_utf8_file_costs_its_record_not_the_file(tmp_path: Path, damage: bytes) -> None:
    """NUL bytes in one damaged record of a UTF-8 JSONL file: that record is rejected where it is, the others kept.
    The whole file was refused as UTF-16 text (any NUL byte in the first 4 KiB did it); now the bytes must read
    as UTF-16/32 text, as a Notepad "Unicode" save does (the test above), for the file to be refused whole."""
    good = [json.dumps({"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]})
            for i in range(3)]
    path = tmp_path / "qa.jsonl"
    path.write_bytes(b"\n".join([good[0].encode(), good[1].encode()[:20] + damage + good[1].encode()[20:],
                                 good[2].encode()]) + b"\n")
    result = ingest([str(path)])
    assert (result.read, len(result.conversations), len(result.rejections)) == (3, 2, 1)
    assert result.rejections[0].where == f"{path}:2"
    assert doctest.testmod(text_encoding).failed == 0  # the rule's worked examples


@pytest.mark.parametrize("separator", ["\t", ";"])
def test_a_csv_separated_by_tabs_or_semicolons_is_read_by_its_separator(tmp_path: Path, separator: str) -> None:
    """Excel saves 'CSV' with semicolons in many locales and its text export with tabs: every row was one column
    named 'input;output' and all were rejected as 'unknown format (keys: input;output)'."""
    path = tmp_path / "qa.csv"
    path.write_text(separator.join(["input", "output"]) + "\n" + separator.join(["如何优化, 简单说?", "混合精度"]) + "\n"
                    + separator.join(["a", '"b; c"']) + "\n", encoding="utf-8")
    assert _data(path) == [{"input": "如何优化, 简单说?", "output": "混合精度"}, {"input": "a", "output": "b; c"}]
    commas = tmp_path / "commas.csv"  # a comma-separated header keeps commas, whatever its cells hold
    commas.write_text("input,output\nq;1\tx,a;b\n", encoding="utf-8")
    assert _data(commas) == [{"input": "q;1\tx", "output": "a;b"}]


@pytest.mark.parametrize("command", [["eval", "tiny-deepseek-v3", "--out", "o"], ["data", "prepare", "--out", "o"],
                                     ["compare", "--tuned", "tiny-deepseek-v3", "--out", "o"]])
def test_an_empty_data_path_is_refused_not_read_as_the_current_directory(tmp_path: Path, monkeypatch, run_cli,
                                                                          command: list[str]) -> None:
    """Path("") is '.': `dsft eval M --data "$VAL"` with VAL unset evaluated every data file under the current
    directory (and data prepare said '--out o: inside , which the input reads whole ...')."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.jsonl").write_text(json.dumps({"prompt": "q", "completion": "a"}) + "\n")
    with pytest.raises(DataError, match=r"^'': an empty path names no data; name a file, a directory \('.' for"):
        expand_inputs([""])
    args = [*command, ""] if command[0] == "data" else [*command, "--data", ""]
    code, out, err = run_cli(args)
    named = "INPUTS" if command[0] == "data" else "--data"  # the command line names the parameter (dsft.cli.empty_paths)
    assert code == 2 and f"{named} '': an empty path names nothing; give a data file" in err, (out, err)
    assert "Traceback" not in err, err
    assert not (tmp_path / "o").exists()
