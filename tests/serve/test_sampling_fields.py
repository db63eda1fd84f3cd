"""Request fields that change how tokens are drawn are honoured, not ignored: top_k, min_p, repetition_penalty,
presence_penalty and frequency_penalty on every generation endpoint, streamed or not, checked against
transformers' own processors and ``generate`` (OpenAI's penalty formula written out in a logits processor).

A tiny random model sampled at temperature 1 almost never follows its greedy path, so ``top_k: 1`` (and
``min_p: 1``, which keeps only the most likely token) must turn a seeded temperature-1 request into the greedy
answer; the test also checks that the same request without the field does not give it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from live_server import API_KEY, LiveServer, run_live
from transformers import LogitsProcessor, LogitsProcessorList

HEADERS = {"Authorization": f"Bearer {API_KEY}"}
MESSAGES = [{"role": "user", "content": "Tell me a story about a cat."}]
PROMPT = "Once upon a time"
TOKENS = 10


@pytest.fixture(scope="module")
def live(serve_model_dir: Path) -> Iterator[LiveServer]:
    from dsft.serve.server import build_engine
    from dsft.serve.settings import ServeSettings

    settings = ServeSettings(served_model_name="m", api_key=API_KEY, max_batch=4, max_tokens=32, max_model_len=256)
    with run_live(build_engine(str(serve_model_dir), [], settings), settings) as server:
        yield server


@pytest.fixture(scope="module")
def reference(serve_model_dir: Path) -> Any:
    from dsft.models.loading import load_model, load_tokenizer

    return load_model(serve_model_dir, dtype="float32", device="cpu"), load_tokenizer(serve_model_dir)


def _post(live: LiveServer, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(live.base_url + path, json=body, headers=HEADERS, timeout=60)


def _body(path: str, **fields: Any) -> dict[str, Any]:
    what = {"messages": MESSAGES} if path == "/v1/chat/completions" else {"prompt": PROMPT}
    return {"model": "m", "max_tokens": TOKENS, **what, **fields}


def _answer(live: LiveServer, path: str, **fields: Any) -> str:
    """The whole generated text (reasoning and content as one), asked for in one piece or streamed."""
    if fields.get("stream"):
        with httpx.stream("POST", live.base_url + path, json=_body(path, **fields), headers=HEADERS, timeout=60) as r:
            assert r.status_code == 200, r.read()
            chunks = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
        pieces = [c["choices"][0].get("delta", c["choices"][0]) for c in chunks if c["choices"]]
        return "".join((p.get("reasoning_content") or "") + (p.get("content") or p.get("text") or "") for p in pieces)
    answer = _post(live, path, _body(path, **fields))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    if path == "/generate":
        return (body["reasoning"] or "") + body["text"]
    choice = body["choices"][0]
    if "message" in choice:
        return (choice["message"]["reasoning_content"] or "") + (choice["message"]["content"] or "")
    return choice["text"]


ENDPOINTS = [("/v1/chat/completions", False), ("/v1/chat/completions", True), ("/v1/completions", False),
             ("/v1/completions", True), ("/generate", False)]


@pytest.mark.parametrize(("path", "stream"), ENDPOINTS)
@pytest.mark.parametrize("keeps_only_the_top", [{"top_k": 1}, {"min_p": 1.0}])
def test_keeping_only_the_most_likely_token_gives_the_greedy_answer(
    live: LiveServer, path: str, stream: bool, keeps_only_the_top: dict[str, Any]
) -> None:
    """Both fields were ignored: the request sampled at temperature 1 and answered something else."""
    stream_field = {"stream": True} if stream else {}
    greedy = _answer(live, path, temperature=0, **stream_field)
    sampled = _answer(live, path, temperature=1.0, seed=7, **stream_field)
    assert sampled != greedy, "the test needs a seed whose temperature-1 answer leaves the greedy path"
    assert _answer(live, path, temperature=1.0, seed=7, **keeps_only_the_top, **stream_field) == greedy


def test_disabled_top_k_and_neutral_values_change_nothing(live: LiveServer) -> None:
    path = "/v1/completions"
    sampled = _answer(live, path, temperature=1.0, seed=7)
    for neutral in ({"top_k": 0}, {"top_k": -1}, {"min_p": 0.0}, {"repetition_penalty": 1.0},
                    {"presence_penalty": 0}, {"frequency_penalty": 0.0}):
        assert _answer(live, path, temperature=1.0, seed=7, **neutral) == sampled, neutral


def _prompt_ids(tokenizer: Any, path: str) -> list[int]:
    if path == "/v1/chat/completions":
        return tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=True, return_dict=False)
    return tokenizer(PROMPT).input_ids


def _greedy_reference(reference: Any, prompt: list[int], tokens: int = TOKENS, **options: Any) -> str:
    """``model.generate``'s greedy text for ``prompt``, with ``options`` (a penalty, logits processors)."""
    model, tokenizer = reference
    out = model.generate(torch.tensor([prompt]), max_new_tokens=tokens, do_sample=False, **options,
                         attention_mask=torch.ones(1, len(prompt), dtype=torch.long), pad_token_id=tokenizer.eos_token_id)
    return tokenizer.decode(out[0, len(prompt):], skip_special_tokens=True)


def test_repetition_penalty_matches_transformers_generate(live: LiveServer, reference: Any) -> None:
    """Greedy decoding with a penalty against ``model.generate(repetition_penalty=...)``, prompt tokens included."""
    prompt = _prompt_ids(reference[1], "/v1/chat/completions")
    # Below 1 favours repeats: a random model's answer visibly loops.
    expected = _greedy_reference(reference, prompt, repetition_penalty=0.5)
    assert expected != _greedy_reference(reference, prompt), "the penalty must change this greedy answer"
    assert _answer(live, "/v1/chat/completions", temperature=0, repetition_penalty=0.5) == expected


class _OpenAIPenalties(LogitsProcessor):
    """OpenAI's formula written out plainly: logit -= frequency * count + presence * (count > 0), over the tokens
    generated after ``start`` (the prompt's length) only."""

    def __init__(self, start: int, presence: float, frequency: float) -> None:
        self.start, self.presence, self.frequency = start, presence, frequency

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        scores = scores.clone()
        for row, ids in enumerate(input_ids.tolist()):
            for token, count in Counter(ids[self.start:]).items():
                scores[row, token] -= self.frequency * count + self.presence
        return scores


@pytest.mark.parametrize(("path", "stream"), [("/v1/chat/completions", False), ("/v1/chat/completions", True),
                                              ("/v1/completions", False)])
def test_presence_and_frequency_penalties_follow_openai_formula(
    live: LiveServer, reference: Any, path: str, stream: bool
) -> None:
    """Both were ignored. A negative presence penalty makes a token repeat, a positive frequency penalty then
    stops it after a few times: this answer depends on counting the reply's tokens, and only those."""
    prompt = _prompt_ids(reference[1], path)
    penalties = {"presence_penalty": -1.0, "frequency_penalty": 0.3}
    expected = _greedy_reference(reference, prompt, 16, logits_processor=LogitsProcessorList(
        [_OpenAIPenalties(len(prompt), -1.0, 0.3)]))
    assert expected != _greedy_reference(reference, prompt, 16), "the penalties must change this greedy answer"
    fields = {"stream": True} if stream else {}
    assert _answer(live, path, temperature=0, max_tokens=16, **penalties, **fields) == expected


@pytest.mark.parametrize(("field", "value"), [
    ("top_k", -2), ("min_p", 1.5), ("min_p", -0.1), ("repetition_penalty", 0), ("repetition_penalty", -1.0),
    ("presence_penalty", 2.5), ("presence_penalty", -2.01), ("frequency_penalty", 3), ("frequency_penalty", -2.5),
])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/generate"])
def test_out_of_range_values_are_400_naming_the_field(live: LiveServer, path: str, field: str, value: Any) -> None:
    answer = _post(live, path, _body(path, **{field: value}))
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == field
    assert answer.json()["error"]["message"].startswith(f"{field}: ")


def test_shaping_agrees_with_transformers_processors() -> None:
    """Each transform against transformers' own: TopK, MinP (on temperature-scaled logits), RepetitionPenalty."""
    from transformers.generation.logits_process import (
        MinPLogitsWarper, RepetitionPenaltyLogitsProcessor, TopKLogitsWarper,
    )

    from dsft.serve.logits_processing import apply_repetition_penalty, keep_min_p, keep_top_k

    logits = torch.randn(1, 300, generator=torch.Generator().manual_seed(0)) * 3
    seen = torch.tensor([[5, 17, 17, 299, 0]])
    assert torch.equal(keep_top_k(logits[0], 7), TopKLogitsWarper(7)(seen, logits.clone())[0])
    assert torch.equal(keep_min_p(logits[0] / 0.7, 0.05), MinPLogitsWarper(0.05)(seen, logits / 0.7)[0])
    assert torch.equal(apply_repetition_penalty(logits[0], 1.3, seen[0].tolist()),
                       RepetitionPenaltyLogitsProcessor(1.3)(seen, logits.clone())[0])


def test_a_silent_request_takes_the_checkpoints_recommended_top_k_min_p_and_penalty(
    serve_model_dir: Path, tmp_path: Path
) -> None:
    """As vLLM reads generation_config.json (Qwen2.5 ships top_k 20 and repetition_penalty 1.05): only
    temperature and top_p were taken; a request's own value still wins, and top_k -1 turns the recommended one off."""
    import shutil

    from dsft.serve.serving_model import load_serving_model

    model_dir = tmp_path / "model"
    shutil.copytree(serve_model_dir, model_dir)
    config = json.loads((model_dir / "generation_config.json").read_text(encoding="utf-8"))
    config.update(do_sample=True, temperature=0.7, top_k=20, min_p=0.05, repetition_penalty=1.05)
    (model_dir / "generation_config.json").write_text(json.dumps(config), encoding="utf-8")
    serving = load_serving_model(str(model_dir), device="cpu")
    silent = serving.sampling(8)
    assert (silent.temperature, silent.top_k, silent.min_p, silent.repetition_penalty) == (0.7, 20, 0.05, 1.05)
    asked = serving.sampling(8, 1.0, top_k=0, min_p=0.2)
    assert (asked.temperature, asked.top_k, asked.min_p, asked.repetition_penalty) == (1.0, 0, 0.2, 1.05)


def test_each_row_of_a_batch_keeps_its_own_fields(live: LiveServer) -> None:
    """Rows that ask for top_k, penalties, logprobs or nothing share one batch and answer as they do alone."""
    import threading
    import time

    bodies = [_body("/v1/completions", temperature=1.0, seed=7, top_k=1, logprobs=1),
              _body("/v1/completions", temperature=1.0, seed=7),
              _body("/v1/completions", temperature=0, frequency_penalty=-2.0),
              _body("/v1/completions", temperature=1.0, seed=8, min_p=0.5, repetition_penalty=0.7)]
    alone = [_post(live, "/v1/completions", body).json()["choices"][0] for body in bodies]
    together: list[Any] = [None] * len(bodies)

    def post(index: int) -> None:
        together[index] = _post(live, "/v1/completions", bodies[index]).json()["choices"][0]

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(bodies))]
    with live.engine.paused():
        for thread in threads:
            thread.start()
        deadline = time.time() + 30
        while live.engine.queued < len(bodies) and time.time() < deadline:
            time.sleep(0.02)
    for thread in threads:
        thread.join(timeout=60)
    assert live.engine.batch_sizes[-1] == len(bodies), "the requests must have shared one batch"
    assert [c["text"] for c in together] == [c["text"] for c in alone]
    assert together[0]["logprobs"]["tokens"] == alone[0]["logprobs"]["tokens"]
    assert together[0]["logprobs"]["token_logprobs"] == pytest.approx(alone[0]["logprobs"]["token_logprobs"], abs=1e-4)
    assert [c["logprobs"] for c in together[1:]] == [None] * 3
