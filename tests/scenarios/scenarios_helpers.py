"""The guides' scenarios: helpers to run `dsft` commands from the repository root and to serve one request.

The example configs name their data relative to the repository root (as the READMEs' commands are typed
there), so every scenario runs from it. Models are the tiny presets, written once per session into the
test cache (``tiny_model_dir``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
GUIDES = REPO / "examples" / "guides"

# Small enough for a CPU test: a few optimizer steps on short packed rows.
FEW_STEPS = ["--set", "train.max_steps=3", "--set", "train.logging_steps=1", "--set", "train.max_seq_len=256",
             "--set", "train.warmup_ratio=0", "--set", "train.num_workers=0"]


@pytest.fixture
def at_repo_root(monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Callable[[str], Path]) -> Path:
    """Run from the repository root with the session's tiny-preset cache."""
    monkeypatch.chdir(REPO)
    return REPO


@pytest.fixture
def dsft(run_cli: Callable[[list[str]], tuple[int, str, str]]) -> Callable[..., str]:
    """``dsft(*args)``: run a command in-process, assert it succeeded, return its stdout."""

    def run(*args: Any) -> str:
        code, out, err = run_cli([str(a) for a in args])
        assert code == 0, f"dsft {' '.join(map(str, args))} exited {code}:\n{err[-3000:]}"
        return out

    return run


def guide(name: str) -> Path:
    """The directory of one guide (``000`` .. ``004``)."""
    (found,) = GUIDES.glob(f"{name}-*")
    return found


def assert_every_record_accounted(report: dict[str, Any]) -> None:
    """``read + added == kept + rejected + sum(removed)``, and the splits hold exactly what was kept."""
    added = sum(report["added"].values())
    assert report["read"] + added == report["kept"] + report["rejected"] + sum(report["removed"].values()), report
    assert sum(report["splits"].values()) == report["kept"]


def supervised_text(rendered: Any, tokenizer: Any) -> str:
    """The decoded supervised tokens of a render (in order, gaps dropped)."""
    ids = [i for i, keep in zip(rendered.input_ids, rendered.supervised) if keep]
    return tokenizer.decode(ids, skip_special_tokens=False)


def serve_once(model_or_run: str | Path, path: str, body: dict[str, Any], quantize: str | None = None,
               served_name: str = "guide") -> dict[str, Any]:
    """Start dsft's app on ``model_or_run`` (in-process), wait for /health, answer one request."""
    from fastapi.testclient import TestClient

    from dsft.serve.app import create_app
    from dsft.serve.server import build_engine
    from dsft.serve.settings import ServeSettings

    settings = ServeSettings(served_model_name=served_name, max_tokens=64)
    engine = build_engine(str(model_or_run), [], settings, quantize=quantize)
    with TestClient(create_app(engine, settings)) as client:
        deadline = time.time() + 120
        while client.get("/health").status_code != 200:
            assert engine.load_error is None, engine.load_error
            assert time.time() < deadline, "the model did not load in 120 s"
            time.sleep(0.05)
        reply = client.post(path, json=body)
    assert reply.status_code == 200, reply.text
    return reply.json()
