"""Property-based: generated garbage never crashes the readers and every record is accounted for."""

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dsft.config import load_config
from dsft.data.ingest import ingest
from dsft.data.json_shapes import _holds_one_json_document, _opens_with_an_object_over_lines, is_comment_line
from dsft.data.pipeline import prepare
from dsft.errors import DataError
from dsft.text_encoding import wide_text_hint

KEYS = ["messages", "role", "content", "reasoning_content", "loss", "tool_calls", "conversations", "from", "value",
        "instruction", "input", "output", "history", "system", "tools", "text", "prompt", "completion", "question",
        "answer", "context", "Question", "Complex_CoT", "Response", "data", "meta", "domain"]
ROLES = ["system", "user", "assistant", "tool", "human", "gpt", "function_call", "observation", "bot", ""]
strings = st.one_of(st.text(max_size=12), st.sampled_from(["<think>", "</think>", "<think>x</think>y", "\ud800", "a\udcffb", " "]))
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), strings)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), inner, max_size=4), max_leaves=12)
turns = st.fixed_dictionaries({}, optional={"role": st.sampled_from(ROLES) | json_values, "content": strings | json_values,
                                            "from": st.sampled_from(ROLES), "value": strings | json_values,
                                            "reasoning_content": strings | json_values, "loss": scalars,
                                            "tool_calls": json_values})
records = st.one_of(
    json_values,
    st.dictionaries(st.sampled_from(KEYS), json_values, max_size=5),
    st.builds(lambda m, extra: {"messages": m, **extra}, st.lists(turns, max_size=4), st.dictionaries(st.sampled_from(KEYS), scalars, max_size=2)),
    st.builds(lambda c: {"conversations": c}, st.lists(turns, max_size=4)),
)
lines = st.one_of(records.map(lambda r: json.dumps(r).encode()), st.binary(max_size=30))


def _ingest_unless_wide_text(path: Path):
    """``ingest`` of ``path``, or None where the whole file is refused because its bytes read as UTF-16/UTF-32 text
    (:func:`dsft.text_encoding.wide_text_hint`), the readers' one refusal of a whole file for its bytes: generated
    bytes can be that (b"0\\x00" is UTF-16LE "0"), and then no record is read."""
    try:
        return ingest([str(path)])
    except DataError as error:
        assert wide_text_hint(path.read_bytes()[:4096]) and "not UTF-8 text; it " in str(error), str(error)
        return None


def _write(directory: Path, name: str, content: bytes) -> Path:
    path = directory / name
    path.write_bytes(content)
    return path


@settings(max_examples=120, deadline=None)
@given(st.lists(lines, min_size=1, max_size=15))
@example([b"[{}]"])  # one JSON array on a line: read as that array (it broke the line-by-line count once)
@example([b"[{}, {}]", b""])
@example([b"//", b"{}"])  # a comment line is no record (c180996): it was counted as one here
def test_jsonl_garbage_is_accounted_for(body: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        lines = [line.replace(b"\n", b" ") for line in body]
        path = _write(Path(directory), "g.jsonl", b"\n".join(lines) + b"\n")
        result = _ingest_unless_wide_text(path)
        if result is None:
            return
        if _holds_one_json_document(path) or _opens_with_an_object_over_lines(path):
            # A .jsonl holding one JSON array on a line ('[{}]') or objects over several lines is read as what it
            # holds (tests/data/test_data_readers.py), its records counted and located by item, not by line.
            assert result.read == len(result.conversations) + len(result.rejections)
            return
        lines[0] = lines[0].removeprefix(b"\xef\xbb\xbf")  # a leading byte-order mark is not content
        expected = sum(1 for line in lines if line.strip() and not is_comment_line(line))  # a comment: no record
        assert result.read == expected
        for rejection in result.rejections:
            assert rejection.where.startswith(f"{path}:") and rejection.reasons


@settings(max_examples=60, deadline=None)
@given(st.lists(records, max_size=10), st.binary(max_size=80))
def test_json_and_csv_garbage_never_crash(items: list, raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as directory:
        base = Path(directory)
        array = _write(base, "a.json", json.dumps(items).encode())
        assert ingest([str(array)]).read == len(items)
        wrapped = _write(base, "w.json", json.dumps({"data": items}).encode())
        assert ingest([str(wrapped)]).read == len(items)
        for name in ("r.json", "r.jsonl", "r.csv"):
            result = _ingest_unless_wide_text(_write(base, name, raw))
            if result is None:
                continue
            assert result.read == len(result.conversations) + len(result.rejections)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(lines, st.sampled_from([b'{"prompt": "p", "completion": "c"}', b'{"text": "plain text"}'])),
                min_size=1, max_size=12),
       st.booleans())
@example([b"//"], False)  # a comment line is no record (c180996): it was counted as one here
def test_prepare_accounting_identity_holds_on_garbage(tokenizer, body: list[bytes], near: bool) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = _write(Path(directory), "g.jsonl", b"\n".join(line.replace(b"\n", b" ") for line in body) + b"\n")
        cfg = load_config(None, [f"data.clean.near_dedup={str(near).lower()}", "data.clean.strip_html=true",
                                 "data.test_ratio=0.2"])
        try:
            report = prepare(cfg, tokenizer, Path(directory) / "out", [str(path)]).report
        except DataError as exc:
            if wide_text_hint(path.read_bytes()[:4096]):  # refused whole as UTF-16/32 text, before anything is read
                assert "not UTF-8 text; it " in str(exc)
                return
            assert "no records left" in str(exc)  # everything rejected or removed: still fully reported
            report = json.loads((Path(directory) / "out" / "data_report.json").read_text())
        assert report["read"] + sum(report["added"].values()) == (
            report["kept"] + report["rejected"] + sum(report["removed"].values()))
        lines = [line.replace(b"\n", b" ") for line in body]
        lines[0] = lines[0].removeprefix(b"\xef\xbb\xbf")
        assert report["read"] == sum(1 for line in lines if line.strip() and not is_comment_line(line))

