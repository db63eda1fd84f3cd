"""A conversation the chat-template family cannot render is refused before a tokenizer loads, naming the file
(and line) it came from: `dsft template render --mode train` and `dsft data inspect` loaded transformers and the
tokenizer first (four to seven seconds), then said `template 'deepseek-llm': message 2 has role 'tool' ...`
without saying which file.

Each case runs ``dsft ...`` in a fresh interpreter and reports whether torch or transformers was imported by the
time the command exited.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_in_subprocess import run_dsft

CALL = {"role": "assistant", "content": "", "tool_calls": [{"type": "function",
                                                            "function": {"name": "f", "arguments": "{}"}}]}
WITH_TOOL_TURN = [{"role": "user", "content": "hi"}, CALL, {"role": "tool", "content": "1"},
                  {"role": "assistant", "content": "done"}]
TOOL_ROLE = "template 'deepseek-llm': message 2 has role 'tool', which this family cannot render"
TOOL_CALLS = "template 'deepseek-llm': message 1 has tool_calls, which this family has no format for"


def _dsft(args: list[str], cwd: Path) -> tuple[int, list[str], str]:
    """(exit code, heavy modules imported, stderr) of ``dsft ARGS`` in a fresh interpreter."""
    return run_dsft(args, cwd)


def _messages(tmp: Path, messages: list[dict]) -> str:
    (tmp / "m.json").write_text(json.dumps(messages))
    return "m.json"


def _records(tmp: Path, messages: list[dict]) -> str:
    (tmp / "d.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "a"},
                                                          {"role": "assistant", "content": "b"}]}) + "\n"
                                 + json.dumps({"messages": messages}) + "\n")
    return "d.jsonl"


CASES = [
    ("render-tool-role", lambda t: ["template", "render", "--template", "deepseek-llm", "--mode", "train", "--json",
                                    "--messages", _messages(t, WITH_TOOL_TURN)], f"m.json: {TOOL_ROLE}"),
    ("render-tool-calls", lambda t: ["template", "render", "--template", "deepseek-llm", "--mode", "train",
                                     "--messages", _messages(t, WITH_TOOL_TURN[:2])], f"m.json: {TOOL_CALLS}"),
    ("inspect-tool-role", lambda t: ["data", "inspect", _records(t, WITH_TOOL_TURN), "--index", "1",
                                     "--template", "deepseek-llm"], f"d.jsonl:2: {TOOL_ROLE}"),
    ("inspect-tool-calls-config-key", lambda t: ["data", "inspect", _records(t, WITH_TOOL_TURN[:2] + [
        {"role": "user", "content": "ok"}, {"role": "assistant", "content": "x"}]),
        "--index", "1", "--set", "template.name=deepseek-llm"], f"d.jsonl:2: {TOOL_CALLS}"),
]


@pytest.mark.parametrize("args, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_what_the_family_cannot_render_is_refused_before_a_tokenizer_loads(tmp_path: Path, args,
                                                                           expected: str) -> None:
    code, heavy, err = _dsft(args(tmp_path), tmp_path)
    assert code == 2 and err.startswith(f"error: {expected}") and "Traceback" not in err, err
    assert heavy == [], f"the refusal came after {heavy} was imported"


def test_a_prompt_the_family_cannot_render_names_its_file(tmp_path: Path) -> None:
    code, _, err = _dsft(["template", "render", "--template", "deepseek-llm", "--messages",
                          _messages(tmp_path, WITH_TOOL_TURN[:2])], tmp_path)
    assert code == 2 and err.startswith(f"error: m.json: {TOOL_CALLS}"), err


NO_TEMPLATE_CASES = [
    ("render-hf", lambda t: ["template", "render", "--template", "hf", "--messages", _messages(t, WITH_TOOL_TURN[-1:])],
     "--template hf renders with a model's own chat template: give the model with --tokenizer DIR"),
    ("inspect-hf", lambda t: ["data", "inspect", _records(t, []), "--tokenizer", "deepseek", "--template", "hf"],
     "--tokenizer deepseek: the DeepSeek tokenizer package has no chat template to render with (template.name: hf)"),
    ("inspect-auto", lambda t: ["data", "inspect", _records(t, []), "--tokenizer", "deepseek"],
     "--tokenizer deepseek: the DeepSeek tokenizer package has no chat template to detect the family from"),
]


@pytest.mark.parametrize("args, expected", [c[1:] for c in NO_TEMPLATE_CASES], ids=[c[0] for c in NO_TEMPLATE_CASES])
def test_the_tokenizer_package_is_refused_where_a_model_s_own_template_is_needed(tmp_path: Path, args,
                                                                                 expected: str) -> None:
    """The DeepSeek tokenizer package carries no chat template: `hf` failed after transformers loaded with
    transformers' own 'tokenizer.chat_template is not set ...', and `auto` said it 'cannot detect the chat template
    family of TokenizersBackend', naming neither the flag nor what to do."""
    code, heavy, err = _dsft(args(tmp_path), tmp_path)
    assert code == 2 and err.startswith(f"error: {expected}") and "Traceback" not in err, err
    assert heavy == [], f"the refusal came after {heavy} was imported"


NAMELESS_TOKENIZER_CASES = [
    ("render", lambda t: ["template", "render", "--template", "deepseek-r1", "--mode", "train",
                          "--messages", _messages(t, WITH_TOOL_TURN[-1:]), "--tokenizer", "tiny-deepsek-v3"]),
    ("inspect", lambda t: ["data", "inspect", _records(t, []), "--tokenizer", "tiny-deepsek-v3"]),
]


@pytest.mark.parametrize("args", [c[1] for c in NAMELESS_TOKENIZER_CASES], ids=[c[0] for c in NAMELESS_TOKENIZER_CASES])
def test_a_tokenizer_that_names_nothing_is_refused_under_its_flag(tmp_path: Path, args) -> None:
    """It said `model 'tiny-deepsek-v3': not a local directory, ...`, naming no flag, where `dsft data prepare`
    says `--tokenizer: model ...`."""
    code, heavy, err = _dsft(args(tmp_path), tmp_path)
    assert code == 2 and err.startswith("error: --tokenizer: model 'tiny-deepsek-v3': not a local directory"), err
    assert heavy == [] and "Traceback" not in err, (heavy, err)
