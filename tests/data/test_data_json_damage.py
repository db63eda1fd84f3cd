"""Property-based: damaged bytes in a ``.json`` file cost the records they touch, not the whole file.

Layouts: a compact array, an array with one item per line, and JSON lines saved under a ``.json``
name. Damage: invalid UTF-8 inside string values (recovered exactly: only the damaged records are
rejected), one line replaced by garbage (exact for JSON lines and for arrays when the garbage holds no
JSON punctuation), and arbitrary bytes anywhere (never a crash, every record accounted for).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from dsft.data.ingest import ingest

MARK = "MARKER"
words = st.text(alphabet="abcdefghxyz", min_size=1, max_size=8)
records = st.builds(lambda q, a: {"messages": [{"role": "user", "content": f"{q} {MARK}"},
                                                {"role": "assistant", "content": a}]}, words, words)
layouts = st.sampled_from(["array", "array-lines", "json-lines"])


def _render(items: list[dict], layout: str) -> bytes:
    dumped = [json.dumps(item) for item in items]
    if layout == "array":
        return ("[" + ", ".join(dumped) + "]").encode()
    if layout == "array-lines":
        return ("[\n" + ",\n".join(dumped) + "\n]\n").encode()
    return ("\n".join(dumped) + "\n").encode()


def _ingest(content: bytes):
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "damaged.json"
        path.write_bytes(content)
        result = ingest([str(path)])
        assert result.read == len(result.conversations) + len(result.rejections)
        for rejection in result.rejections:
            assert rejection.where.startswith(str(path)) and rejection.reasons
        return result


@settings(max_examples=40, deadline=None)
@given(st.lists(records, min_size=1, max_size=12), layouts, st.data())
def test_invalid_utf8_inside_strings_rejects_only_those_records(items: list[dict], layout: str, data) -> None:
    content = bytearray(_render(items, layout))
    marks = [i for i in range(len(content)) if content.startswith(MARK.encode(), i)]
    hit = data.draw(st.sets(st.sampled_from(marks), min_size=1, max_size=len(marks)))
    for start in hit:
        content[start + data.draw(st.integers(0, len(MARK) - 1))] = data.draw(st.integers(0x80, 0xFF))
    result = _ingest(bytes(content))
    assert result.read == len(items)
    assert len(result.conversations) == len(items) - len(hit)


@settings(max_examples=40, deadline=None)
@given(st.lists(records, min_size=3, max_size=12), st.sampled_from(["array-lines", "json-lines"]), st.data())
def test_one_garbage_line_costs_one_record(items: list[dict], layout: str, data) -> None:
    lines = _render(items, layout).split(b"\n")
    offset = 1 if layout == "array-lines" else 0  # the "[" line
    victim = offset + data.draw(st.integers(0, len(items) - 1))
    # Array items must keep their separator; JSON punctuation in the garbage could join items.
    alphabet = st.binary(min_size=1, max_size=40).filter(lambda b: b"\n" not in b and b"\r" not in b)
    if layout == "array-lines":
        alphabet = alphabet.filter(lambda b: not set(b) & set(b'[]{}",\\'))
    garbage = data.draw(alphabet)
    if layout == "array-lines" and lines[victim].endswith(b","):
        garbage += b","
    lines[victim] = garbage
    result = _ingest(b"\n".join(lines))
    if layout == "json-lines":
        # A blank line separates records (it is none); a leading byte-order mark is not content.
        blank = not (garbage.removeprefix(b"\xef\xbb\xbf") if victim == 0 else garbage).strip()
    else:
        blank = not garbage.rstrip(b",").decode("utf-8", "surrogateescape").strip()
    assert result.read == len(items) - blank
    assert len(result.conversations) >= len(items) - 1


@settings(max_examples=50, deadline=None)
@given(st.lists(records, min_size=1, max_size=10), layouts, st.data())
def test_arbitrary_damage_never_crashes_and_is_accounted_for(items: list[dict], layout: str, data) -> None:
    content = bytearray(_render(items, layout))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(content) - 1))
        action = data.draw(st.sampled_from(["replace", "delete", "insert", "truncate"]))
        if action == "replace":
            content[position] = data.draw(st.integers(0, 255))
        elif action == "delete":
            del content[position]
        elif action == "insert":
            content[position:position] = data.draw(st.binary(min_size=1, max_size=4))
        else:
            del content[max(position, 1):]
        if not content:
            content = bytearray(b"x")
    result = _ingest(bytes(content))
    assert result.read >= 1


def test_examples_from_the_report_keep_their_record_count(tmp_path: Path) -> None:
    """80 records with one bad byte used to count as 1 rejected record; a bad first line as 1 too."""
    items = [{"prompt": f"q{i}", "completion": f"a{i}"} for i in range(80)]
    array = bytearray(json.dumps(items).encode())
    array[array.index(b"q41") + 1] = 0xFF
    (tmp_path / "array.json").write_bytes(bytes(array))
    lines = [json.dumps(item).encode() for item in items]
    lines[0] = b'{"prompt": "q0", "completion": '
    (tmp_path / "lines.json").write_bytes(b"\n".join(lines) + b"\n")
    for name in ("array.json", "lines.json"):
        result = ingest([str(tmp_path / name)])
        assert (result.read, len(result.conversations), len(result.rejections)) == (80, 79, 1), name
