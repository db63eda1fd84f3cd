"""A request field dsft does not know is ignored unless it is a slip of a field dsft reads: then it is a 400 naming
the field meant, decided as a config key's is (:func:`dsft.config.spelling.meant_key`), so ``max_token`` in a
request and ``train.max_step`` in a config get the same kind of answer. The server checked with difflib's likeness
instead: ``temp`` (for temperature) was ignored and the reply sampled at the default, while ``prompt_id``, a
client's own field, was refused as a slip of ``prompt``."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from dsft.config import load_config
from dsft.errors import ConfigError
from dsft.serve.protocol import ChatCompletionRequest, CompletionRequest

CHAT = {"messages": [{"role": "user", "content": "Hi"}]}


def _refusal(request: type, body: dict[str, Any]) -> str | None:
    """The message of the unknown-field refusal of ``body``, or None when it is accepted."""
    try:
        request.model_validate(body)
    except ValidationError as exc:
        return exc.errors()[0]["msg"]
    return None


@pytest.mark.parametrize(("request_type", "body", "message"), [
    (ChatCompletionRequest, {**CHAT, "max_token": 5}, "unknown field; did you mean 'max_tokens'?"),
    (ChatCompletionRequest, {**CHAT, "temp": 0}, "unknown field; did you mean 'temperature'?"),  # its start alone
    (CompletionRequest, {"prompt": "Hi", "presence": 0.5}, "unknown field; did you mean 'presence_penalty'?"),
    (ChatCompletionRequest, {**CHAT, "max_new_tokens": 5}, "unknown field; use 'max_tokens'"),  # transformers' name
    # not a slip by edits, but ignoring it answers in one piece a client reading a stream
    (ChatCompletionRequest, {**CHAT, "streaming": True}, "unknown field; use 'stream'"),
    (CompletionRequest, {"prompt": "Hi", "streaming": True}, "unknown field; use 'stream'"),
    (CompletionRequest, {"prompt": "Hi", "top_logprobs": 2},  # the chat endpoint's name: no alternatives here
     "unknown field; use 'logprobs' (here the number of most likely tokens at each position)"),
])
def test_a_slip_of_a_field_is_refused_naming_it(request_type: type, body: dict[str, Any], message: str) -> None:
    assert _refusal(request_type, body) == message


@pytest.mark.parametrize(("request_type", "body"), [
    (CompletionRequest, {"prompt": "Hi", "prompt_id": "p-17"}),  # a client's id, no slip of prompt
    (ChatCompletionRequest, {**CHAT, "stream_id": "s-3"}),  # nor of stream
])
def test_a_field_that_only_shares_letters_with_one_is_ignored(request_type: type, body: dict[str, Any]) -> None:
    assert _refusal(request_type, body) is None


def test_a_request_field_and_a_config_key_get_the_same_kind_of_answer() -> None:
    """A key's start written alone names the key in both."""
    with pytest.raises(ConfigError, match=r"train.warmup: unknown key; did you mean 'warmup_ratio'\?"):
        load_config(None, ["train.warmup=0.1"])
    assert _refusal(ChatCompletionRequest, {**CHAT, "temp": 0}) == "unknown field; did you mean 'temperature'?"
    with pytest.raises(ConfigError, match=r"train.max_step: unknown key; did you mean 'max_steps'\?"):
        load_config(None, ["train.max_step=3"])
    assert _refusal(ChatCompletionRequest, {**CHAT, "max_token": 5}) == "unknown field; did you mean 'max_tokens'?"
