"""Schemathesis over the server's own /openapi.json: 50 generated requests per operation, never a 5xx.

The model is scripted (it always answers a fixed text), so what is exercised is everything around it:
validation, auth, rendering, tokenization, batching, answers. A 503 is a server that says "busy" and is
allowed by the API; a 500 is a bug.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from live_server import API_KEY, run_live
from scripted import scripted_serving

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is in the test extra")

AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture(scope="module")
def live_schema(serve_model_dir: Path) -> Iterator[Any]:
    from dsft.models.loading import load_tokenizer
    from dsft.serve.engine import TransformersEngine
    from dsft.serve.settings import ServeSettings

    tokenizer = load_tokenizer(serve_model_dir)
    serving = scripted_serving(tokenizer, "Fine, thanks.", "deepseek-r1")
    settings_ = ServeSettings(served_model_name="m", api_key=API_KEY, max_tokens=64)
    with run_live(TransformersEngine(lambda: serving), settings_) as server:
        yield schemathesis.openapi.from_url(server.base_url + "/openapi.json", headers=AUTH)


@pytest.mark.slow
def test_no_generated_request_gets_a_5xx(live_schema: Any) -> None:
    operations = [result.ok() for result in live_schema.get_all_operations()]
    assert {op.label for op in operations} >= {"POST /v1/chat/completions", "POST /v1/completions", "POST /generate"}
    statuses: dict[str, set[int]] = {}
    for operation in operations:

        @given(case=st.one_of(operation.as_strategy(), *operation.get_strategies_from_examples()))
        @settings(max_examples=50, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def no_5xx(case: Any) -> None:
            response = case.call(headers=AUTH, timeout=60)
            # Run at once below, within this iteration: the loop's operation is the one meant.
            statuses.setdefault(operation.label, set()).add(response.status_code)  # noqa: B023
            assert response.status_code < 500 or response.status_code == 503, (
                f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}\n"
                f"body: {case.body!r}")

        no_5xx()
    assert all(200 in codes for codes in statuses.values()), statuses  # generation itself was exercised
