"""Property-based: one broken record in a pretty-printed JSON file (a lost comma, brace or quote) costs that record,
rejected where it begins; the records after it are read. It cost the rest of the file: one reject for records
pretty-printed one after another, and for an array whose broken item lost a brace; two items merged into one
reject where the comma between them was lost."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

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
