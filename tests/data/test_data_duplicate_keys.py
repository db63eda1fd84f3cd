"""A JSON record that names a key twice is rejected, naming the key, in every JSON shape the readers accept;
Python's json kept the last value without a word, so the other was lost."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsft.data.ingest import ingest

TWICE = '{"instruction": "a", "output": "b", "output": "c"}'
FINE = '{"instruction": "q", "output": "r"}'
PRETTY_TWICE = '{\n  "instruction": "a",\n  "output": "b",\n  "output": "c"\n}'
PRETTY_FINE = '{\n  "instruction": "q",\n  "output": "r"\n}'

SHAPES = {
    "JSON lines": ("d.jsonl", f"{TWICE}\n{FINE}\n", ":1"),
    "an array on one line": ("d.json", f"[{TWICE}, {FINE}]", " item 1"),
    "an array under a .jsonl name": ("d.jsonl", f"[{TWICE}, {FINE}]\n", " item 1"),
    "a pretty-printed array": ("d.json", f"[\n{PRETTY_TWICE},\n{PRETTY_FINE}\n]\n", " item 1"),
    "a data wrapper": ("d.json", f'{{"data": [{TWICE}, {FINE}]}}', " item 1"),
    "objects over lines": ("d.jsonl", f"{PRETTY_TWICE}\n{PRETTY_FINE}\n", ":1"),
    "a damaged array, item by item": ("d.json", f"[{TWICE}, {FINE}, {{oops}}]", " item 1"),
    "JSON lines under a .json name": ("d.json", f"{TWICE}\n{FINE}\n{FINE}\n", ":1"),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_a_record_naming_a_key_twice_is_rejected_naming_it(tmp_path: Path, shape: str) -> None:
    name, content, where = SHAPES[shape]
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    result = ingest([str(path)])
    twice = [r for r in result.rejections if "output" in " ".join(r.reasons)]
    assert len(twice) == 1, (shape, [r.reasons for r in result.rejections])
    assert twice[0].where == f"{path}{where}"
    assert twice[0].reasons == ["duplicate key 'output': an object names it twice and JSON readers keep only the "
                                "last value; keep one"]
    assert '"output": "b"' in twice[0].raw  # the record as written, both values, for rejects.jsonl
    assert [c.messages[0].content for c in result.conversations][:1] == ["q"]
    assert all(c.messages[1].content != "c" for c in result.conversations)


def test_a_key_named_twice_deep_in_a_record_rejects_that_record(tmp_path: Path) -> None:
    twice = '[{"role": "user", "content": "hi", "content": "hello"}, {"role": "assistant", "content": "yo"}]'
    once = '[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]'
    path = tmp_path / "d.json"
    path.write_text(f'[{{"messages": {twice}}}, {{"messages": {once}}}]')
    result = ingest([str(path)])
    assert [r.where for r in result.rejections] == [f"{path} item 1"]
    assert result.rejections[0].reasons[0].startswith("duplicate key 'content'")
    assert len(result.conversations) == 1


def test_a_data_wrapper_naming_data_twice_is_one_reject(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text(f'{{"data": [{FINE}], "data": [{FINE}, {FINE}]}}')
    result = ingest([str(path)])
    assert result.conversations == [] and [r.reasons[0][:20] for r in result.rejections] == ["duplicate key 'data'"]


def test_records_without_keys_named_twice_read_as_before(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    rows = [{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "meta": {"k": 1}},
            {"instruction": "i", "output": "o"}]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = ingest([str(path)])
    assert result.rejections == [] and len(result.conversations) == 2
    assert type(result.conversations[0].meta) is dict
