"""The official ``openai`` client against a live server on 127.0.0.1 (tiny R1-Distill-Qwen model).

Greedy answers are checked against ``model.generate`` run separately, prompt token counts against the
tokenizer's own chat template, so the server's prompt, batching and counting are all verified.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from live_server import API_KEY, LiveServer, run_live

MAX_MODEL_LEN = 512
NAME = "tiny-r1"


@pytest.fixture(scope="module")
def live(serve_model_dir: Path, extra_adapter_dir: Path) -> Iterator[LiveServer]:
    from dsft.serve.server import build_engine
    from dsft.serve.settings import ServeSettings

    settings = ServeSettings(served_model_name=NAME, api_key=API_KEY, max_queue=16, max_batch=8, max_tokens=64,
                             max_model_len=MAX_MODEL_LEN)
    engine = build_engine(str(serve_model_dir), [f"sql={extra_adapter_dir}"], settings)
    with run_live(engine, settings) as server:
        yield server


@pytest.fixture(scope="module")
def reference(serve_model_dir: Path) -> Any:
    """The same checkpoint loaded independently, for greedy references."""
    from dsft.models.loading import load_model, load_tokenizer

    return load_model(serve_model_dir, dtype="float32", device="cpu"), load_tokenizer(serve_model_dir)


def greedy_reference(reference: Any, messages: list[dict[str, str]], max_new_tokens: int) -> tuple[int, list[int]]:
    """(prompt length, generated ids) with the tokenizer's own chat template and ``model.generate``."""
    import torch

    model, tokenizer = reference
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    output = model.generate(torch.tensor([prompt]), max_new_tokens=max_new_tokens, do_sample=False,
                            attention_mask=torch.ones(1, len(prompt), dtype=torch.long), pad_token_id=tokenizer.eos_token_id)
    return len(prompt), output[0, len(prompt):].tolist()


def reasoning_of(message: Any) -> str | None:
    return (message.model_extra or {}).get("reasoning_content")


def expected_text(reference: Any, ids: list[int]) -> str:
    model, tokenizer = reference
    eos = tokenizer.eos_token_id
    return tokenizer.decode([i for i in ids if i != eos], skip_special_tokens=True)


def test_chat_completion_matches_generate_and_counts_tokens(live: LiveServer, reference: Any) -> None:
    messages = [{"role": "user", "content": "What is 2+2?"}]
    answer = live.client().chat.completions.create(model=NAME, messages=messages, max_tokens=12, temperature=0)
    prompt_len, ids = greedy_reference(reference, messages, 12)
    message = answer.choices[0].message
    # R1 prompts end inside <think>: without a </think> in the output all of it is reasoning.
    joined = (reasoning_of(message) or "") + ("</think>" + message.content if message.content is not None else "")
    assert joined == expected_text(reference, ids)
    assert answer.usage.prompt_tokens == prompt_len
    assert answer.usage.completion_tokens == len(ids)
    assert answer.usage.total_tokens == prompt_len + len(ids)
    assert answer.choices[0].finish_reason == ("stop" if ids[-1] == reference[1].eos_token_id else "length")
    assert answer.model == NAME


def test_streaming_gives_the_same_answer_and_usage(live: LiveServer) -> None:
    client = live.client()
    messages = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Name a colour."}]
    whole = client.chat.completions.create(model=NAME, messages=messages, max_tokens=10, temperature=0)
    chunks = list(client.chat.completions.create(model=NAME, messages=messages, max_tokens=10, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    reasoning = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or ""
                        for c in chunks if c.choices)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert reasoning == (reasoning_of(whole.choices[0].message) or "")
    assert content == (whole.choices[0].message.content or "")
    assert len(chunks) > 3, "the answer should arrive in several chunks"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.choices[0].finish_reason
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens


def test_seeded_sampling_repeats(live: LiveServer) -> None:
    client = live.client()
    ask = dict(model=NAME, messages=[{"role": "user", "content": "Tell me a story."}], max_tokens=12,
               temperature=1.0, top_p=0.9, seed=1234)
    first = client.chat.completions.create(**ask)
    second = client.chat.completions.create(**ask)
    assert reasoning_of(first.choices[0].message) == reasoning_of(second.choices[0].message)


def test_stop_string_cuts_the_text(live: LiveServer, reference: Any) -> None:
    messages = [{"role": "user", "content": "Count to ten."}]
    full = expected_text(reference, greedy_reference(reference, messages, 16)[1])
    stop = full[6:9]
    answer = live.client().chat.completions.create(model=NAME, messages=messages, max_tokens=16, temperature=0,
                                                   stop=[stop])
    assert reasoning_of(answer.choices[0].message) == full[: full.index(stop)]
    assert answer.choices[0].finish_reason == "stop"


def test_wrong_or_missing_api_key_is_401_but_health_is_open(live: LiveServer) -> None:
    with pytest.raises(openai.AuthenticationError):
        live.client(api_key="wrong").models.list()
    assert httpx.get(live.base_url + "/v1/models").status_code == 401
    body = httpx.post(live.base_url + "/generate", json={"prompt": "hi"}).json()
    assert body["error"]["type"] == "authentication_error"
    assert httpx.get(live.base_url + "/health").status_code == 200


@pytest.mark.parametrize("body, param", [
    ({"model": NAME}, "messages"),
    ({"model": NAME, "messages": [{"role": "wizard", "content": "hi"}]}, "messages.0.role"),
    ({"model": NAME, "messages": [{"role": "user", "content": "hi"}], "temperature": 7}, "temperature"),
    ({"model": NAME, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 65}, "max_tokens"),
    ({"model": NAME, "messages": [{"role": "user", "content": "hi"}], "n": 2}, "n"),
    ({"model": NAME, "messages": [{"role": "user", "content": "hi " * 600}]}, "messages"),
])
def test_malformed_requests_are_400_in_openai_shape(live: LiveServer, body: dict[str, Any], param: str) -> None:
    reply = httpx.post(live.base_url + "/v1/chat/completions", json=body,
                       headers={"Authorization": f"Bearer {API_KEY}"})
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["param"] == param


def test_bad_requests_raise_the_clients_errors(live: LiveServer) -> None:
    client = live.client()
    with pytest.raises(openai.BadRequestError, match="context length"):
        client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "word " * 480}],
                                       max_tokens=60)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="/etc/passwd", messages=[{"role": "user", "content": "hi"}])


def test_models_lists_the_served_name_and_adapters(live: LiveServer) -> None:
    models = live.client().models.list()
    assert [m.id for m in models.data] == [NAME, "sql"]


def test_adapter_is_picked_by_name(live: LiveServer) -> None:
    client = live.client()
    ask = dict(messages=[{"role": "user", "content": "Write SQL."}], max_tokens=8, temperature=0)
    base = client.chat.completions.create(model=NAME, **ask)
    tuned = client.chat.completions.create(model="sql", **ask)
    again = client.chat.completions.create(model=NAME, **ask)
    assert reasoning_of(tuned.choices[0].message) != reasoning_of(base.choices[0].message)
    assert reasoning_of(again.choices[0].message) == reasoning_of(base.choices[0].message)


def test_eight_concurrent_clients_are_batched_and_answered(live: LiveServer, reference: Any) -> None:
    questions = [f"Question {i}: {'why ' * i}?" for i in range(8)]  # different lengths: left padding
    answers: dict[int, Any] = {}

    def ask(i: int) -> None:
        answers[i] = live.client().chat.completions.create(
            model=NAME, messages=[{"role": "user", "content": questions[i]}], max_tokens=6, temperature=0)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    with live.engine.paused():
        for thread in threads:
            thread.start()
        deadline = time.time() + 30
        while live.engine.queued < 8 and time.time() < deadline:
            time.sleep(0.02)
        assert live.engine.queued == 8
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(answers) == list(range(8))
    assert live.engine.batch_sizes[-1] == 8
    for i, answer in answers.items():
        _, ids = greedy_reference(reference, [{"role": "user", "content": questions[i]}], 6)
        assert reasoning_of(answer.choices[0].message) == expected_text(reference, ids)


def test_completions_endpoint_uses_the_raw_prompt(live: LiveServer, reference: Any) -> None:
    import torch

    model, tokenizer = reference
    prompt = "The capital of France is"
    ids = tokenizer(prompt).input_ids
    want = model.generate(torch.tensor([ids]), max_new_tokens=7, do_sample=False,
                          pad_token_id=tokenizer.eos_token_id)[0, len(ids):].tolist()
    client = live.client()
    answer = client.completions.create(model=NAME, prompt=prompt, max_tokens=7, temperature=0)
    assert answer.choices[0].text == expected_text(reference, want)
    assert answer.usage.prompt_tokens == len(ids)
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model=NAME, prompt=prompt, max_tokens=7, temperature=0, stream=True) if c.choices)
    assert streamed == answer.choices[0].text


def test_generate_endpoint(live: LiveServer) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    body = httpx.post(live.base_url + "/generate", headers=headers,
                      json={"prompt": "Hello!", "max_tokens": 9, "temperature": 0}).json()
    chat = live.client().chat.completions.create(model=NAME, messages=[{"role": "user", "content": "Hello!"}],
                                                 max_tokens=9, temperature=0)
    assert body["text"] == (chat.choices[0].message.content or "")
    assert body["reasoning"] == reasoning_of(chat.choices[0].message)
    assert body["usage"] == chat.usage.model_dump(include={"prompt_tokens", "completion_tokens", "total_tokens"})
