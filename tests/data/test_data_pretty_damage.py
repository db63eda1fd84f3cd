"""Property-based: one broken record in a pretty-printed JSON file (a lost comma, brace or quote) costs that record,
rejected where it begins; the records after it are read. It cost the rest of the file: one reject for records
pretty-printed one after another, and for an array whose broken item lost a brace; two items merged into one
reject where the comma between them was lost."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsft.data.ingest import ingest

texts = st.builds(lambda head, tail: head + tail, st.sampled_from("abcxyz"),
                  st.text(alphabet='abc xyz{}[]",:\\\n', max_size=12))
records = st.builds(lambda i, o, n: {"instruction": i, "output": o, "meta": {"n": n}, "history": [[i, o]]},
                    texts, texts, st.integers(0, 9))
SHAPES = {  # file name: rendering, the indentation of a record's first line, the location of record N on line L
    "objects.jsonl": (lambda items: "".join(json.dumps(r, indent=2) + "\n" for r in items), "", "{path}:{line}"),
    "objects.json": (lambda items: "".join(json.dumps(r, indent=2) + "\n" for r in items), "", "{path}:{line}"),
    "array.json": (lambda items: json.dumps(items, indent=2) + "\n", "  ", "{path} item {number} (line {line})"),
    "array.jsonl": (lambda items: json.dumps(items, indent=4) + "\n", "    ", "{path} item {number} (line {line})"),
    "wrapped.json": (lambda items: json.dumps({"data": items}, indent=2) + "\n", "    ",
                     "{path} item {number} (line {line})"),
}


def _break(text: str, indent: str, victim: int, damage: str) -> tuple[str, int]:
    """``text`` with record ``victim`` (0-based) broken by ``damage``, and the line that record begins on."""
    lines = text.split("\n")
    begin = [number for number, line in enumerate(lines) if line == indent + "{"][victim]
    end = next(number for number in range(begin, len(lines)) if lines[number].startswith(indent + "}"))
    if damage == "brace":  # the record's closing brace
        lines[end] = lines[end].replace("}", "", 1)
    elif damage == "inner comma":  # the comma after the instruction
        lines[begin + 1] = lines[begin + 1].removesuffix(",")
    else:  # the output's opening quote
        lines[begin + 2] = lines[begin + 2].replace('": "', '": ', 1)
    return "\n".join(lines), begin + 1


@settings(max_examples=40, deadline=None)
@given(st.lists(records, min_size=3, max_size=10), st.sampled_from(sorted(SHAPES)),
       st.sampled_from(["brace", "inner comma", "quote"]), st.data())
def test_one_broken_record_costs_itself_only(items: list[dict], shape: str, damage: str, data) -> None:
    victim = data.draw(st.integers(0, len(items) - 1))
    render, indent, where = SHAPES[shape]
    text, line = _break(render(items), indent, victim, damage)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / shape
        path.write_text(text, encoding="utf-8")
        result = ingest([str(path)])
    assert result.read == len(items)
    assert [r.where for r in result.rejections] == [where.format(path=path, number=victim + 1, line=line)]
    assert [c.meta["n"] for c in result.conversations] == [r["meta"]["n"] for r in items[:victim] + items[victim + 1:]]


def test_record_3_of_10_broken_in_every_pretty_shape(tmp_path: Path) -> None:
    items = [{"instruction": f"q{i}", "output": f"a{i}", "meta": {"n": i}} for i in range(1, 11)]
    for shape, (render, _, _) in SHAPES.items():
        text = render(items).replace('"q3",', '"q3"', 1)  # record 3 lost a comma
        (tmp_path / shape).write_text(text, encoding="utf-8")
        result = ingest([str(tmp_path / shape)])
        assert (result.read, len(result.rejections)) == (10, 1), shape
        assert [c.messages[0].content for c in result.conversations] == [f"q{i}" for i in range(1, 11) if i != 3]


def test_an_array_item_that_lost_the_comma_after_it_is_read_with_the_next(tmp_path: Path) -> None:
    items = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(1, 6)]
    path = tmp_path / "a.json"
    path.write_text(json.dumps(items, indent=2).replace("},\n  {", "}\n  {", 1))  # one comma between items lost
    result = ingest([str(path)])
    assert (result.read, len(result.rejections)) == (5, 0)  # two items merged into one reject before


def test_an_array_read_item_by_item_with_nothing_rejected_says_the_file_is_not_json(tmp_path: Path, caplog) -> None:
    """Every item of an array that lost a comma between two items parses alone, so nothing was rejected and
    nothing said: the file other JSON readers refuse (json.load, datasets) passed for valid."""
    items = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(1, 6)]
    path = tmp_path / "a.json"
    path.write_text(json.dumps(items, indent=2).replace("},\n  {", "}\n  {", 1))
    with caplog.at_level(logging.WARNING, logger="dsft"):
        ingest([str(path)])
    said = [r.getMessage() for r in caplog.records if str(path) in r.getMessage()]
    assert said == [f"{path}: not valid JSON (Expecting ',' delimiter, line 6, column 3), so other JSON readers "
                    "refuse it; read item by item, every item parsed"], said


@pytest.mark.parametrize("render", [lambda items: json.dumps(items)[:-1] + ",]",
                                    lambda items: json.dumps(items, indent=2)[:-2] + ",\n]\n",
                                    lambda items: json.dumps({"data": items})[:-2] + ",]}"],
                         ids=["one-line", "pretty", "data"])
def test_a_comma_after_an_arrays_last_item_reads_every_item_and_says_where(tmp_path: Path, caplog, render) -> None:
    """'[{...},{...},]' is read leniently, item by item: every item read once (no empty item made of the comma, no
    item lost) and one warning naming the line and column of the comma, since json.load and datasets refuse it."""
    items = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(1, 4)]
    path = tmp_path / "a.json"
    text = render(items)
    path.write_text(text, encoding="utf-8")
    bracket = text.rindex("]")  # where the decoder wanted one more item
    where = f"line {text.count(chr(10), 0, bracket) + 1}, column {bracket - text.rfind(chr(10), 0, bracket)}"
    with caplog.at_level(logging.WARNING, logger="dsft"):
        result = ingest([str(path)])
    assert (result.read, result.rejections) == (3, [])
    assert [c.messages[0].content for c in result.conversations] == ["q1", "q2", "q3"]
    said = [r.getMessage() for r in caplog.records if str(path) in r.getMessage()]
    assert said == [f"{path}: not valid JSON (Expecting value, {where}: a ',' before ']': JSON allows no comma after "
                    "the last item; delete it), so other JSON readers refuse it; read item by item, every item parsed"]


def _pandas_records(items: list[dict], indent: int) -> str:
    import pandas as pd

    return pd.DataFrame(items).to_json(orient="records", indent=indent, force_ascii=False)


WRITERS = {  # other writers' pretty-printed arrays: the record indentation is the first record's, whatever it is
    "tabs (json.dump indent='\\t', jq --tab)": lambda items: json.dumps(items, indent="\t"),
    "pandas to_json(orient='records', indent=4)": lambda items: _pandas_records(items, 4),
    "Windows line breaks": lambda items: json.dumps(items, indent=2).replace("\n", "\r\n"),
    "{\"data\": [...]} with tabs": lambda items: json.dumps({"data": items}, indent="\t"),
}


def test_record_3_of_10_broken_in_other_writers_layouts(tmp_path: Path) -> None:
    items = [{"instruction": f"q{i}", "output": f"a{i}", "meta": {"n": i}} for i in range(1, 11)]
    for number, (writer, render) in enumerate(WRITERS.items()):
        text = render(items)
        assert json.loads(text)  # the writer's own output is valid; the damage below is the only fault
        path = tmp_path / f"{number}.json"
        path.write_bytes(text.replace('"q3",', '"q3"', 1).encode("utf-8"))  # record 3 lost a comma
        result = ingest([str(path)])
        assert (result.read, len(result.rejections)) == (10, 1), writer
        assert [c.messages[0].content for c in result.conversations] == [f"q{i}" for i in range(1, 11) if i != 3]


STRAY_COMMAS = {  # a comma doubled between two records: every record intact
    "array.json": lambda items: json.dumps(items, indent=2).replace("},\n  {", "},\n  ,\n  {", 1),
    "array at column 0.json": lambda items: json.dumps(items, indent=2).replace("},\n  {", "},\n,\n  {", 1),
    "array in tabs.json": lambda items: json.dumps(items, indent="\t").replace("},\n\t{", "},,\n\t{", 1),
    "objects.jsonl": lambda items: "".join(json.dumps(r, indent=2) + "\n" for r in items).replace("}\n{", "}\n,\n{", 1),
    "objects.json": lambda items: "".join(json.dumps(r, indent=2) + "\n" for r in items).replace("}\n{", "},\n{", 1),
}


def test_a_comma_doubled_between_pretty_printed_records_costs_no_record(tmp_path: Path, caplog) -> None:
    """In an array the record before the doubled comma was rejected ('Extra data'), though intact; between records
    one after another the comma was counted as a record read and rejected ('Expecting value'), one more than the
    file holds. Now every record is read, nothing rejected, and a warning says where the comma is."""
    items = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(1, 5)]
    for name, render in STRAY_COMMAS.items():
        path = tmp_path / name
        path.write_text(render(items), encoding="utf-8")
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="dsft"):
            result = ingest([str(path)])
        assert (result.read, [r.where for r in result.rejections]) == (4, []), name
        assert [c.messages[0].content for c in result.conversations] == ["q1", "q2", "q3", "q4"], name
        said = [r.getMessage() for r in caplog.records if str(path) in r.getMessage()]
        assert len(said) == 1 and "not valid JSON" in said[0] and "','" in said[0], (name, said)


UNINDENTED = {  # json.dumps(..., indent=0): a line break before every key and object, no indentation at all
    "array.json": lambda items: json.dumps(items, indent=0),
    "wrapped.json": lambda items: json.dumps({"data": items}, indent=0),
    "objects.jsonl": lambda items: "".join(json.dumps(r, indent=0) + "\n" for r in items),
}
def _without(text: str, index: int) -> str:
    return text[:index] + text[index + 1:]


UNINDENTED_DAMAGE = {  # record 3 (of 5) broken
    "quote": lambda text: text.replace('"q3"', '"q3', 1),
    "brace": lambda text: _without(text, text.index("}", text.index("]", text.index('"a3"')))),  # after its list
    "comma between its messages": lambda text: text.replace('"q3"\n},', '"q3"\n}', 1),
}


def test_one_broken_record_costs_itself_only_at_no_indentation(tmp_path: Path) -> None:
    """With no indentation, an object in a record's list of messages opens a line at the records' column: it was
    taken for a record, so one broken record of five made up to 15 records read, all rejected (an array), or extra
    records read and rejected (records one after another)."""
    items = [{"conversations": [{"from": "human", "value": f"q{i}"}, {"from": "gpt", "value": f"a{i}"}]}
             for i in range(1, 6)]
    for shape, render in UNINDENTED.items():
        for damage, breaks in UNINDENTED_DAMAGE.items():
            text = breaks(render(items))
            assert text != render(items)
            path = tmp_path / shape
            path.write_text(text, encoding="utf-8")
            result = ingest([str(path)])
            assert (result.read, len(result.rejections)) == (5, 1), (shape, damage)
            assert [c.messages[0].content for c in result.conversations] == ["q1", "q2", "q4", "q5"], (shape, damage)


WRAPPERS = {  # an object holding the records under "data", other keys before and after the array
    "a key after": lambda items: {"data": items, "version": 1},
    "a key before": lambda items: {"version": 1, "data": items},
    "nested keys before and after": lambda items: {"meta": {"name": "qa", "tags": ["x", "y"], "source": {"n": [1]}},
                                                   "data": items, "count": len(items)},
    "objects in a list after": lambda items: {"data": items, "splits": [{"name": "train", "records": len(items)}]},
}
WRAPPER_LAYOUTS = {
    "indent 2": lambda value: json.dumps(value, indent=2),
    "tabs": lambda value: json.dumps(value, indent="\t"),
    "Windows line breaks": lambda value: json.dumps(value, indent=2).replace("\n", "\r\n"),
    "no indentation": lambda value: json.dumps(value, indent=0),
}


def _without_brace_of(text: str, number: int) -> str:
    return _without(text, text.index("}", text.index(f'"a{number}"')))


WRAPPER_DAMAGE = {  # (record broken, how)
    "a comma after record 2's last field": (2, lambda text: text.replace('"a2"', '"a2",', 1)),
    "record 2 lost a comma": (2, lambda text: text.replace('"q2",', '"q2"', 1)),
    "record 2 lost its closing brace": (2, lambda text: _without_brace_of(text, 2)),
    "record 5 (the last) lost a quote": (5, lambda text: text.replace('"a5"', '"a5', 1)),
    "a comma after record 5's last field": (5, lambda text: text.replace('"a5"', '"a5",', 1)),
}


def _read(path: Path) -> tuple[int, list[str], list[tuple]]:
    """Records read, where each rejected one is, and each kept one's message texts and metadata."""
    result = ingest([str(path)])
    return result.read, [r.where for r in result.rejections], [
        ([m.content for m in c.messages], {k: v for k, v in c.meta.items() if k != "origin"})
        for c in result.conversations]


def test_one_broken_record_costs_itself_only_whatever_keys_wrap_the_array(tmp_path: Path) -> None:
    """With a key after the array ({"data": [...], "version": 1}) the last record's text ran on to the end of the
    file, so an intact last record was rejected ('Extra data'); with a key before it the file was not taken for an
    array at all: one reject for the whole file. Now the damaged file reads as the intact one does, less the broken
    record, rejected at the line it begins on."""
    items = [{"instruction": f"q{i}", "output": f"a{i}", "id": i} for i in range(1, 6)]
    for wrapper, wrap in WRAPPERS.items():
        for layout, render in WRAPPER_LAYOUTS.items():
            text = render(wrap(items))
            intact = tmp_path / "intact.json"
            intact.write_bytes(text.encode("utf-8"))
            _, _, whole = _read(intact)
            assert len(whole) == 5, (wrapper, layout)
            for damage, (victim, breaks) in WRAPPER_DAMAGE.items():
                case = (wrapper, layout, damage)
                path = tmp_path / "damaged.json"
                path.write_bytes(breaks(text).encode("utf-8"))
                with pytest.raises(json.JSONDecodeError):
                    json.loads(path.read_text(encoding="utf-8"))
                line = text.count("\n", 0, text.rindex("{", 0, text.index(f'"q{victim}"'))) + 1
                read, rejected, kept = _read(path)
                assert (read, rejected) == (5, [f"{path} item {victim} (line {line})"]), case
                assert kept == whole[:victim - 1] + whole[victim:], case


def test_a_damaged_pandas_table_is_read_record_by_record_without_its_index(tmp_path: Path) -> None:
    """df.to_json(orient='table', indent=2) puts its schema before the records: one broken record made the whole file
    one reject. Now it costs that record, and pandas' row index is dropped as from the intact file."""
    import pandas as pd

    items = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(1, 6)]
    text = pd.DataFrame(items).to_json(orient="table", indent=2)
    (tmp_path / "intact.json").write_text(text, encoding="utf-8")
    _, _, whole = _read(tmp_path / "intact.json")
    path = tmp_path / "table.json"
    path.write_text(text.replace('"q3",', '"q3"', 1), encoding="utf-8")
    read, rejected, kept = _read(path)
    line = text.count("\n", 0, text.rindex("{", 0, text.index('"q3"'))) + 1
    assert (read, rejected) == (5, [f"{path} item 3 (line {line})"])
    assert kept == whole[:2] + whole[3:] and all(meta == {} for _, meta in kept)


def test_records_one_after_another_with_a_list_under_data_are_no_wrapper(tmp_path: Path) -> None:
    """Records pretty-printed one after another, each with a list under "data", were taken for a {"data": [...]}
    wrapper: the first record's list items were read as the records (two integers, both rejected) and the three
    records lost. A wrapper is alone in its file: each record is read, under a .json or a .jsonl name, and a broken
    one costs itself."""
    items = [{"data": [1, 2], "instruction": f"q{i}", "output": f"a{i}"} for i in range(1, 4)]
    text = "".join(json.dumps(r, indent=2) + "\n" for r in items)
    for name in ("objects.json", "objects.jsonl"):
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        read, rejected, kept = _read(path)
        assert (read, rejected, [m[0] for m, _ in kept]) == (3, [], ["q1", "q2", "q3"]), name
        path.write_text(text.replace('"q2",', '"q2"', 1), encoding="utf-8")
        read, rejected, kept = _read(path)
        line = text.count("\n", 0, text.rindex("{", 0, text.index('"q2"'))) + 1
        assert (read, rejected, [m[0] for m, _ in kept]) == (3, [f"{path}:{line}"], ["q1", "q3"]), name


def test_a_wrapper_with_keys_before_its_records_is_read_under_a_jsonl_name(tmp_path: Path) -> None:
    """{"version": 1, "data": [...]} pretty-printed under a .jsonl name was read as one object, rejected as 'unknown
    format (keys: data, version)'; {"data": [...], "version": 1} was read as its records. Both are now."""
    items = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(1, 4)]
    for number, value in enumerate(({"version": 1, "data": items}, {"meta": {"n": 3}, "data": items, "count": 3})):
        path = tmp_path / f"{number}.jsonl"
        path.write_text(json.dumps(value, indent=2), encoding="utf-8")
        read, rejected, kept = _read(path)
        assert (read, rejected, [m[0] for m, _ in kept]) == (3, [], ["q1", "q2", "q3"]), value


def test_dsft_data_prepare_keeps_every_intact_record_of_a_wrapper_with_a_key_after_its_array(tmp_path: Path,
                                                                                              run_cli) -> None:
    """The reviewer's case: json.dumps({"data": records, "version": 1}, indent=2), record 2 given a trailing comma.
    dsft data prepare rejected 2 of 5 (record 2, and record 5 as 'Extra data'); now record 2 alone, named by its
    file and line, and the report's accounting adds up."""
    items = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(1, 6)]
    text = json.dumps({"data": items, "version": 1}, indent=2)
    data, out = tmp_path / "qa.json", tmp_path / "prepared"
    data.write_text(text.replace('"a2"', '"a2",', 1), encoding="utf-8")
    code, _, err = run_cli(["data", "prepare", str(data), "--out", str(out), "--tokenizer", "deepseek",
                            "--set", "data.val_ratio=0"])
    assert code == 0, err
    report = json.loads((out / "data_report.json").read_text(encoding="utf-8"))
    assert (report["read"], report["rejected"], report["kept"]) == (5, 1, 4)
    assert report["read"] == report["kept"] + report["rejected"] + sum(report["removed"].values())
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [row["where"] for row in rejects] == [f"{data} item 2 (line 7)"]


def test_a_lost_quote_before_brackets_costs_its_record_only(tmp_path: Path) -> None:
    """Found by the property test above (seed 10): records one after another, the first losing its output's opening
    quote before '[[' ("output": a[[",). Counting brackets from the broken record (07d42f1, for indent=0 files) left
    two open to the end of the file: all three records were one reject."""
    items = [{"instruction": "a", "output": f"a{i}[[", "meta": {"n": i}, "history": [["a", "a[["]]} for i in range(3)]
    text = "".join(json.dumps(r, indent=2) + "\n" for r in items).replace('"output": "a0', '"output": a0', 1)
    path = tmp_path / "objects.json"
    path.write_text(text, encoding="utf-8")
    result = ingest([str(path)])
    assert (result.read, [r.where for r in result.rejections]) == (3, [f"{path}:1"])
    assert [c.meta["n"] for c in result.conversations] == [1, 2]
