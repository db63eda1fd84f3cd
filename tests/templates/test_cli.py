"""``dsft template``: the JSON contract other checks rely on, the human view, and the error paths."""

from __future__ import annotations

import ast
import doctest
import json
from pathlib import Path
from typing import Any

import pytest

import dsft.cli
from dsft.data.conversation import Conversation, Message
from dsft.templates import get_template

MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!", "reasoning_content": "Greeting."},
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "4", "reasoning_content": "2+2=4", "loss": False},
]


@pytest.fixture
def messages_file(tmp_path: Path) -> Path:
    path = tmp_path / "messages.json"
    path.write_text(json.dumps(MESSAGES, ensure_ascii=False), encoding="utf-8")
    return path


def test_prompt_json_is_the_exact_prompt(messages_file: Path, run_cli) -> None:
    code, out, _ = run_cli(["template", "render", "--template", "deepseek-r1", "--messages", str(messages_file),
                            "--mode", "prompt", "--json"])
    assert code == 0
    conv = Conversation([Message(m["role"], m["content"], reasoning=m.get("reasoning_content")) for m in MESSAGES])
    assert json.loads(out) == {"text": get_template("deepseek-r1").render_prompt(conv)}


def test_train_json_has_ids_and_labels_from_the_mask(messages_file: Path, run_cli, tokenizer: Any) -> None:
    code, out, _ = run_cli(["template", "render", "--template", "deepseek-r1", "--messages", str(messages_file),
                            "--mode", "train", "--json"])
    assert code == 0
    result = json.loads(out)
    assert set(result) == {"text", "input_ids", "labels"}
    assert result["input_ids"] == tokenizer.encode(result["text"], add_special_tokens=False)
    supervised = [t for t, lab in zip(result["input_ids"], result["labels"]) if lab != -100]
    assert all(lab in (-100, t) for t, lab in zip(result["input_ids"], result["labels"]))
    # loss: false on the last turn: only the first turn is trained.
    assert tokenizer.decode(supervised) == "Greeting.\n</think>\n\nHello!<｜end▁of▁sentence｜>"


def test_masking_and_thinking_options(messages_file: Path, run_cli, tokenizer: Any) -> None:
    code, out, _ = run_cli(["template", "render", "--template", "deepseek-v3.1", "--messages", str(messages_file),
                            "--mode", "train", "--no-thinking", "--masking", "all", "--json"])
    assert code == 0
    result = json.loads(out)
    assert "<｜Assistant｜></think>Hello!" in result["text"]
    labels = [lab for lab in result["labels"] if lab != -100]
    assert tokenizer.decode(labels) == result["text"].replace("<｜Assistant｜></think>4<｜end▁of▁sentence｜>", "")


def test_tokenizer_directory_and_auto_detection(tmp_path: Path, messages_file: Path, run_cli) -> None:
    from dsft.models.tokenizers import r1_tokenizer_files, write_tokenizer_files

    write_tokenizer_files(*r1_tokenizer_files(), tmp_path / "tok")
    code, out, _ = run_cli(["template", "render", "--template", "auto", "--tokenizer", str(tmp_path / "tok"),
                            "--messages", str(messages_file), "--mode", "train", "--json"])
    assert code == 0
    result = json.loads(out)
    assert result["text"].startswith("<｜begin▁of▁sentence｜>") and result["input_ids"].count(0) == 1
    assert "<｜Assistant｜><think>\nGreeting." in result["text"]


def test_human_view_shows_text_and_counts(messages_file: Path, run_cli) -> None:
    code, out, _ = run_cli(["template", "render", "--template", "deepseek-v3", "--messages", str(messages_file),
                            "--mode", "train"])
    assert code == 0
    assert "<｜User｜>What is 2+2?" in out and "supervised" in out and "tokens" in out


def test_list_and_help(run_cli) -> None:
    code, out, _ = run_cli(["template", "list"])
    assert code == 0 and "deepseek-v3.1" in out and "hf" in out
    assert "deepseek-v3.2" in out and "dsml" in out and "deepseek_r1" in out  # the families' own facts
    code, out, _ = run_cli(["template", "render", "--help"])
    assert code == 0 and "--messages" in out and "--masking" in out


def test_a_messages_file_from_a_windows_editor_renders_or_names_its_encoding(messages_file: Path, run_cli) -> None:
    """A byte-order mark (Notepad's UTF-8) was refused as 'Unexpected UTF-8 BOM', though data files and configs take
    it; a UTF-16 or GBK save is named with the iconv command that fixes it."""
    expected = get_template("deepseek-r1").render_prompt(
        Conversation([Message(m["role"], m["content"], reasoning=m.get("reasoning_content")) for m in MESSAGES]))
    bom = messages_file.with_name("bom.json")
    bom.write_bytes(b"\xef\xbb\xbf" + messages_file.read_bytes())
    code, out, err = run_cli(["template", "render", "--template", "deepseek-r1", "--messages", str(bom),
                              "--mode", "prompt", "--json"])
    assert code == 0 and json.loads(out) == {"text": expected}, err
    for encoding, named in (("utf-16", "it is UTF-16 text"), ("gb18030", "it reads as GBK/GB18030 Chinese")):
        other = messages_file.with_name(f"{encoding}.json")
        other.write_bytes(json.dumps([{"role": "user", "content": "发热怎么办"}], ensure_ascii=False).encode(encoding))
        code, _, err = run_cli(["template", "render", "--template", "deepseek-r1", "--messages", str(other)])
        assert code == 2 and f"{other}: not UTF-8 text" in err and named in err and "Traceback" not in err, err


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        (None, ["--template", "deepseek-r1"], "file not found"),
        ("[{", ["--template", "deepseek-r1"], "invalid JSON at line 1"),
        ('[{"role": "robot", "content": "x"}]', ["--template", "deepseek-r1"], "unknown role 'robot'"),
        ('{"not": "a list"}', ["--template", "deepseek-r1"], "non-empty JSON list"),
        ('[{"role": "user", "content": "x"}]', ["--template", "deepseek-v9"], "unknown template 'deepseek-v9'"),
        # vLLM's parser name, the model's name or its short form: the family to write
        ('[{"role": "user", "content": "x"}]', ["--template", "r1"], "unknown template 'r1'; did you mean 'deepseek-r1'?"),
        ('[{"role": "user", "content": "x"}]', ["--template", "deepseek_r1"],
         "unknown template 'deepseek_r1'; did you mean 'deepseek-r1'?"),
        ('[{"role": "user", "content": "x"}]', ["--template", "DeepSeek-V3.1"],
         "unknown template 'DeepSeek-V3.1'; did you mean 'deepseek-v3.1'?"),
        # vLLM's tool parsers for V3.1 and V3.2 (the families' vllm_tool_parser), V3.2's model_type
        ('[{"role": "user", "content": "x"}]', ["--template", "deepseek_v31"],
         "unknown template 'deepseek_v31'; did you mean 'deepseek-v3.1'?"),
        ('[{"role": "user", "content": "x"}]', ["--template", "deepseek_v32"],
         "unknown template 'deepseek_v32'; did you mean 'deepseek-v3.2'?"),
        # ShareGPT turns (from/value, human/gpt) were 'unknown role None' and 'content is missing' per message
        ('[{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]', ["--template", "deepseek-r1"],
         "message 0: ShareGPT's from/value turns; write role/content (human -> user, gpt -> assistant)"),
        ('[{"role": "human", "content": "q"}]', ["--template", "deepseek-r1"],
         "message 0: unknown role 'human' (expected one of system, user, assistant, tool; ShareGPT's 'human' is 'user')"),
        ('[{"role": "user", "content": "x"}]', ["--template", "deepseek-r1", "--mode", "both"], "--mode"),
        ('[{"role": "user", "content": "x"}]', ["--template", "deepseek-r1", "--masking", "most"],
         "--masking: must be one of assistant, last, all, got 'most'"),  # the flag typed; it named template.masking
        ('[{"role": "tool", "content": "x"}]', ["--template", "deepseek-llm"], "role 'tool'"),
        # a misspelt field was read as no field: 'content must be a string, got NoneType', and a misspelt
        # reasoning_content rendered the turn without its reasoning, silently
        ('[{"role": "user", "contnet": "x"}]', ["--template", "deepseek-r1"],
         "message 0: unknown field 'contnet'; did you mean 'content'?"),
        ('[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "reasoning_contnet": "r"}]',
         ["--template", "deepseek-r1"], "message 1: unknown field 'reasoning_contnet'; did you mean 'reasoning_content'?"),
        ('[{"role": "user"}]', ["--template", "deepseek-r1"], "message 0: content is missing"),
        # a data file given for one conversation (guide 003's train_example.json, a JSONL split): one line, not
        # an 'unknown role None' per message of every record
        ('[{"messages": [{"role": "user", "content": "用户问题"}]}, {"messages": []}]', ["--template", "deepseek-r1"],
         "a list of 2 records (each with messages), not one conversation"),
        ('{"messages": [{"role": "user", "content": "q"}]}\n{"messages": [{"role": "user", "content": "r"}]}\n',
         ["--template", "deepseek-r1"], "JSON Lines (one record per line), not one conversation"),
    ],
)
def test_bad_input_is_one_clear_message_and_exit_2(
    tmp_path: Path, run_cli, content: str | None, args: list[str], message: str
) -> None:
    path = tmp_path / "m.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    code, out, err = run_cli(["template", "render", "--messages", str(path), *args])
    assert code == 2
    assert message in err and "Traceback" not in err + out
    assert len(err.strip().splitlines()) <= 2, err  # one message (and at most one problem under it)


@pytest.mark.parametrize("template, flag", [("deepseek-v3", "--thinking"), ("deepseek-r1", "--no-thinking"),
                                            ("deepseek-llm", "--thinking")])
def test_a_thinking_flag_for_a_family_without_modes_is_named_not_silently_ignored(
        messages_file: Path, run_cli, template: str, flag: str) -> None:
    """The flag changed nothing and said nothing: the user who typed it probably meant a hybrid family."""
    code, out, err = run_cli(["template", "render", "--template", template, "--messages", str(messages_file), flag])
    assert code == 0 and out, err
    assert f"notice: {flag}: template {template} has no thinking mode; the flag changes nothing" in err, err
    code, _, err = run_cli(["template", "render", "--template", "deepseek-v3.1", "--messages", str(messages_file),
                            flag])
    assert code == 0 and "notice" not in err, err


def test_data_inspect_names_a_thinking_flag_that_changes_nothing(tmp_path: Path, run_cli) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"messages": MESSAGES[1:3]}) + "\n")
    code, _, err = run_cli(["data", "inspect", str(data), "--template", "deepseek-v3", "--tokenizer", "deepseek",
                            "--thinking"])
    assert code == 0 and "notice: --thinking: template deepseek-v3 has no thinking mode" in err, err


def test_the_registry_doctests() -> None:
    from dsft.templates import registry

    assert doctest.testmod(registry).failed == 0


def test_a_tokenizer_directory_loads_as_training_loads_it(tmp_path: Path, messages_file: Path, run_cli) -> None:
    """--tokenizer DIR went to AutoTokenizer itself, not the loader training and `dsft data inspect` use: a model
    directory without tokenizer files (weights saved alone) ended in transformers' note about sentencepiece,
    where the loader names what is missing and how to fix it."""
    model_dir = tmp_path / "weights-only"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps({"model_type": "deepseek_v3"}))
    code, _, err = run_cli(["template", "render", "--template", "deepseek-v3", "--tokenizer", str(model_dir),
                            "--messages", str(messages_file), "--mode", "train"])
    assert code == 2, err
    assert f"--tokenizer {model_dir}: no tokenizer files (tokenizer.json, tokenizer.model, vocab.json, ...); copy " \
           "the base model's tokenizer files into this directory" in " ".join(err.split()), err


def test_the_unused_thinking_notice_is_said_by_one_cli_helper() -> None:
    """Every command words the notice through dsft.cli.thinking_flag: render and inspect carried their own copy of
    the two lines and chat borrowed eval's, copies that drift apart."""
    callers = {}
    for path in Path(dsft.cli.__file__).parent.glob("*.py"):
        calls = [node.func for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                 if isinstance(node, ast.Call)]
        names = {getattr(f, "id", getattr(f, "attr", None)) for f in calls}
        imports_from_eval = "from dsft.cli.eval import say_unused_thinking" in path.read_text(encoding="utf-8")
        if "unused_thinking_notice" in names or imports_from_eval:
            callers[path.name] = sorted(n for n in names if n and "thinking" in n)
    assert list(callers) == ["thinking_flag.py"], callers
