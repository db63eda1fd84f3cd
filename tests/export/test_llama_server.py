"""A GGUF export served by llama.cpp's own ``llama-server --jinja``: the prompt it builds from an OpenAI chat
request, compared token for token with dsft's renderer (the prompt training used and ``dsft serve`` builds).

llama-server renders the template embedded in the GGUF with its own Jinja engine, after rewriting the request's
messages (content null -> "", tool-call ``arguments`` strings parsed into objects when the template reads
objects) and with ``enable_thinking`` set from ``--reasoning`` (default auto: true for templates that can think).
The tests pin where that equals dsft's prompt and the two places it does not, so a llama.cpp change to either is
seen. The server tests skip, saying how to provide the binary, without ``llama-server`` (see llama_server.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from dsft.templates import get_template
from dsft.templates.conversation_io import conversation_from_openai

from llama_server import MISSING_REASON, find_llama_server, serve_gguf

HYBRID = ("deepseek-v3.1", "deepseek-v3.2", "deepseek-v4")  # thinking and chat modes; default chat
FAMILIES = ("deepseek-v3", "deepseek-r1", *HYBRID, "deepseek-llm")

CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
SECOND_CALL = {"id": "call_2", "type": "function",
               "function": {"name": "search", "arguments": '{"z": 1, "a": "北京 é"}'}}
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
TOOL_ROUND = [{"role": "user", "content": "Weather?"},
              {"role": "assistant", "content": "Let me check.", "reasoning_content": "Need the tool.",
               "tool_calls": [CALL, SECOND_CALL]},
              {"role": "tool", "tool_call_id": "call_1", "content": "22C"},
              {"role": "tool", "tool_call_id": "call_2", "content": "found"}]
# (messages, tools): what each family renders; deepseek-llm has no tool role (dsft refuses those requests).
CONVERSATIONS: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]] | None]] = {
    "one turn": ([SYSTEM, {"role": "user", "content": "Hi"}], None),
    "multi-turn with reasoning and whitespace": ([
        SYSTEM, {"role": "system", "content": "Be brief."}, {"role": "user", "content": "  Hi \n"},
        {"role": "assistant", "content": " Hello \n", "reasoning_content": "Greet back."},
        {"role": "user", "content": "What is 2+2?"}, {"role": "user", "content": "中文?"}], None),
    "tool calls and results": (TOOL_ROUND, None),
    "tool round, answer, next user turn": ([
        *TOOL_ROUND, {"role": "assistant", "content": "It is 22C."}, {"role": "user", "content": "Thanks"}], None),
    "tool definitions": ([SYSTEM, {"role": "user", "content": "Weather in Paris?"}], TOOLS),
}
MODES: dict[str, dict[str, Any] | None] = {
    "no kwargs": None, "thinking=true": {"thinking": True}, "thinking=false": {"thinking": False},
    "enable_thinking=true": {"enable_thinking": True}, "enable_thinking=false": {"enable_thinking": False},
}


def _full_run(tiny_model_dir, root: Path, template: str) -> Path:
    """A full fine-tuning run directory of the tiny V3 preset trained with ``template``."""
    run = root / f"run-{template}"
    (run / "final").mkdir(parents=True)
    for path in tiny_model_dir("tiny-deepseek-v3").iterdir():
        os.symlink(path, run / "final" / path.name)
    (run / "run.json").write_text(json.dumps({"template": template, "base_model": "tiny-deepseek-v3",
                                              "method": "full"}))
    return run


@pytest.fixture(scope="module")
def gguf_of(tiny_model_dir, tmp_path_factory):
    """``template -> (export directory, printed lines)``, each exported once (float16, unverified: what is
    checked here is the embedded template, which test_gguf.py checks is the family's)."""
    from dsft.export.api import export

    root = tmp_path_factory.mktemp("llama-server")
    done: dict[str, tuple[Path, list[str]]] = {}

    def get(template: str) -> tuple[Path, list[str]]:
        if template not in done:
            printed: list[str] = []
            out = root / f"gguf-{template}"
            export(_full_run(tiny_model_dir, root, template), "gguf", out, dtype="float16", verify=False,
                   echo=printed.append)
            done[template] = out, printed
        return done[template]

    return get


@pytest.mark.parametrize("template", ["deepseek-v3.1", "deepseek-r1"])
def test_a_hybrid_family_export_says_how_llama_server_picks_the_mode(gguf_of, template) -> None:
    """llama-server thinks by default where dsft serve chats: the GGUF export says so (printed and in
    export.json), as an HF export names what vLLM needs."""
    out, printed = gguf_of(template)
    notes = json.loads((out / "export.json").read_text())["llama_server_notes"]
    assert [line for line in printed if line.startswith("note (llama.cpp)")] == [f"note (llama.cpp): {n}" for n in notes]
    if template in HYBRID:
        assert len(notes) == 1 and "--reasoning off" in notes[0] and '{"thinking": true}' in notes[0]
    else:
        assert notes == []


def _dsft_prompt_ids(template: str, messages: list[dict[str, Any]], tools: Any, kwargs: dict[str, Any] | None,
                     tokenizer: Any) -> list[int]:
    """The prompt dsft serve builds for the request (training's rendering of the same turns), as token ids."""
    thinking = None if kwargs is None else kwargs.get("thinking", kwargs.get("enable_thinking"))
    conv = conversation_from_openai({"messages": messages, "tools": tools} if tools else messages)
    prompt = get_template(template).render_prompt(conv, thinking=thinking)
    return tokenizer(prompt, add_special_tokens=False)["input_ids"]


def _compact(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``messages`` with each tool call's arguments written as compact JSON with non-ASCII escaped (as
    ``json.dumps(args, separators=(",", ":"))`` writes them; OpenAI's API returns arguments this way)."""
    out = json.loads(json.dumps(messages))
    for message in out:
        for call in message.get("tool_calls") or []:
            call["function"]["arguments"] = json.dumps(json.loads(call["function"]["arguments"]), separators=(",", ":"))
    return out


@pytest.mark.skipif(find_llama_server() is None, reason=MISSING_REASON)
@pytest.mark.parametrize("template", FAMILIES)
def test_llama_server_builds_the_training_prompt(gguf_of, tiny_model_dir, tmp_path, template) -> None:
    """Every conversation, every way of choosing the mode: llama-server's prompt tokens are dsft's, with two
    exceptions pinned below, which docs/export.md states (Serving the GGUF with llama-server)."""
    from dsft.models.loading import load_tokenizer

    tokenizer = load_tokenizer(tiny_model_dir("tiny-deepseek-v3"))
    family = get_template(template)
    out, _ = gguf_of(template)
    for reasoning in ("auto", "off"):
        with serve_gguf(find_llama_server(), out / "model.gguf", tmp_path / f"server-{reasoning}.log",
                        "--reasoning", reasoning) as server:
            for name, (messages, tools) in CONVERSATIONS.items():
                if template == "deepseek-llm" and any(m["role"] == "tool" for m in messages):
                    continue
                for mode, kwargs in MODES.items():
                    if family.thinking_flag is None and kwargs is not None:
                        continue
                    served = server.prompt_ids(server.apply_template(messages, tools, kwargs))
                    # 1. Without a mode in the request, llama-server's --reasoning decides: auto (its default)
                    # passes enable_thinking=true, which the hybrid templates read, so they think.
                    default_thinks = template in HYBRID and kwargs is None and reasoning == "auto"
                    expected = _dsft_prompt_ids(template, messages, tools, {"thinking": True} if default_thinks
                                                else kwargs, tokenizer)
                    assert served == expected, (reasoning, name, mode)
                    if default_thinks and name == "one turn":  # not dsft serve's default prompt
                        assert served != _dsft_prompt_ids(template, messages, tools, None, tokenizer)
                    # 2. Tool-call arguments strings are parsed and written again as JSON (", " and ": ",
                    # non-ASCII as is, key order kept) by the families that write them as JSON text.
                    if any(m.get("tool_calls") for m in messages) and kwargs is None:
                        compact = _compact(messages)
                        served = server.prompt_ids(server.apply_template(compact, tools, {"thinking": False}))
                        as_trained = _dsft_prompt_ids(template, compact, tools, {"thinking": False}, tokenizer)
                        rewritten = family.tool_call_format in ("deepseek-v3", "deepseek-v3.1")
                        assert (served != as_trained) == rewritten, (reasoning, name)
                        assert served == _dsft_prompt_ids(template, messages, tools, {"thinking": False}, tokenizer)
