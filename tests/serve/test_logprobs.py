"""Logprobs are returned when asked for (they were silently left out: ``logprobs: null``): chat's
``logprobs``/``top_logprobs`` in OpenAI's shape, read back by the official client, and completions' legacy shape,
whole or streamed. The values are checked against one plain forward pass over prompt + reply (no KV cache, no
batching): the model's own log-softmax, before temperature, as vLLM returns them by default.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from live_server import API_KEY, LiveServer, run_live

HEADERS = {"Authorization": f"Bearer {API_KEY}"}
NAME = "m"
MESSAGES = [{"role": "user", "content": "What is 2+2?"}]
PROMPT = "The capital of France is"
TOKENS = 6


@pytest.fixture(scope="module")
def live(serve_model_dir: Path) -> Iterator[LiveServer]:
    from dsft.serve.server import build_engine
    from dsft.serve.settings import ServeSettings

    settings = ServeSettings(served_model_name=NAME, api_key=API_KEY, max_batch=4, max_tokens=32, max_model_len=256)
    with run_live(build_engine(str(serve_model_dir), [], settings), settings) as server:
        yield server


@pytest.fixture(scope="module")
def reference(serve_model_dir: Path) -> Any:
    from dsft.models.loading import load_model, load_tokenizer

    return load_model(serve_model_dir, dtype="float32", device="cpu"), load_tokenizer(serve_model_dir)


def _greedy_with_logprobs(reference: Any, prompt: list[int], top: int) -> list[tuple[int, float, list[int]]]:
    """(token id, its logprob, the ``top`` most likely ids) per greedy token, from one forward over the whole text."""
    model, tokenizer = reference
    out = model.generate(torch.tensor([prompt]), max_new_tokens=TOKENS, do_sample=False,
                         attention_mask=torch.ones(1, len(prompt), dtype=torch.long), pad_token_id=tokenizer.eos_token_id)
    ids = out[0, len(prompt):].tolist()
    with torch.no_grad():
        logprobs = model(torch.tensor([prompt + ids])).logits[0, len(prompt) - 1:-1].float().log_softmax(-1)
    return [(token, float(logprobs[i, token]), logprobs[i].topk(top).indices.tolist()) for i, token in enumerate(ids)]


def _post(live: LiveServer, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(live.base_url + path, json={"model": NAME, **body}, headers=HEADERS, timeout=60)


def _streamed_choices(live: LiveServer, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    with httpx.stream("POST", live.base_url + path, json={"model": NAME, "stream": True, **body}, headers=HEADERS,
                      timeout=60) as answer:
        assert answer.status_code == 200, answer.read()
        chunks = [json.loads(line[6:]) for line in answer.iter_lines() if line.startswith("data: {")]
    return [chunk["choices"][0] for chunk in chunks if chunk["choices"]]


def test_chat_logprobs_are_the_models_own_and_the_client_reads_them(live: LiveServer, reference: Any) -> None:
    _, tokenizer = reference
    prompt = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=True, return_dict=False)
    expected = _greedy_with_logprobs(reference, prompt, 3)
    answer = live.client().chat.completions.create(model=NAME, messages=MESSAGES, max_tokens=TOKENS, temperature=0,
                                                   logprobs=True, top_logprobs=3)
    content = answer.choices[0].logprobs.content
    assert len(content) == answer.usage.completion_tokens == len(expected)
    for entry, (token, logprob, top) in zip(content, expected):
        assert entry.token == tokenizer.decode([token])
        if "\ufffd" not in entry.token:  # a whole token's bytes are its text's (partial ones: the test below)
            assert entry.bytes == list(entry.token.encode("utf-8"))
        assert entry.logprob == pytest.approx(logprob, abs=1e-4)
        assert [t.token for t in entry.top_logprobs] == [tokenizer.decode([i]) for i in top]
        assert entry.top_logprobs[0].logprob == pytest.approx(logprob, abs=1e-4)  # greedy: the chosen is the top


def test_logprobs_are_not_shaped_by_temperature(live: LiveServer) -> None:
    """vLLM's default: the raw model's logprobs. top_k 1 keeps temperature 1.7 on the greedy path, so the tokens
    are the greedy ones, and so must their logprobs be (temperature-scaled ones would all differ)."""
    ask = {"messages": MESSAGES, "max_tokens": TOKENS, "logprobs": True, "top_logprobs": 2}
    greedy = _post(live, "/v1/chat/completions", {**ask, "temperature": 0}).json()["choices"][0]["logprobs"]
    hot = _post(live, "/v1/chat/completions", {**ask, "temperature": 1.7, "top_k": 1, "seed": 3}).json()
    assert greedy is not None and len(greedy["content"]) == hot["usage"]["completion_tokens"]
    assert hot["choices"][0]["logprobs"] == greedy


def test_completion_logprobs_have_the_legacy_shape(live: LiveServer, reference: Any) -> None:
    _, tokenizer = reference
    expected = _greedy_with_logprobs(reference, tokenizer(PROMPT).input_ids, 2)
    answer = _post(live, "/v1/completions", {"prompt": PROMPT, "max_tokens": TOKENS, "temperature": 0, "logprobs": 2})
    logprobs = answer.json()["choices"][0]["logprobs"]
    tokens = [tokenizer.decode([token]) for token, _, _ in expected]
    assert [_legacy_text(token) for token in logprobs["tokens"]] == tokens
    assert logprobs["token_logprobs"] == pytest.approx([logprob for _, logprob, _ in expected], abs=1e-4)
    assert [[_legacy_text(t) for t in alternatives] for alternatives in logprobs["top_logprobs"]] == [
        [tokenizer.decode([i]) for i in top] for _, _, top in expected]
    text = answer.json()["choices"][0]["text"]
    if "\ufffd" not in "".join(tokens):  # each token whole: they follow one another (partial ones: the test below)
        assert logprobs["text_offset"] == [sum(len(t) for t in tokens[:i]) for i in range(len(tokens))]
    assert all(0 <= offset <= len(text) for offset in logprobs["text_offset"])


def _legacy_bytes(token: str) -> bytes:
    """The bytes a legacy completions token stands for: ``bytes:\\xe9\\xbe`` (OpenAI's form for part of a character)
    or its text's UTF-8."""
    if token.startswith("bytes:"):
        return bytes.fromhex(token[len("bytes:"):].replace("\\x", ""))
    return token.encode("utf-8")


def _legacy_text(token: str) -> str:
    """A legacy token as the tokenizer decodes it alone (U+FFFD for part of a character)."""
    return _legacy_bytes(token).decode("utf-8", errors="replace")


# Rare ideographs and an emoji: byte-level BPE splits each of 龘 and 靐 into two tokens (and, with the DeepSeek-V3
# tokenizer, 齉 and 🤖 too), every one of which decodes alone to U+FFFD.
SPLIT = "龘靐齉🤖是 ok"


@pytest.fixture(scope="module", params=["tiny-r1-distill-qwen", "tiny-deepseek-v3"])
def split_server(request: pytest.FixtureRequest, tiny_model_dir: Any) -> Iterator[tuple[LiveServer, Any]]:
    """A server whose model always answers :data:`SPLIT` (then EOS), with the preset's real tokenizer."""
    from scripted import scripted_serving

    from dsft.models.loading import load_tokenizer
    from dsft.serve.engine import TransformersEngine
    from dsft.serve.settings import ServeSettings

    tokenizer = load_tokenizer(tiny_model_dir(request.param))
    serving = scripted_serving(tokenizer, SPLIT, "deepseek-r1")
    settings = ServeSettings(served_model_name=NAME, api_key=API_KEY)
    with run_live(TransformersEngine(lambda: serving, max_queue=4, max_batch=1), settings) as server:
        yield server, tokenizer


def test_a_partial_characters_tokens_have_their_own_bytes(split_server: tuple[LiveServer, Any]) -> None:
    """OpenAI's ``bytes`` is for joining the tokens of one character: they were each U+FFFD's UTF-8 (239, 191, 189),
    so no client could rebuild 龘 from them."""
    live, tokenizer = split_server
    ids = tokenizer(SPLIT, add_special_tokens=False).input_ids
    assert sum(tokenizer.decode([i]) == "\ufffd" for i in ids) >= 4  # the case under test is there
    chat = {"messages": MESSAGES, "max_tokens": 32, "logprobs": True, "top_logprobs": 2}
    content = _post(live, "/v1/chat/completions", chat).json()["choices"][0]["logprobs"]["content"]
    streamed = [e for c in _streamed_choices(live, "/v1/chat/completions", chat)
                for e in (c.get("logprobs") or {"content": []})["content"]]
    assert streamed == content
    assert len(content) == len(ids) + 1  # and the EOS
    assert b"".join(bytes(e["bytes"]) for e in content[:-1]) == SPLIT.encode("utf-8")
    for entry in content[:-1]:
        assert entry["bytes"] != list("\ufffd".encode("utf-8"))
        assert entry["top_logprobs"][0]["bytes"] == entry["bytes"]  # the scripted token is the certain one
    first_two = bytes(content[0]["bytes"]) + bytes(content[1]["bytes"])
    assert first_two.decode("utf-8") == "龘"


def test_legacy_completion_tokens_name_a_partial_character_by_its_bytes(split_server: tuple[LiveServer, Any]) -> None:
    """/v1/completions' logprobs have no ``bytes``: each token that is part of a character was U+FFFD, so its tokens
    said nothing and the alternatives of one position collided as keys of ``top_logprobs``. Such a token is now named
    ``bytes:\\xNN...`` as OpenAI's legacy API names it, from the bytes the chat endpoint returns; others are text."""
    live, tokenizer = split_server
    plain = {"prompt": PROMPT, "max_tokens": 32, "logprobs": 2}
    logprobs = _post(live, "/v1/completions", plain).json()["choices"][0]["logprobs"]
    chat = {"messages": MESSAGES, "max_tokens": 32, "logprobs": True}
    content = _post(live, "/v1/chat/completions", chat).json()["choices"][0]["logprobs"]["content"]
    tokens = logprobs["tokens"]
    assert [_legacy_bytes(token) for token in tokens] == [bytes(entry["bytes"]) for entry in content]
    assert b"".join(_legacy_bytes(token) for token in tokens[:-1]).decode("utf-8") == SPLIT
    assert not any("\ufffd" in token for token in tokens)
    partial = [token for token in tokens if token.startswith("bytes:")]
    assert len(partial) >= 4 and tokens[:2] == ["bytes:" + "".join(f"\\x{b:02x}" for b in bytes(e["bytes"]))
                                                 for e in content[:2]]
    assert "是" in tokens or " ok" in tokens  # whole characters stay text
    for token, alternatives in zip(tokens, logprobs["top_logprobs"]):
        assert token in alternatives  # named alike in both
    streamed = [c["logprobs"] for c in _streamed_choices(live, "/v1/completions", plain) if c.get("logprobs")]
    assert [token for chunk in streamed for token in chunk["tokens"]] == tokens


@pytest.mark.parametrize("model", ["tiny-r1-distill-qwen", "tiny-deepseek-v3"])
def test_the_alternatives_of_one_position_no_longer_collide(model: str, tiny_model_dir: Any) -> None:
    """Two alternatives that are each part of a character were one key, U+FFFD, of the position's top_logprobs: the
    legacy shape is a {token: logprob} map, so one was lost."""
    from dsft.models.loading import load_tokenizer
    from dsft.serve.logprobs import Candidate, TokenLogprob, completion_logprobs
    from dsft.serve.token_bytes import TokenBytes

    tokenizer = load_tokenizer(tiny_model_dir(model))
    token_bytes = TokenBytes(tokenizer)
    first, second = tokenizer("龘", add_special_tokens=False).input_ids[:2]  # 龘's two tokens
    halves = [Candidate(tokenizer.decode([i]), -0.5 - n, token_bytes(i, tokenizer.decode([i])))
              for n, i in enumerate((first, second))]
    assert [c.token for c in halves] == ["\ufffd", "\ufffd"]  # the case under test is there
    legacy = completion_logprobs([TokenLogprob(halves[0], tuple(halves))])
    assert legacy["tokens"] == ["bytes:\\xe9\\xbe"]
    assert legacy["top_logprobs"] == [{"bytes:\\xe9\\xbe": -0.5, "bytes:\\x98": -1.5}]


def test_text_offsets_count_the_characters_of_the_returned_text(split_server: tuple[LiveServer, Any]) -> None:
    """Each token starts where the character holding its first byte starts: a character's tokens share its offset.
    Each U+FFFD token used to count as one character of its own, so every offset after 龘 was past its token."""
    live, _ = split_server
    plain = {"prompt": PROMPT, "max_tokens": 32, "logprobs": 1}
    choice = _post(live, "/v1/completions", plain).json()["choices"][0]
    assert choice["text"] == SPLIT
    chat = {"messages": MESSAGES, "max_tokens": 32, "logprobs": True}
    entries = _post(live, "/v1/chat/completions", chat).json()["choices"][0]["logprobs"]["content"]
    raw = [bytes(e["bytes"]) for e in entries]
    whole_characters_before = [len(b"".join(raw[:i]).decode("utf-8", errors="ignore")) for i in range(len(raw))]
    assert choice["logprobs"]["text_offset"] == whole_characters_before
    assert choice["logprobs"]["text_offset"][:3] == [0, 0, 1]  # 龘's two tokens, then 靐's first
    assert SPLIT.index(" ok") in choice["logprobs"]["text_offset"]
    assert choice["logprobs"]["text_offset"][-1] == len(SPLIT)  # the EOS, after the whole text
    chunks = [c["logprobs"] for c in _streamed_choices(live, "/v1/completions", plain) if c.get("logprobs")]
    assert [offset for chunk in chunks for offset in chunk["text_offset"]] == choice["logprobs"]["text_offset"]


def test_streamed_logprobs_add_up_to_the_whole_answers(live: LiveServer) -> None:
    """Each chunk carries the entries of the tokens since the chunk before; together, the whole answer's."""
    chat = {"messages": MESSAGES, "max_tokens": TOKENS, "temperature": 0, "logprobs": True, "top_logprobs": 2}
    whole = _post(live, "/v1/chat/completions", chat).json()["choices"][0]["logprobs"]["content"]
    streamed = [e for c in _streamed_choices(live, "/v1/chat/completions", chat) for e in (c.get("logprobs") or
                                                                                          {"content": []})["content"]]
    assert streamed == whole
    plain = {"prompt": PROMPT, "max_tokens": TOKENS, "temperature": 0, "logprobs": 1}
    whole = _post(live, "/v1/completions", plain).json()["choices"][0]["logprobs"]
    chunks = [c["logprobs"] for c in _streamed_choices(live, "/v1/completions", plain)]
    assert {key: [v for chunk in chunks for v in chunk[key]] for key in whole} == whole


@pytest.mark.parametrize("unasked", [{}, {"top_logprobs": 0}, {"logprobs": False},
                                     {"logprobs": None, "top_logprobs": None}])  # null, as some clients send it
def test_without_logprobs_there_are_none(live: LiveServer, unasked: dict[str, Any]) -> None:
    chat = _post(live, "/v1/chat/completions", {"messages": MESSAGES, "max_tokens": 2, **unasked})
    assert chat.status_code == 200, chat.text
    assert chat.json()["choices"][0]["logprobs"] is None
    plain = _post(live, "/v1/completions", {"prompt": PROMPT, "max_tokens": 2, "logprobs": None}).json()
    assert plain["choices"][0]["logprobs"] is None


@pytest.mark.parametrize(("path", "fields", "param"), [
    ("/v1/chat/completions", {"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ("/v1/chat/completions", {"logprobs": True, "top_logprobs": -1}, "top_logprobs"),
    ("/v1/chat/completions", {"top_logprobs": 2}, "top_logprobs"),
    ("/v1/chat/completions", {"logprobs": 2}, "logprobs"),
    ("/v1/completions", {"logprobs": 21}, "logprobs"),
    ("/v1/completions", {"logprobs": True}, "logprobs"),
    ("/generate", {"logprobs": True}, "logprobs"),
    ("/generate", {"top_logprobs": 1}, "top_logprobs"),
    ("/generate", {"stream": True}, "stream"),  # was ignored too: one JSON answer came back
    ("/generate", {"stream_options": {"include_usage": True}}, "stream_options"),
])
def test_requests_that_cannot_be_answered_are_400(
    live: LiveServer, path: str, fields: dict[str, Any], param: str
) -> None:
    body = {"messages": MESSAGES} if path == "/v1/chat/completions" else {"prompt": PROMPT}
    answer = _post(live, path, {**body, "max_tokens": 2, **fields})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == param
