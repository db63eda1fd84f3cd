"""Fields of OpenAI's and vLLM's APIs that dsft's server does not act on: ignored only where ignoring them cannot
change the reply, otherwise a 400 naming the field unless the value asks for nothing (they were all accepted
and ignored: a client asking for JSON output, logit_bias or echo got a reply made without them)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from live_server import LiveServer, run_live
from scripted import scripted_serving

ANSWER = "Fine, thanks."
CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def live(serve_model_dir: Path) -> Iterator[LiveServer]:
    from dsft.models.loading import load_tokenizer
    from dsft.serve.engine import TransformersEngine
    from dsft.serve.settings import ServeSettings

    serving = scripted_serving(load_tokenizer(serve_model_dir), ANSWER, "deepseek-v3")
    with run_live(TransformersEngine(lambda: serving), ServeSettings(served_model_name="m")) as server:
        yield server


def _post(live: LiveServer, path: str, **fields: Any) -> httpx.Response:
    body = {"messages": [{"role": "user", "content": "How are you?"}]} if path == CHAT else {"prompt": "Hi"}
    return httpx.post(live.base_url + path, json={"max_tokens": 8, **body, **fields}, timeout=60)


ASKING = [
    ("logit_bias", {"100": 5}), ("response_format", {"type": "json_object"}), ("echo", True), ("suffix", "end"),
    ("best_of", 2), ("use_beam_search", True), ("min_tokens", 4), ("ignore_eos", True), ("stop_token_ids", [7]),
    ("skip_special_tokens", False), ("include_stop_str_in_output", True), ("add_generation_prompt", False),
    ("continue_final_message", True), ("reasoning_effort", "low"), ("functions", [{"name": "f"}]),
    ("parallel_tool_calls", False), ("guided_json", {"type": "object"}), ("structured_outputs", {"regex": "a+"}),
    ("allowed_token_ids", [1, 2]), ("prompt_logprobs", 1), ("modalities", ["text", "audio"]), ("best_of", True),
]


@pytest.mark.parametrize("path", [CHAT, "/v1/completions", "/generate"])
@pytest.mark.parametrize(("field", "value"), ASKING)
def test_a_field_that_would_change_the_reply_is_refused_naming_it(
    live: LiveServer, path: str, field: str, value: Any
) -> None:
    answer = _post(live, path, **{field: value})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == field
    assert error["message"].startswith(f"{field}: not supported by this server")


NEUTRAL = {
    "logit_bias": {}, "response_format": {"type": "text"}, "echo": False, "best_of": 1, "min_tokens": 0,
    "ignore_eos": False, "stop_token_ids": [], "skip_special_tokens": True, "add_generation_prompt": True,
    "parallel_tool_calls": True, "modalities": ["text"], "length_penalty": 1, "reasoning_effort": None,
}
HARMLESS = {"user": "u-1", "store": True, "metadata": {"k": "v"}, "service_tier": "auto", "priority": 3,
            "prediction": {"type": "content", "content": "x"}, "spaces_between_special_tokens": False}


@pytest.mark.parametrize("path", [CHAT, "/v1/completions", "/generate"])
def test_neutral_values_and_harmless_fields_are_accepted(live: LiveServer, path: str) -> None:
    answer = _post(live, path, **NEUTRAL, **HARMLESS)
    assert answer.status_code == 200, answer.text
    assert ANSWER in answer.text


def test_the_docs_name_every_ignored_and_every_refused_field() -> None:
    from dsft.serve.unread_fields import IGNORED_FIELDS, NEUTRAL_VALUES

    text = (Path(__file__).resolve().parents[2] / "docs" / "serve.md").read_text(encoding="utf-8")
    ignored_part, refused_part = text.split("Every other such field asks for a different")[:2]
    assert [f for f in sorted(IGNORED_FIELDS) if f"`{f}`" not in ignored_part.split("request fields that dsft")[-1]] == []
    assert [f for f in sorted(NEUTRAL_VALUES) if f"`{f}`" not in refused_part.split("A name dsft")[0]] == []
