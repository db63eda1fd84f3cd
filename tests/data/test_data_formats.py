"""One fixture file per input format, normalised to Conversation; detection and column mapping."""

import json
import re
from pathlib import Path

import pytest

from dsft.data.formats import FormatProblem, convert, detect_format, to_conversation
from dsft.data.input_checks import column_name_problems
from dsft.data.ingest import ingest
from dsft.data.inline_think import split_inline_think


def _ingest(path: Path, **kwargs):
    result = ingest([str(path)], **kwargs)
    assert not result.rejections, [r.as_dict() for r in result.rejections]
    return result


def test_messages_with_reasoning_tools_loss_and_inline_think(fixtures_dir: Path) -> None:
    convs = _ingest(fixtures_dir / "messages.jsonl").conversations
    first, tools, loss = convs
    assert first.roles == ["system", "user", "assistant"]
    assert first.messages[2].reasoning == "The record says 1958."
    assert first.meta["domain"] == "history" and first.meta["origin"].endswith("messages.jsonl:1")
    assert tools.roles == ["user", "assistant", "tool", "assistant"]
    assert tools.messages[1].tool_calls[0]["function"]["name"] == "get_weather" and tools.messages[1].content == ""
    assert tools.tools[0]["function"]["name"] == "get_weather"
    assert loss.messages[1].loss is False
    assert (loss.messages[3].reasoning, loss.messages[3].content) == ("Add them.", "4")


def test_conversations_and_sharegpt(fixtures_dir: Path) -> None:
    [conv] = _ingest(fixtures_dir / "conversations.jsonl").conversations
    assert conv.roles == ["system", "user", "assistant"] and conv.messages[0].content == "Answer briefly."
    plain, tools = _ingest(fixtures_dir / "sharegpt.json").conversations
    assert plain.roles == ["system", "user", "assistant"] and plain.messages[2].content == "Paris."
    assert tools.roles == ["user", "assistant", "tool", "assistant"]
    call = tools.messages[1].tool_calls[0]["function"]
    assert call == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    assert tools.tools == [{"name": "get_weather"}]


def test_alpaca_with_history_and_input_output_wrapped(fixtures_dir: Path) -> None:
    first, second = _ingest(fixtures_dir / "alpaca.json").conversations
    assert first.roles == ["system", "user", "assistant", "user", "assistant"]
    assert first.messages[3].content == "Translate to English.\n\n水库"
    assert second.messages[0].content == "Say hi."  # empty input adds nothing
    pairs = _ingest(fixtures_dir / "input_output.json")
    assert [c.messages[1].content for c in pairs.conversations] == ["2", "5"]
    assert pairs.formats == {"input_output": 2}


def test_context_qa_keeps_extra_fields_as_meta(fixtures_dir: Path) -> None:
    zh, en = _ingest(fixtures_dir / "context_qa.csv").conversations
    assert zh.messages[0].content == "青山水库于1958年10月建成。\n\n该水库何时建成？"
    assert zh.meta["domain"] == "completion" and en.meta["difficulty"] == "hard"
    assert "row 2" in en.meta["origin"]


def test_cot_prompt_completion_and_text(fixtures_dir: Path) -> None:
    [cot] = _ingest(fixtures_dir / "cot.jsonl").conversations
    assert cot.messages[1].reasoning.startswith("Normal is about 37") and cot.messages[1].content.startswith("Yes")
    [pc] = _ingest(fixtures_dir / "prompt_completion.jsonl").conversations
    assert pc.roles == ["user", "assistant"] and pc.messages[1].content == " Beijing."
    [text] = _ingest(fixtures_dir / "text.jsonl").conversations
    assert text.roles == ["assistant"] and text.meta["kind"] == "text"


@pytest.mark.parametrize(
    ("record", "name"),
    [({"messages": []}, "messages"), ({"conversations": [{"from": "human", "value": "x"}]}, "sharegpt"),
     ({"conversations": [{"role": "user", "content": "x"}]}, "conversations"),
     ({"instruction": "a", "output": "b"}, "alpaca"), ({"Question": "q", "Response": "r"}, "cot"),
     ({"question": "q", "answer": "a"}, "context_qa"), ({"prompt": "p", "completion": "c"}, "prompt_completion"),
     ({"input": "i", "output": "o"}, "input_output"), ({"text": "t"}, "text"), ({"foo": 1}, None), ([1], None)],
)
def test_detection(record: object, name: str | None) -> None:
    assert detect_format(record) == name


def test_column_mapping_and_forced_format() -> None:
    record = {"q": "How deep?", "a": "12 m", "lang": "en"}
    name, conv = convert(record, "context_qa", {"question": "q", "answer": "a"})
    assert name == "context_qa" and conv.messages[1].content == "12 m" and conv.meta == {"lang": "en"}
    with pytest.raises(FormatProblem, match="column 'ans' \\(mapped to answer\\) is missing"):
        convert(record, "context_qa", {"question": "q", "answer": "ans"})
    with pytest.raises(FormatProblem, match="format alpaca: missing field\\(s\\) instruction, output"):
        convert(record, "alpaca")


@pytest.mark.parametrize(
    ("record", "message"),
    [({"messages": [{"role": "bot", "content": "x"}]}, "unknown role 'bot'"),
     ({"messages": [{"role": "user", "content": 5}]}, "messages\\[0\\].content is an integer"),
     ({"messages": "hello"}, "messages is a string"),
     ({"messages": [{"role": "user", "content": "x", "loss": "yes"}]}, "loss is a string"),
     ({"conversations": [{"from": "robot", "value": "x"}]}, "unknown role 'robot'"),
     ({"instruction": 3, "output": "x"}, "instruction is an integer"),
     ({"prompt": "p", "completion": None}, "completion is null"),
     ({"instruction": "a", "output": "b", "history": [["only one"]]}, "history\\[0\\] is not a"),
     ({"nothing": "here"}, "unknown format")],
)
def test_format_problems_name_the_field(record: dict, message: str) -> None:
    with pytest.raises(FormatProblem, match=message):
        to_conversation(record)


def test_split_inline_think_leaves_malformed_blocks_for_validation() -> None:
    assert split_inline_think("<think>a</think>b") == ("a", "b")
    assert split_inline_think("<think>unclosed") == (None, "<think>unclosed")
    assert split_inline_think("<think>a<think>b</think>c") == (None, "<think>a<think>b</think>c")


@pytest.mark.parametrize(
    ("record", "fmt", "message"),
    [  # medical-o1 with a miscapitalised chain-of-thought column: read as metadata, the CoT was silently lost
     ({"Question": "Q", "Complex_COT": "think", "Response": "A"}, "cot",
      "format cot: field 'Complex_COT' is not read; did you mean 'Complex_CoT'"),
     ({"Question": "Q", "Complex_COT": "think", "Response": "A"}, "auto", "did you mean 'Complex_CoT'"),
     ({"instruction": "Add", "inputs": "1+1", "output": "2"}, "alpaca", "field 'inputs' is not read; did you mean 'input'"),
     # a required field under another case: named, not only "missing"
     ({"Input": "q", "Output": "a"}, "input_output",
      "format input_output: missing field(s) input, output; did you mean 'input' for 'Input', 'output' for 'Output'"),
     # nothing like the format's fields (a {"Data": [...]} wrapper read as one record): the record's keys are named
     ({"Data": [{"input": "q", "output": "a"}]}, "input_output",
      "format input_output: missing field(s) input, output (the record has: Data)")],
)
def test_a_field_name_slip_is_named_not_dropped(record: dict, fmt: str, message: str) -> None:
    with pytest.raises(FormatProblem, match=re.escape(message)):
        convert(record, fmt)


@pytest.mark.parametrize(("record", "fmt"), [
    ({"instruction": "Add", "output": "2", "system_id": 7}, "alpaca"),  # no system: the id is no slip of it
    ({"instruction": "Add", "output": "2", "history_id": "h1"}, "alpaca"),
    ({"Question": "Q", "Response": "A", "question_id": 3}, "cot"),
])
def test_a_metadata_key_that_only_shares_letters_with_a_field_is_kept(record: dict, fmt: str) -> None:
    """A field's did-you-mean is a config key's (dsft.config.spelling.meant_key, any case): difflib's likeness took
    'system_id' for a slip of the absent optional 'system' and rejected the record."""
    assert convert(record, fmt)[1].meta == {key: value for key, value in record.items() if key.endswith("_id")}


def test_a_slip_of_a_field_in_another_case_is_still_named() -> None:
    with pytest.raises(FormatProblem, match=re.escape("missing field(s) Response; did you mean 'Response' for 'respone'")):
        convert({"Question": "Q", "respone": "A", "Complex_CoT": "t"}, "cot")


def test_a_data_columns_key_is_a_slip_as_a_config_key_is() -> None:
    """data.columns: {question_id: qid} renames a metadata column; it was refused as a slip of 'question'."""
    assert column_name_problems({"question": "q", "answer": "a", "question_id": "qid"}) == []
    assert column_name_problems({"respone": "r"}) == [
        "data.columns: 'respone' is no field a format reads; did you mean 'Response'? (the keys are dsft's names, the "
        "values your columns: {Response: r})"]


@pytest.mark.parametrize(
    ("record", "columns", "message"),
    [  # the file already has Question: the mapping renamed it away, and was answered "did you mean 'Question' for
       # 'question'", a name the file does not have
     ({"Question": "Q", "Complex_CoT": "think", "Response": "A"}, {"question": "Question"},
      "format cot: data.columns maps question to 'Question', a column already named as format cot reads it; remove "
      "question from data.columns (format cot reads Question, Complex_CoT, Response, system)"),
     # another format's name for the column
     ({"q": "Q", "Complex_CoT": "think", "Response": "A"}, {"question": "q"},
      "format cot: data.columns maps question to 'q', a name format cot does not read; write data.columns: "
      "{Question: q} (format cot reads Question, Complex_CoT, Response, system)")],
)
def test_a_column_mapped_to_a_name_the_format_does_not_read_says_so(record: dict, columns: dict, message: str) -> None:
    with pytest.raises(FormatProblem) as caught:
        convert(record, "cot", columns)
    assert str(caught.value) == message


def test_a_reversed_column_mapping_is_named_with_the_mapping_meant() -> None:
    """data.columns maps the name dsft reads to the user's column; written the other way round ({问题: Question}
    for a CSV headed 问题,思维链,回答) every record was rejected as "column 'Question' (mapped to 问题) is missing"."""
    record = {"问题": "Q", "思维链": "think", "回答": "A"}
    reversed_columns = {"问题": "Question", "思维链": "Complex_CoT", "回答": "Response"}
    with pytest.raises(FormatProblem, match=re.escape(
            "column 'Question' (mapped to 问题) is missing from the record, but the record has 问题: the mapping is "
            "reversed; write data.columns: {Question: 问题, Complex_CoT: 思维链, Response: 回答}")):
        convert(record, "auto", reversed_columns)
    _, conv = convert(record, "auto", {value: key for key, value in reversed_columns.items()})
    assert conv.messages[1].reasoning == "think"


def test_a_misnamed_field_is_read_through_data_columns_and_unrelated_fields_stay_metadata() -> None:
    record = {"Question": "Q", "Complex_COT": "think", "Response": "A", "domain": "cardio", "source_id": 7}
    _, conv = convert(record, "cot", {"Complex_CoT": "Complex_COT"})
    assert conv.messages[1].reasoning == "think" and conv.meta == {"domain": "cardio", "source_id": 7}
    _, conv = convert({"Question": "Q", "Response": "A", "domain": "cardio"}, "cot")  # no CoT at all is allowed
    assert conv.messages[1].reasoning is None and conv.meta == {"domain": "cardio"}


@pytest.mark.parametrize(
    ("message", "problem"),
    [({"role": "assistant", "content": "A", "reasoning_contents": "think"},
      "messages[1]: field 'reasoning_contents' is not read; did you mean 'reasoning_content'"),
     ({"role": "assistant", "contents": "A"}, "messages[1]: field 'contents' is not read; did you mean 'content'"),
     ({"role": "assistant", "Content": "A"}, "messages[1]: field 'Content' is not read; did you mean 'content'")],
)
def test_a_message_field_name_slip_is_named_not_dropped(message: dict, problem: str) -> None:
    """The reasoning (or the answer) under a misspelt key was dropped: trained without it, or rejected as empty."""
    for record in ({"messages": [{"role": "user", "content": "Q"}, message]},
                   {"conversations": [{"role": "user", "content": "Q"}, message]}):
        with pytest.raises(FormatProblem, match=re.escape(problem.replace("messages", next(iter(record))))):
            convert(record)
    _, conv = convert({"messages": [{"role": "user", "content": "Q", "refusal": None, "id": 1},
                                    {"role": "assistant", "content": "A", "reasoning": "think", "weight": 1}]})
    assert conv.messages[1].reasoning == "think"  # other keys and the alternative name are not slips


@pytest.mark.parametrize(("turn", "key"), [({"role": "assistant", "text": "A"}, "text"),
                                         ({"role": "assistant", "value": "A", "id": 3}, "value"),
                                         ({"role": "assistant", "message": "A"}, "message")])
def test_a_turn_whose_text_is_under_another_key_is_named_not_called_empty(turn: dict, key: str) -> None:
    """{"role", "text"} turns (guide 000's hand-written data, or ShareGPT's "value" beside a role) were rejected as
    'messages[1].content: empty assistant message': the text is there, under a key no format reads."""
    for record in ({"messages": [{"role": "user", "content": "Q"}, turn]},
                   {"conversations": [{"role": "user", "content": "Q"}, turn]}):
        where = f"{next(iter(record))}[1]"
        with pytest.raises(FormatProblem, match=re.escape(
                f"{where}: no 'content' field; the text under {key!r} is not read: rename {key!r} to 'content'")):
            convert(record)
    _, conv = convert({"messages": [{"role": "user", "content": "Q"},  # a tool call needs no content
                                    {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}],
                                     "id": "x"}]})
    assert conv.messages[1].content == ""


@pytest.mark.parametrize("record", [
    {"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A", "weight": 0},
                  {"role": "user", "content": "Q2"}, {"role": "assistant", "content": "B"}]},
    {"conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A", "loss": False},
                       {"from": "human", "value": "Q2"}, {"from": "gpt", "value": "B"}]},
    {"conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A", "weight": 0},
                       {"from": "human", "value": "Q2"}, {"from": "gpt", "value": "B", "weight": 1}]},
])
def test_a_turn_marked_untrained_stays_untrained(record: dict) -> None:
    """OpenAI fine-tuning's per-message ``weight`` (0/1), and ``loss`` / ``weight`` on ShareGPT turns, were
    dropped without a word: the turn the data marks as not to be learned was trained."""
    _, conv = convert(record)
    assert [m.loss for m in conv.messages if m.role == "assistant"][0] is False
    assert conv.messages[-1].loss in (None, True)


@pytest.mark.parametrize(("message", "problem"), [
    ({"role": "assistant", "content": "A", "weight": 0.5}, "messages[1].weight is 0.5, expected 0 (not trained) or 1"),
    ({"role": "assistant", "content": "A", "weight": 1, "loss": False}, "messages[1]: loss false and weight 1 disagree"),
    ({"role": "assistant", "content": "A", "reasoning": "r1", "reasoning_content": "r2"},
     "messages[1]: reasoning_content and reasoning differ"),
])
def test_conflicting_or_bad_turn_fields_are_refused(message: dict, problem: str) -> None:
    with pytest.raises(FormatProblem, match=re.escape(problem)):
        convert({"messages": [{"role": "user", "content": "Q"}, message]})
    with pytest.raises(FormatProblem, match=re.escape("messages[0].weight: only assistant turns take a weight")):
        convert({"messages": [{"role": "user", "content": "Q", "weight": 1}, {"role": "assistant", "content": "A"}]})


def test_a_top_level_system_opens_a_messages_record_and_blank_alpaca_input_is_none() -> None:
    """LLaMA-Factory keeps the system prompt in a ``system`` column beside ``messages``: it went to meta, and
    the model was trained without its system prompt. An Alpaca ``input`` of spaces left them in the prompt."""
    _, conv = convert({"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}],
                       "system": "Be brief."})
    assert [(m.role, m.content) for m in conv.messages][0] == ("system", "Be brief.") and "system" not in conv.meta
    _, conv = convert({"instruction": "Say hi", "input": "  \n", "output": "hi"})
    assert conv.messages[0].content == "Say hi"


@pytest.mark.parametrize(("turn", "said"), [
    ({"from": "gpt", "text": "A"}, "conversations[1]: no 'value' field; the text under 'text' is not read: rename "
                                   "'text' to 'value'"),
    ({"from": "gpt", "Value": "A"}, "conversations[1]: field 'Value' is not read; did you mean 'value'?"),
    ({"From": "gpt", "value": "A"}, "conversations[1]: field 'From' is not read; did you mean 'from'?"),
])
def test_a_sharegpt_turn_whose_text_or_speaker_is_under_another_key_is_named(turn: dict, said: str) -> None:
    """A ShareGPT turn with its text under another key was rejected as 'conversations[1].value is null, expected a
    string', and a misspelt 'from' as an unknown role None: the text and the speaker are there, under a key not read."""
    with pytest.raises(FormatProblem) as info:
        convert({"conversations": [{"from": "human", "value": "Q"}, turn]}, "sharegpt")
    assert str(info.value) == said
    _, conv = convert({"conversations": [{"from": "human", "value": "Q", "id": 3}, {"from": "gpt", "value": "A"}]})
    assert conv.messages[1].content == "A"  # other keys are not slips


@pytest.mark.parametrize(("record", "hint"), [
    ({"question": "Q", "Complex_CoT": "t", "Response": "A"},
     "it looks like format cot with 'question' for 'Question': rename it, or set data.columns: {Question: question}"),
    ({"Instruction": "I", "Output": "O"}, "it looks like format alpaca with 'Instruction' for 'instruction', 'Output' "
     "for 'output': rename them, or set data.columns: {instruction: Instruction, output: Output}"),
    ({"prompt": "P", "completions": "C"}, "it looks like format prompt_completion with 'completions' for "
     "'completion': rename it, or set data.columns: {completion: completions}"),
    ({"q": "Q", "a": "A"}, "set data.format and data.columns"),
])
def test_an_unrecognised_record_with_a_misspelt_field_is_told_which(record: dict, hint: str) -> None:
    """A CoT record with 'question' in lower case (guide 002's dataset retyped) was 'unknown format ...; set
    data.format and data.columns', though which field to rename is plain from the record."""
    with pytest.raises(FormatProblem) as info:
        convert(record)
    assert str(info.value) == f"unknown format (keys: {', '.join(sorted(record))}); {hint}"


@pytest.mark.parametrize(("record", "said"), [
    ({"conversations": [{"from": "human", "value": "Q"}, {"role": "assistant", "content": "A"}]},
     "conversations[1]: a {role, content} turn in a ShareGPT list of {from, value} turns: write every turn as "
     "{from, value}, or every one as {role, content}"),
    ({"conversations": [{"role": "user", "content": "Q"}, {"from": "gpt", "value": "A"}]},
     "conversations[1]: a ShareGPT {from, value} turn in a list of {role, content} turns: write every turn as "
     "{role, content}, or every one as {from, value}"),
    ({"messages": [{"role": "human", "content": "Q"}, {"role": "assistant", "content": "A"}]},
     "messages[0].role: unknown role 'human' (expected one of system, user, assistant, tool; 'human' is ShareGPT's "
     "name for 'user')"),
])
def test_turns_mixing_sharegpt_and_role_content_are_named_as_mixed(record: dict, said: str) -> None:
    """A list mixing the two turn conventions (guide 000 writes {role, content}, ShareGPT data {from, value}) was
    told 'unknown role None', or to rename 'role' to 'value'."""
    with pytest.raises(FormatProblem) as info:
        convert(record)
    assert str(info.value) == said


@pytest.mark.parametrize(("record", "said"), [
    ({"conversation": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]},
     "unknown format (keys: conversation); it looks like format conversations with 'conversation' for "
     "'conversations': rename it, or set data.columns: {conversations: conversation}"),
    ({"dialog": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}], "id": 7},
     "unknown format (keys: dialog, id); 'dialog' holds a list of chat turns (role/content): name it 'conversations', "
     "or set data.columns: {conversations: dialog}"),
    ({"turns": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]},
     "unknown format (keys: turns); 'turns' holds a list of chat turns (from/value): name it 'conversations', or set "
     "data.columns: {conversations: turns}"),
])
def test_a_list_of_turns_under_another_name_is_named_as_turns(record: dict, said: str) -> None:
    """Guide 000's conversations written under 'conversation' (or another name) were told 'it holds lists of
    records (under conversation), not one record: write each list to a file of its own', which splits one
    conversation's turns into records."""
    with pytest.raises(FormatProblem) as info:
        convert(record)
    assert str(info.value) == said
    renamed = to_conversation(record, columns={"conversations": next(iter(record))})
    assert [m.content for m in renamed.messages] == ["Q", "A"]  # the mapping the message gives reads it


def test_a_json_file_of_record_lists_by_split_is_told_to_give_each_a_file(tmp_path: Path) -> None:
    """{"train": [...], "val": [...]} (a dataset's splits saved as one JSON object) was read as one record of an
    'unknown format (keys: train, val); set data.format and data.columns': no format or column mapping reads it."""
    path = tmp_path / "splits.json"
    path.write_text(json.dumps({"train": [{"instruction": "a", "output": "b"}], "val": [{"instruction": "c",
                                                                                       "output": "d"}]}))
    [rejection] = ingest([str(path)]).rejections
    assert rejection.where == f"{path} item 1"
    assert rejection.reasons == ["unknown format (keys: train, val); it holds lists of records (under train, val), not "
                                 "one record: write each list to a file of its own (JSON lines, or a JSON array) and "
                                 "name them in data.train / data.val"]


@pytest.mark.parametrize(("record", "said"), [
    ({"messages": [{"role": "user", "content": "Q"}, {"role": "Assistant", "content": "A"}]},
     "messages[1].role: unknown role 'Assistant' (expected one of system, user, assistant, tool); did you mean "
     "'assistant'?"),
    ({"conversations": [{"from": "Human", "value": "Q"}, {"from": "gpt", "value": "A"}]},
     "conversations[0].from: unknown role 'Human' (expected human, user, gpt, assistant, chatgpt, bing, bard, model, "
     "system, function_call, observation, tool, function); did you mean 'human'?"),
])
def test_a_role_in_another_case_is_told_the_role_meant(record: dict, said: str) -> None:
    """'Assistant' or ShareGPT's 'Human' (a spreadsheet's capitalised cell) was an unknown role, the list of roles
    left to be compared by eye."""
    with pytest.raises(FormatProblem) as info:
        convert(record)
    assert str(info.value) == said


@pytest.mark.parametrize("role", [["user"], {"name": "user"}, 3])
def test_a_role_that_is_no_string_is_an_unknown_role(role: object) -> None:
    """A role that is a list or an object: the ShareGPT-name lookup beside the message hashed it, a TypeError
    (unhashable type) that ended the whole preparation with a traceback (found by the garbage property tests)."""
    with pytest.raises(FormatProblem) as info:
        convert({"messages": [{"role": role, "content": "Q"}, {"role": "assistant", "content": "A"}]})
    assert str(info.value).startswith(f"messages[0].role: unknown role {role!r} (expected one of ")


@pytest.mark.parametrize("instruction", ["", " \n"])
def test_an_alpaca_record_with_a_blank_instruction_asks_its_input(instruction: str) -> None:
    """A blank instruction beside an input made the user turn two newlines and the input: trained on a prompt
    opening with a blank line, which no inference prompt has."""
    _, conv = convert({"instruction": instruction, "input": "What is 2+2?", "output": "4"})
    assert conv.messages[0].content == "What is 2+2?"
    assert conv.named("messages[0].content: bad") == "input: bad"


@pytest.mark.parametrize(("context", "question", "user", "where"), [
    (" ", "Why?", "Why?", "question"), ("Fever for 3 days.", "", "Fever for 3 days.", "context"),
    ("Fever for 3 days.", "Why?", "Fever for 3 days.\n\nWhy?", "context"),
])
def test_a_context_qa_record_joins_only_the_parts_that_show(context: str, question: str, user: str,
                                                            where: str) -> None:
    """A context of spaces made the user turn '  \\n\\nWhy?', and an empty question 'Fever for 3 days.\\n\\n': prompts
    with blank lines no inference prompt has, kept without a word."""
    _, conv = convert({"context": context, "question": question, "answer": "A"})
    assert conv.messages[0].content == user
    assert conv.named("messages[0].content: unclosed <think> block").startswith(where)


def test_records_share_the_places_their_messages_are_at() -> None:
    """Each conversation held its own copy of where each message is (messages[1], output): about 800 bytes of a
    2,600-byte four-turn record, for every record a preparation holds in memory."""
    turns = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]
    first, second = (convert({"system": "s", "messages": turns})[1] for _ in range(2))
    assert all(a is b for a, b in zip(first.where, second.where, strict=True))
    alpaca = [convert({"instruction": "I", "output": answer})[1] for answer in ("A", "B")]
    assert alpaca[0].where[1] is alpaca[1].where[1]
    assert not hasattr(first.where[0], "__dict__")  # slots: no per-instance dictionary
