"""Validation: every bad-input case is a rejection with file:line and a reason, never a crash."""

import json
from pathlib import Path

import pytest

from dsft.data.conversation import Conversation, Message
from dsft.data.ingest import ingest, rejection_error
from dsft.data.validate import find_bad_unicode, validate_conversation

U = {"role": "user", "content": "q"}
A = {"role": "assistant", "content": "a"}
BAD_RECORDS = [
    ({"messages": [A]}, "first turn after system messages must be a user turn"),
    ({"messages": [U, {"role": "assistant", "content": "   "}]}, "messages[1].content: empty assistant message"),
    ({"messages": [{"role": "user", "content": ""}, A]}, "messages[0].content: empty user message"),
    # Invisible characters only (zero-width space, joiner, left-to-right mark): nothing for the model to read or write.
    ({"messages": [U, {"role": "assistant", "content": "\u200b\u200d"}]}, "messages[1].content: empty assistant message"),
    ({"messages": [{"role": "user", "content": "\u200e \u200d"}, A]}, "messages[0].content: empty user message"),
    ({"messages": [U, {"role": "assistant", "content": "a", "reasoning_content": "\u200b"}]}, "empty reasoning"),
    ({"messages": [U, {"role": "assistant", "content": "<think>never closed"}]}, "unclosed <think> block"),
    ({"messages": [U, {"role": "assistant", "content": "<think>\n\n</think>\n\nok"}]}, "empty reasoning"),
    ({"messages": [U, {"role": "assistant", "content": "ok</think>"}]}, "</think> without an opening <think>"),
    # The chain of thought twice: in a leading think block and in its own field (it was 'not at the start').
    ({"messages": [U, {"role": "assistant", "content": "<think>r</think>a", "reasoning_content": "r"}]},
     "messages[1].content: a leading <think> block, and the reasoning given in its own field too"),
    ({"Question": "q", "Complex_CoT": "r", "Response": " <think>r</think>a"},
     "Response: a leading <think> block, and the reasoning given in its own field too (reasoning_content, "
     "Complex_CoT): give the chain of thought once"),
    ({"messages": [U, {"role": "assistant", "content": "a <think>r</think>b", "reasoning_content": "r"}]},
     "messages[1].content: <think> block not at the start of the message, or nested"),
    ({"messages": [U, A, U]}, "the last message must be an assistant turn"),
    ({"messages": [U, {"role": "tool", "content": "r"}, A]}, "tool message must follow an assistant message with tool_calls"),
    ({"messages": [U, {"role": "assistant", "content": "a", "loss": False}]}, "nothing to train on"),
    ({"messages": [{"role": "user", "content": "q", "reasoning_content": "r"}, A]}, "only allowed on assistant"),
    ({"messages": [U, {"role": "assistant", "content": "bad \ud800 text"}]}, "lone surrogate U+D800"),
    ({"messages": [{"role": "wizard", "content": "q"}, A]}, "unknown role 'wizard'"),
    ({"messages": [U, {"role": "assistant", "content": ["not", "parts"]}]}, "is not a text part"),
    ({"instruction": "q", "output": 42}, "output is an integer"),
    ("just a string", "record is a string"),
    ({"messages": [U, {"role": "assistant", "content": "", "tool_calls": [{"function": {"arguments": "{}"}}]}]},
     "tool_calls[0].function.name: expected a non-empty string"),
]


def test_every_bad_record_is_rejected_with_file_line_and_reason(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    lines = [json.dumps({"messages": [U, A]})] + [json.dumps(record) for record, _ in BAD_RECORDS]
    path.write_bytes(("\n".join(lines) + "\n").encode() + b'{"text": "caf\xe9"}\n{not json}\n')
    result = ingest([str(path)])
    assert len(result.conversations) == 1 and result.read == len(lines) + 2
    rejected = {r.where: " ".join(r.reasons) for r in result.rejections}
    for number, (_, reason) in enumerate(BAD_RECORDS, start=2):
        assert reason in rejected[f"{path}:{number}"], (number, rejected[f"{path}:{number}"])
    assert "not valid UTF-8" in rejected[f"{path}:{len(lines) + 1}"]
    assert "malformed JSON" in rejected[f"{path}:{len(lines) + 2}"]


def test_csv_non_utf8_cell_is_rejected_by_row(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(b"prompt,completion\nfine,ok\nbad\xff,ok\n")
    result = ingest([str(path)])
    assert len(result.conversations) == 1
    [rejection] = result.rejections
    assert rejection.where == f"{path} row 2 (line 3)"
    assert "not valid UTF-8 (byte 0xFF" in rejection.reasons[0]


def test_missing_mapped_column_is_a_rejection_per_record(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"q": "x", "a": "y"}) + "\n" + json.dumps({"q": "x", "answer": "y"}) + "\n")
    result = ingest([str(path)], "context_qa", {"question": "q", "answer": "a"})
    assert len(result.conversations) == 1
    assert "column 'a' (mapped to answer) is missing" in result.rejections[0].reasons[0]


def test_fail_policy_error_lists_first_problems_and_the_count(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text("{oops\n" * 25)
    error = rejection_error(ingest([str(path)]).rejections, tmp_path / "rejects.jsonl")
    assert str(error).startswith("25 invalid record(s)")
    assert len(error.problems) == 21 and error.problems[-1] == "... and 5 more"
    assert error.problems[0].startswith(f"{path}:1: malformed JSON")


def test_valid_conversations_pass() -> None:
    tool_turns = Conversation([
        Message("system", "s"), Message("system", "s2"), Message("user", "q"),
        Message("assistant", "", tool_calls=[{"type": "function", "function": {"name": "f", "arguments": "{}"}}]),
        Message("tool", "r1"), Message("tool", "r2"), Message("assistant", "done", reasoning="why"),
    ])
    assert validate_conversation(tool_turns) == []
    text = Conversation([Message("assistant", "raw text")], meta={"kind": "text"})
    assert validate_conversation(text) == []


@pytest.mark.parametrize(("text", "expected"), [("ok", None), ("a\udcffb", "not valid UTF-8 (byte 0xFF at character 1)")])
def test_find_bad_unicode(text: str, expected: str | None) -> None:
    assert find_bad_unicode(text) == expected


def test_rejects_file_keeps_the_raw_text_of_lines_that_do_not_parse(tmp_path: Path) -> None:
    from dsft.data.ingest import write_rejections
    from dsft.data.raw_record import MAX_RAW_CHARS

    path = tmp_path / "broken.jsonl"
    long_line = '{"text": "' + "x" * (MAX_RAW_CHARS + 500) + '"'  # the closing brace was lost
    path.write_bytes(b'{"messages": [{"role": "user", "content": "q"}, oops]}\n' + b'{"text": "caf\xe9"\n'
                     + long_line.encode() + b"\n" + b'{"text": 1}\n')
    result = ingest([str(path)])
    write_rejections(result.rejections, tmp_path / "rejects.jsonl")
    rows = {r["where"]: r for r in map(json.loads, (tmp_path / "rejects.jsonl").read_text().splitlines())}
    first = rows[f"{path}:1"]
    assert first["record"] is None and first["raw"] == '{"messages": [{"role": "user", "content": "q"}, oops]}'
    assert first["raw_cut"] is False
    assert rows[f"{path}:2"]["raw"] == '{"text": "caf\udce9"'  # the undecodable byte kept, as read_json keeps it
    long = rows[f"{path}:3"]
    assert long["raw"] == long_line[:MAX_RAW_CHARS] and long["raw_cut"] is True
    assert "raw" not in rows[f"{path}:4"] and rows[f"{path}:4"]["record"] == {"text": 1}  # parsed: the record is there


@pytest.mark.parametrize("role", ["system", "user", "tool"])
@pytest.mark.parametrize("text", ["<think>why", "why</think> so", "<think>why</think> so"])
def test_a_think_tag_outside_an_assistant_message_is_named_as_such(role: str, text: str) -> None:
    # A think block belongs to an assistant turn only; "unclosed <think> block" sent users hunting for a missing tag.
    call = [{"type": "function", "function": {"name": "f", "arguments": "{}"}}]
    before = {"system": [], "user": [], "tool": [Message("user", "q"), Message("assistant", "", tool_calls=call)]}[role]
    after = [Message("user", "q")] if role == "system" else []
    conversation = Conversation([*before, Message(role, text), *after, Message("assistant", "a")])
    tag = "<think>" if "<think>" in text else "</think>"
    assert validate_conversation(conversation) == [
        f"messages[{len(before)}].content: {tag} is not allowed in a {role} message, only in an assistant message's "
        "leading think block"
    ]
    unclosed = Conversation([Message("user", "q"), Message("assistant", "<think>why")])
    assert validate_conversation(unclosed) == ["messages[1].content: unclosed <think> block"]


THINK_IN_USER = "<think> is not allowed in a user message, only in an assistant message's leading think block"


@pytest.mark.parametrize(("record", "columns", "said"), [
    # A separate system field goes in front of the messages: the bad turn is still the file's messages[1].
    ({"system": "Be brief.", "messages": [U, {"role": "user", "content": "<think>x"}, A]}, None,
     [f"messages[1].content: {THINK_IN_USER}"]),
    ({"system": "Be brief.", "messages": [U, {"role": "assistant", "content": " "}]}, None,
     ["messages[1].content: empty assistant message"]),
    ({"system": "Be <think>", "messages": [U, A]}, None, [f"system: {THINK_IN_USER.replace('user', 'system')}"]),
    ({"system": "s", "conversations": [U, U]}, None,
     ["conversations[1]: the last message must be an assistant turn, got user"]),
    # Alpaca has no messages: each problem names its field (a joined instruction + input, the one holding it).
    ({"instruction": "Add", "input": "", "output": ""}, None, ["output: empty assistant message"]),
    ({"system": "s", "instruction": "Add", "input": "1+<think>", "output": "2"}, None, [f"input: {THINK_IN_USER}"]),
    ({"instruction": "Add", "input": "1+\udcc8", "output": "2"}, None,
     ["input: not valid UTF-8 (byte 0xC8 at character 2)"]),
    ({"instruction": "Add", "output": "2", "history": [["q", "<think>a"]]}, None,
     ["history[0][1]: unclosed <think> block"]),
    # A renamed column is named by its own name.
    ({"q": "Add", "a": "<think>x"}, {"instruction": "q", "output": "a"}, ["a: unclosed <think> block"]),
    ({"q": 5, "a": "x"}, {"instruction": "q", "output": "a"}, ["q is an integer, expected a string"]),
    ({"dialog": [A]}, {"messages": "dialog"},
     ["dialog[0]: the first turn after system messages must be a user turn, got assistant"]),
    # ShareGPT: the text is value, the speaker from.
    ({"system": "s", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "<think>"}]}, None,
     ["conversations[1].value: unclosed <think> block"]),
    ({"conversations": [{"from": "human", "value": "hi"}, {"from": "function_call", "value": '{"name": " "}'},
                        {"from": "observation", "value": "r"}, {"from": "gpt", "value": "a"}]}, None,
     ["conversations[1].value: function_call name: expected a non-empty string"]),
    ({"conversations": [{"from": "gpt", "value": "hi"}]}, None,
     ["conversations[0]: the first turn after system messages must be a user turn, got assistant"]),
    # CoT: the reasoning is Complex_CoT, the answer Response.
    ({"Question": "q", "Complex_CoT": " ", "Response": "A"}, None,
     ["Complex_CoT: empty reasoning (<think> block); drop it for a no-think sample"]),
    ({"system": "s", "Question": "q", "Response": "<think>A"}, None, ["Response: unclosed <think> block"]),
    ({"Question": "q", "Complex_CoT": "t\udcc8", "Response": "A"}, None,
     ["Complex_CoT: not valid UTF-8 (byte 0xC8 at character 1)"]),
    ({"context": "ctx <think>", "question": "q", "answer": "a"}, None, [f"context: {THINK_IN_USER}"]),
    ({"prompt": "", "completion": "a"}, None, ["prompt: empty user message"]),
    ({"text": " "}, None, ["text: empty text"]),  # a pre-training text has no assistant message to speak of
    # A character after a leading think block that was split off is counted as the record counts it.
    ({"conversations": [{"from": "human", "value": "h"}, {"from": "gpt", "value": "<think>\nt\udcc8</think>\n\ng"}]},
     None, ["conversations[1].value: not valid UTF-8 (byte 0xC8 at character 9)"]),
    ({"messages": [U, {"role": "assistant", "content": "<think>t</think>\n\nab\udcc8"}]}, None,
     ["messages[1].content: not valid UTF-8 (byte 0xC8 at character 20)"]),
    ({"instruction": "i", "output": " <think>t</think>a\udcc8"}, None,
     ["output: not valid UTF-8 (byte 0xC8 at character 18)"]),
    # A problem of the whole list of turns names the record's list, not messages.
    ({"conversations": []}, None, ["conversations: no messages"]),
    ({"conversations": [{"from": "system", "value": "s"}]}, None,
     ["conversations: only system messages, nothing to train on"]),
    ({"dialog": []}, {"messages": "dialog"}, ["dialog: no messages"]),
])
def test_a_problem_is_named_where_it_is_in_the_record_as_written(tmp_path: Path, record: dict, columns: dict | None,
                                                                  said: list[str]) -> None:
    """The messages dsft built were numbered: a separate system field in front made the file's messages[1]
    messages[2], and an Alpaca, ShareGPT or CoT record was named by messages[i] it does not have."""
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(record) + "\n", encoding="utf-8", errors="surrogateescape")
    [rejection] = ingest([str(path)], columns=columns).rejections
    assert rejection.reasons == said
