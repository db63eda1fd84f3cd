"""Back-pressure and readiness: a full queue answers 503, /health is 503 until the model is loaded."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from live_server import run_live
from scripted import scripted_serving


@pytest.fixture(scope="module")
def tokenizer(serve_model_dir: Path) -> Any:
    from dsft.models.loading import load_tokenizer

    return load_tokenizer(serve_model_dir)


def test_full_queue_answers_503_and_queued_requests_still_finish(tokenizer: Any) -> None:
    from dsft.serve.engine import TransformersEngine
    from dsft.serve.settings import ServeSettings

    serving = scripted_serving(tokenizer, "Fine, thanks.", "deepseek-r1")
    settings = ServeSettings(served_model_name="m", max_queue=2, max_batch=1)
    engine = TransformersEngine(lambda: serving, max_queue=2, max_batch=1)
    answers: list[Any] = []
    with run_live(engine, settings) as server:
        ask = dict(model="m", messages=[{"role": "user", "content": "How are you?"}], max_tokens=8)
        waiting = [threading.Thread(target=lambda: answers.append(server.client().chat.completions.create(**ask)))
                   for _ in range(2)]
        with engine.paused():
            for thread in waiting:
                thread.start()
            deadline = time.time() + 30
            while engine.queued < 2 and time.time() < deadline:
                time.sleep(0.02)
            with pytest.raises(openai.InternalServerError) as refused:
                server.client().chat.completions.create(**ask)
        for thread in waiting:
            thread.join(timeout=30)
    assert refused.value.status_code == 503
    assert refused.value.body["type"] == "service_unavailable_error"
    assert "busy" in refused.value.body["message"]
    assert [a.usage.completion_tokens for a in answers] == [len(tokenizer("Fine, thanks.", add_special_tokens=False).input_ids) + 1] * 2


def test_health_is_503_until_loaded_then_200(tokenizer: Any) -> None:
    from dsft.serve.engine import TransformersEngine
    from dsft.serve.settings import ServeSettings

    loaded = threading.Event()

    def slow_load() -> Any:
        loaded.wait(timeout=60)
        return scripted_serving(tokenizer, "ok", "deepseek-r1")

    with run_live(TransformersEngine(slow_load), ServeSettings(served_model_name="m"), wait_ready=False) as server:
        health = httpx.get(server.base_url + "/health")
        early = httpx.post(server.base_url + "/v1/chat/completions",
                           json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})
        loaded.set()
        deadline = time.time() + 30
        while httpx.get(server.base_url + "/health").status_code != 200 and time.time() < deadline:
            time.sleep(0.02)
        later = httpx.get(server.base_url + "/health")
    assert (health.status_code, health.json()) == (503, {"status": "loading"})
    assert early.status_code == 503 and early.json()["error"]["message"] == "the model is still loading"
    assert (later.status_code, later.json()) == (200, {"status": "ok"})


def test_failed_load_is_reported_by_health() -> None:
    from dsft.errors import DsftError
    from dsft.serve.engine import TransformersEngine
    from dsft.serve.settings import ServeSettings

    def broken_load() -> Any:
        raise DsftError("/models/x: could not load the model (no weights)")

    engine = TransformersEngine(broken_load)
    with run_live(engine, ServeSettings(), wait_ready=False) as server:
        deadline = time.time() + 30
        while engine.load_error is None and time.time() < deadline:
            time.sleep(0.02)
        health = httpx.get(server.base_url + "/health")
    assert health.status_code == 503
    assert health.json() == {"status": "error", "error": "/models/x: could not load the model (no weights)"}


def test_generation_failure_is_a_500_in_openai_shape(tokenizer: Any) -> None:
    import json

    from dsft.serve.engine import TransformersEngine
    from dsft.serve.settings import ServeSettings

    serving = scripted_serving(tokenizer, "never", "deepseek-r1")

    def broken_forward(*_: Any, **__: Any) -> Any:
        raise RuntimeError("CUDA out of memory (simulated)")

    serving.model.forward = broken_forward
    ask = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    with run_live(TransformersEngine(lambda: serving), ServeSettings(served_model_name="m")) as server:
        with pytest.raises(openai.InternalServerError) as failed:
            server.client().chat.completions.create(**ask)
        streamed = httpx.post(server.base_url + "/v1/chat/completions", json={**ask, "stream": True}).text
    assert failed.value.status_code == 500
    assert "simulated" in failed.value.body["message"] and failed.value.body["type"] == "server_error"
    events = [line.removeprefix("data: ") for line in streamed.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    assert "simulated" in json.loads(events[-2])["error"]["message"]
