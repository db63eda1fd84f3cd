"""One request cannot poison the server: its failure stays its own, bad values are 400, big bodies 413,
long prompts never stall the event loop, and the key guards everything but /health."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from live_server import API_KEY, run_live
from scripted import scripted_serving

ANSWER = "Fine, thanks."


@pytest.fixture(scope="module")
def tokenizer(serve_model_dir: Path) -> Any:
    from dsft.models.loading import load_tokenizer

    return load_tokenizer(serve_model_dir)


def _ask(**extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "How are you?"}], "max_tokens": 8, **extra}


def _batched(server: Any, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    """Post every body while the engine is paused, so that they all run as one batch."""
    answers: list[httpx.Response | None] = [None] * len(bodies)

    def post(index: int) -> None:
        answers[index] = httpx.post(server.base_url + "/v1/chat/completions", json=bodies[index], timeout=60)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(bodies))]
    with server.engine.paused():
        for thread in threads:
            thread.start()
        deadline = time.time() + 30
        while server.engine.queued < len(bodies) and time.time() < deadline:
            time.sleep(0.02)
    for thread in threads:
        thread.join(timeout=60)
    return answers  # type: ignore[return-value]


def _engine(tokenizer: Any, serving: Any = None, **settings: Any) -> tuple[Any, Any]:
    from dsft.serve.engine import TransformersEngine
    from dsft.serve.settings import ServeSettings

    serving = serving or scripted_serving(tokenizer, ANSWER, "deepseek-v3")
    return TransformersEngine(lambda: serving, max_batch=8), ServeSettings(served_model_name="m", **settings)


def test_a_poisoned_request_shares_a_batch_with_good_ones(tokenizer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """top_p 5e-324 used to fail the whole batch (500 for all); a request whose generator breaks fails alone."""
    from dsft.serve.sampling import SamplingParams

    make_generator = SamplingParams.make_generator

    def breaks_for_seed_13(self: SamplingParams) -> Any:
        if self.seed == 13:
            raise RuntimeError("generator exploded (simulated)")
        return make_generator(self)

    monkeypatch.setattr(SamplingParams, "make_generator", breaks_for_seed_13)
    engine, settings = _engine(tokenizer)
    good = _ask(temperature=0.7, seed=1)
    with run_live(engine, settings) as server:
        answers = _batched(server, [good, _ask(temperature=1.0, top_p=5e-324), good, _ask(temperature=1.0, seed=13)])
    assert engine.batch_sizes[-1] == 4, "the four requests must have shared one batch"
    codes = [a.status_code for a in answers]
    assert codes == [200, 200, 200, 500], [a.text for a in answers]
    assert {a.json()["choices"][0]["message"]["content"] for a in answers[:3]} == {ANSWER}
    assert "generator exploded" in answers[3].json()["error"]["message"]


@pytest.mark.parametrize("body, param", [
    (_ask(seed=2**64), "seed"),
    (_ask(seed=-(2**63) - 1), "seed"),
    (_ask(top_p=0), "top_p"),
    (_ask(temperature=-1), "temperature"),
    (_ask(stream="yes"), "stream"),                       # wrong JSON types are refused, not coerced
    (_ask(max_tokens=True), "max_tokens"),
    (_ask(temperature="0.5"), "temperature"),
    (_ask(stream_options={"include_usage": 1}), "stream_options.include_usage"),
    ({"model": "m", "messages": [{"role": "user", "content": "\ud800"}]}, "messages.0.content"),
    ({"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "a\udfffb"}]}]},
     "messages.0.content.0.text"),
    ({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stop": ["\ud83d"]}, "stop.0"),
])
def test_out_of_range_values_are_400_naming_the_field(tokenizer: Any, body: dict[str, Any], param: str) -> None:
    engine, settings = _engine(tokenizer)
    with run_live(engine, settings) as server:
        # json.dumps escapes a lone surrogate as \\ud800, exactly what a client sends.
        answer = httpx.post(server.base_url + "/v1/chat/completions", content=json.dumps(body).encode(),
                            headers={"content-type": "application/json"}, timeout=60)
        health = httpx.get(server.base_url + "/health", timeout=5)
    assert answer.status_code == 400, answer.text
    assert param in answer.json()["error"]["message"]
    assert health.status_code == 200


WRONG_TYPES = [
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": 5}]},
     "messages.0.content: must be a string, a list of content parts or null, got int"),
    ("/v1/chat/completions", _ask(stop=7), "stop: must be a string or a list of strings, got int"),
    ("/v1/completions", {"prompt": 5}, "prompt: must be a string or a list of one string, got int"),
    ("/v1/chat/completions", _ask(n=2), "n: only n=1 is supported"),
]


def test_a_wrong_type_is_one_problem_naming_the_field(tokenizer: Any) -> None:
    """A union field's wrong type is one problem (not one per member of the union, named `content.str`)."""
    engine, settings = _engine(tokenizer)
    with run_live(engine, settings) as server:
        answers = [httpx.post(server.base_url + path, json=body, timeout=60) for path, body, _ in WRONG_TYPES]
    for answer, (_, _, message) in zip(answers, WRONG_TYPES):
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["message"] == message
        assert answer.json()["error"]["param"] == message.split(":")[0]


MISTAKES = [
    # a misspelt field would otherwise be ignored: max_token left max_tokens unset (2,048 tokens generated)
    ("/v1/chat/completions", _ask(max_token=5), "max_token: unknown field; did you mean 'max_tokens'?"),
    ("/v1/chat/completions", _ask(max_new_tokens=5), "max_new_tokens: unknown field; use 'max_tokens'"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "contnet": "hi"}]},
     "messages.0.contnet: unknown field; did you mean 'content'?"),
    ("/v1/completions", {"promt": "hi"}, "promt: unknown field; did you mean 'prompt'?"),
    # transformers' generate() names (guide 004's /generate passed max_length=200): ignored, the answer ran to 2,048
    ("/generate", {"prompt": "hi", "max_length": 200},
     "max_length: unknown field; use 'max_tokens' (tokens generated, the prompt not counted)"),
    ("/generate", {"prompt": "hi", "do_sample": False}, "do_sample: unknown field; use 'temperature' (0 = greedy)"),
    ("/v1/chat/completions", _ask(num_return_sequences=1), "num_return_sequences: unknown field; use 'n'"),
    # a user turn without content was rendered as an empty turn
    ("/v1/chat/completions", {"messages": [{"role": "user", "text": "hi"}]},
     "messages.0.content: a user message needs content"),
    ("/v1/chat/completions", {"messages": [{"role": "system", "content": None}, {"role": "user", "content": "hi"}]},
     "messages.0.content: a system message needs content"),
]


def test_a_misspelt_field_or_a_turn_without_content_is_400_naming_it(tokenizer: Any) -> None:
    engine, settings = _engine(tokenizer)
    with run_live(engine, settings) as server:
        answers = [httpx.post(server.base_url + path, json=body, timeout=60) for path, body, _ in MISTAKES]
        # other OpenAI and vLLM parameters dsft does not act on are still accepted, as vLLM accepts them
        tolerated = httpx.post(server.base_url + "/v1/chat/completions", timeout=60,
                               json=_ask(user="u1", presence_penalty=0.1, top_k=5, logprobs=False, store=False))
        # guide 004's FastAPI endpoint read `prompt` from the query string; here the body is JSON, and it says so
        in_query = httpx.post(server.base_url + "/generate", params={"prompt": "hi", "max_tokens": 4}, timeout=60)
    for answer, (_, _, message) in zip(answers, MISTAKES):
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["message"] == message
        assert answer.json()["error"]["param"] == message.split(":")[0]
    assert tolerated.status_code == 200, tolerated.text
    assert in_query.status_code == 400 and in_query.json()["error"]["message"] == (
        "body: missing; send the fields as a JSON body (content-type: application/json), e.g. {\"prompt\": \"...\"}; "
        "query parameters (prompt, max_tokens) are not read"), in_query.text


def test_a_body_over_the_cap_is_413_and_a_long_prompt_does_not_stall_health(tokenizer: Any) -> None:
    release = threading.Event()

    class SlowTokenizer:
        """Tokenizing the marked prompt blocks until released, like a 10 MB prompt would."""

        def __getattr__(self, name: str) -> Any:
            return getattr(tokenizer, name)

        def __len__(self) -> int:
            return len(tokenizer)

        def __call__(self, text: Any, **kwargs: Any) -> Any:
            if isinstance(text, str) and "SLOW" in text:
                release.wait(timeout=30)
            return tokenizer(text, **kwargs)

    serving = scripted_serving(tokenizer, ANSWER, "deepseek-v3")
    serving.tokenizer = SlowTokenizer()
    engine, settings = _engine(tokenizer, serving, max_body_bytes=2000)
    slow: list[httpx.Response] = []
    with run_live(engine, settings) as server:
        big = httpx.post(server.base_url + "/v1/chat/completions", timeout=30,
                         json={"model": "m", "messages": [{"role": "user", "content": "x" * 3000}]})
        chunked = httpx.post(server.base_url + "/v1/chat/completions", timeout=30,
                             content=iter([b'{"model": "m", "messages": [', b" " * 3000, b"]}"]),
                             headers={"content-type": "application/json"})
        worker = threading.Thread(target=lambda: slow.append(httpx.post(
            server.base_url + "/v1/chat/completions", json=_ask(messages=[{"role": "user", "content": "SLOW"}]),
            timeout=60)))
        worker.start()
        time.sleep(0.3)  # the slow request is now being tokenized
        started = time.time()
        health = httpx.get(server.base_url + "/health", timeout=5)
        health_seconds = time.time() - started
        release.set()
        worker.join(timeout=60)
    assert big.status_code == 413 and "at most 2000" in big.json()["error"]["message"]
    assert chunked.status_code == 413
    assert health.status_code == 200 and health_seconds < 2
    assert slow[0].status_code == 200


def test_the_api_key_guards_schema_and_docs_and_cannot_be_empty(tokenizer: Any) -> None:
    from dsft.errors import DsftError
    from dsft.serve.settings import ServeSettings

    for bad in ("", "  ", " key"):
        with pytest.raises(DsftError, match="--api-key"):
            ServeSettings(api_key=bad)
    engine, settings = _engine(tokenizer, api_key=API_KEY)
    with run_live(engine, settings) as server:
        paths = ["/openapi.json", "/docs", "/redoc", "/v1/models"]
        anonymous = {p: httpx.get(server.base_url + p).status_code for p in paths}
        keyed = {p: httpx.get(server.base_url + p, headers={"Authorization": f"Bearer {API_KEY}"}).status_code
                 for p in paths}
        schema = httpx.get(server.base_url + "/openapi.json", headers={"Authorization": f"Bearer {API_KEY}"}).json()
    assert anonymous == dict.fromkeys(paths, 401)
    assert keyed == dict.fromkeys(paths, 200)
    assert "/v1/chat/completions" in schema["paths"]


@pytest.mark.parametrize("messages, where", [
    ([{"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}], "messages.0"),
    ([{"role": "system", "content": "s"}], "messages:"),
    ([{"role": "user", "content": "a"}, {"role": "tool", "content": "42"}], "messages.1"),
    ([{"role": "user", "content": "a"}, {"role": "system", "content": "late"}, {"role": "user", "content": "b"}],
     "messages.1"),
])
def test_role_orders_the_template_cannot_render_are_400_naming_the_message(
    tokenizer: Any, messages: list[dict[str, Any]], where: str,
) -> None:
    engine, settings = _engine(tokenizer)
    with run_live(engine, settings) as server:
        answer = httpx.post(server.base_url + "/v1/chat/completions", json={"model": "m", "messages": messages})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["message"].startswith(where)
    assert answer.json()["error"]["code"] == "invalid_role_order"


@pytest.mark.parametrize("family", ["deepseek-v3.1", "deepseek-v3.2"])
def test_two_assistant_turns_in_a_row_are_400_where_the_family_writes_no_header_between_them(
    tokenizer: Any, family: str,
) -> None:
    """V3.1 and V3.2 write the second turn straight after the first's end-of-sentence token: the request was
    rendered that way without a word (training counts and warns of such conversations)."""
    from dsft.data.conversation import Conversation, Message
    from dsft.templates import get_template

    messages = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                {"role": "assistant", "content": "c"}, {"role": "user", "content": "d"}]
    engine, settings = _engine(tokenizer, scripted_serving(tokenizer, ANSWER, family))
    with run_live(engine, settings) as server:
        answer = httpx.post(server.base_url + "/v1/chat/completions", json={"model": "m", "messages": messages})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["message"].startswith("messages.2: an assistant turn right after another: this family's template "
                                       "writes the next assistant turn with no assistant header"), error
    assert error["message"].endswith(f"(template {family})") and error["param"] == "messages.2"
    assert error["code"] == "invalid_role_order"
    together = Conversation([Message(m["role"], m["content"]) for m in messages])
    assert [get_template(name).prompt_problems(together) for name in ("deepseek-v3", "deepseek-r1", "deepseek-v4",
                                                                       "deepseek-llm")] == [[]] * 4  # a header each


def test_orders_each_family_renders_faithfully_are_accepted() -> None:
    from dsft.data.conversation import Conversation, Message
    from dsft.templates import get_template

    two_users = Conversation([Message("user", "a"), Message("user", "b")])
    late_system = Conversation([Message("user", "a"), Message("system", "s"), Message("user", "b")])
    assert get_template("deepseek-r1").prompt_problems(two_users) == []
    assert get_template("deepseek-llm").prompt_problems(late_system) == []  # written where it stands
    assert get_template("deepseek-v3").prompt_problems(late_system) == [
        (1, "a system message after the first turn: this family's template moves every system message to the "
            "start; put it there")]
