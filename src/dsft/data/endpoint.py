"""A client for any OpenAI-compatible chat endpoint (DeepSeek API, vLLM, ``dsft serve``), for data generation.

What data generation needs and the official client does not give in one place: many requests in
parallel (``concurrency`` threads) under a shared rate limit (``requests_per_minute``), retries with
exponential backoff on 429, 5xx, timeouts and dropped connections (``Retry-After`` honoured), no retry on
other 4xx (a wrong key or model will not get better), and a :class:`ResponseCache` so an interrupted run
resumes without asking again. The key is read from the environment variable named by ``api_key_env``,
never from a config file.

A request either returns a :class:`Completion` or raises :class:`RequestFailed` naming the last error
after ``max_retries`` retries; the caller accounts for both.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dsft.errors import DataError, UnsupportedError

RETRY_STATUSES = {408, 409, 425, 429, 500, 502, 503, 504}
MAX_BACKOFF = 60.0  # seconds


@dataclass(frozen=True)
class EndpointSettings:
    """Where to send requests and how hard to push. ``params`` go into every request body (temperature...)."""

    base_url: str
    model: str
    api_key_env: str | None = "OPENAI_API_KEY"
    concurrency: int = 4
    requests_per_minute: float | None = None
    max_retries: int = 4
    timeout: float = 120.0  # seconds per request
    backoff: float = 1.0  # seconds before the first retry; doubled each retry
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Completion:
    """An answer: ``content`` and the separate ``reasoning`` (``reasoning_content``) when the server gives one."""

    content: str
    reasoning: str | None
    finish_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"content": self.content, "reasoning": self.reasoning, "finish_reason": self.finish_reason}


class RequestFailed(Exception):
    """A request that still failed after every retry; the message names the last error."""


class ResponseCache:
    """Completions keyed by request (messages + model + params + sample index), appended to a JSONL file.

    Each answer is written and flushed as it arrives, so an interrupted run loses at most the requests
    in flight. Failures are not cached: a resumed run asks again. A torn last line is ignored.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._entries: dict[str, Completion] = {}
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                    self._entries[row["key"]] = Completion(**row["completion"])
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a line cut by an interruption
        self.path.parent.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def key(messages: Sequence[dict[str, Any]], model: str, params: dict[str, Any], sample: int = 0) -> str:
        body = json.dumps({"messages": list(messages), "model": model, "params": params, "sample": sample},
                          sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(body.encode("utf-8")).hexdigest()

    def get(self, key: str) -> Completion | None:
        return self._entries.get(key)

    def put(self, key: str, completion: Completion) -> None:
        with self._lock:
            self._entries[key] = completion
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps({"key": key, "completion": completion.to_dict()}, ensure_ascii=False) + "\n")

    def __len__(self) -> int:
        return len(self._entries)


class _RateLimit:
    """Request starts spaced at least ``60 / per_minute`` seconds apart, across all threads."""

    def __init__(self, per_minute: float | None) -> None:
        self.interval = 60.0 / per_minute if per_minute else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        time.sleep(max(0.0, start - now))


class ChatClient:
    """Chat completions with concurrency, rate limit, retries and a cache (see the module docstring)."""

    def __init__(self, settings: EndpointSettings, cache: ResponseCache | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        try:
            import httpx  # optional dependency (the datagen extra): only data generation talks HTTP
        except ImportError:
            raise UnsupportedError("talking to an endpoint needs httpx: pip install 'dsft[datagen]'") from None
        headers = {}
        key = os.environ.get(settings.api_key_env) if settings.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self.settings = settings
        self.cache = cache
        self._sleep = sleep
        self._httpx = httpx
        self._http = httpx.Client(base_url=settings.base_url.rstrip("/"), headers=headers,
                                  timeout=settings.timeout, limits=httpx.Limits(max_connections=settings.concurrency))
        self._limit = _RateLimit(settings.requests_per_minute)
        self.stats = {"requests": 0, "retries": 0, "cached": 0}
        self._stats_lock = threading.Lock()

    def close(self) -> None:
        self._http.close()

    def check_reachable(self) -> None:
        """Fail at once (one error naming the URL) when nothing answers at ``base_url``.

        Any HTTP answer counts as reachable (not every server implements ``/models``); only a refused
        connection, an unknown host or a timeout stops the run before hundreds of requests retry.
        """
        url = f"{self.settings.base_url.rstrip('/')}/models"
        try:
            self._http.get("/models", timeout=min(self.settings.timeout, 10.0))
        except self._httpx.TransportError as exc:
            raise DataError(f"{url}: the endpoint does not answer ({type(exc).__name__}: {exc}); check the "
                            "base_url (it usually ends in /v1) and that the server is running") from None

    def _count(self, name: str) -> None:
        with self._stats_lock:
            self.stats[name] += 1

    def complete(self, messages: Sequence[dict[str, Any]], sample: int = 0, **params: Any) -> Completion:
        """One chat completion (from the cache when this exact request was answered before)."""
        merged = {**self.settings.params, **params}
        key = ResponseCache.key(messages, self.settings.model, merged, sample)
        if self.cache is not None and (cached := self.cache.get(key)) is not None:
            self._count("cached")
            return cached
        completion = self._request({"model": self.settings.model, "messages": list(messages), **merged})
        if self.cache is not None:
            self.cache.put(key, completion)
        return completion

    def complete_many(self, jobs: Sequence[Callable[[], Any]]) -> list[Any]:
        """Run callables (each making its own requests) on ``concurrency`` threads; results in job order.

        A job's :class:`RequestFailed` is returned in its place, not raised.
        """
        def run(job: Callable[[], Any]) -> Any:
            try:
                return job()
            except RequestFailed as failure:
                return failure

        with ThreadPoolExecutor(max_workers=self.settings.concurrency) as pool:
            return list(pool.map(run, jobs))

    def _request(self, body: dict[str, Any]) -> Completion:
        error = "no attempt"
        for attempt in range(self.settings.max_retries + 1):
            if attempt:
                self._count("retries")
            self._limit.wait()
            self._count("requests")
            delay = None
            try:
                response = self._http.post("/chat/completions", json=body)
            except self._httpx.TimeoutException:
                error = f"timed out after {self.settings.timeout:g} s"
            except self._httpx.TransportError as exc:
                error = f"connection error ({type(exc).__name__}: {exc})"
            else:
                if response.status_code == 200:
                    return _parse(response)
                error = f"HTTP {response.status_code}: {response.text[:200]}"
                if response.status_code not in RETRY_STATUSES:
                    raise RequestFailed(error)
                delay = _retry_after(response.headers.get("retry-after"))
            if attempt < self.settings.max_retries:
                backoff = min(MAX_BACKOFF, self.settings.backoff * 2 ** attempt) * (0.5 + random.random() / 2)
                self._sleep(max(delay or 0.0, backoff))
        raise RequestFailed(f"{error} (after {self.settings.max_retries} retries)")


def _retry_after(value: str | None) -> float | None:
    try:
        return min(MAX_BACKOFF, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def _parse(response: Any) -> Completion:
    try:
        choice = response.json()["choices"][0]
        message = choice["message"]
        content = message.get("content") or ""
        reasoning = message.get("reasoning_content", message.get("reasoning"))
        return Completion(content, reasoning, choice.get("finish_reason"))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        raise RequestFailed(f"malformed response: {response.text[:200]}") from None
