"""The in-process transformers engine: a bounded request queue served by one batching worker.

Requests wait in a bounded queue (full -> :class:`EngineBusy`, answered 503). One asyncio worker takes
the oldest request plus up to ``max_batch - 1`` more that use the same adapter, and runs them as one
batch in a dedicated thread (torch work must not block the event loop). Tokens flow back to each
request's own event queue as they are generated, so streaming and non-streaming share one path.
The model loads in that same thread after start; until then :attr:`TransformersEngine.ready` is False.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

from dsft.serve.generation import GenerationRequest, RowResult, generate_batch
from dsft.serve.logprobs import TokenLogprob
from dsft.serve.serving_model import ServingModel

log = logging.getLogger(__name__)


# What a request's stream yields per generated token: (text piece, the final result or None, its logprob or None).
Event = tuple[str, RowResult | None, TokenLogprob | None]


class EngineBusy(Exception):
    """The queue is full (or the model is not loaded yet); the client should retry later."""


class RequestStream:
    """One submitted request: iterate to receive ``(text_piece, final_result_or_None, logprob_or_None)``, one per
    generated token (the logprob entry of that token when the request asked for logprobs)."""

    def __init__(self, request: GenerationRequest) -> None:
        self.request = request
        self._events: asyncio.Queue[Event | BaseException] = asyncio.Queue()

    def cancel(self) -> None:
        """Stop generating for this request (the client went away)."""
        self.request.cancelled = True

    async def __aiter__(self) -> AsyncIterator[Event]:
        while True:
            event = await self._events.get()
            if isinstance(event, BaseException):
                raise event
            yield event
            if event[1] is not None:
                return

    async def collect(self) -> RowResult:
        """Wait for the end and return the whole result (non-streaming answers)."""
        async for _, result, _ in self:
            if result is not None:
                return result
        raise AssertionError("stream ended without a result")


class TransformersEngine:
    """Serve a :class:`ServingModel` loaded by ``load`` (called once, off the event loop, at start)."""

    def __init__(self, load: Callable[[], ServingModel], max_queue: int = 64, max_batch: int = 8) -> None:
        self._load = load
        self.max_queue = max_queue
        self.max_batch = max_batch
        self.serving: ServingModel | None = None
        self.load_error: Exception | None = None
        self.on_load_error: Callable[[Exception], None] | None = None  # e.g. stop the server
        self._pending: collections.deque[RequestStream] = collections.deque()
        self._wakeup: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        # One thread: loading and every batch run there, in order (torch is not re-entrant per model).
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dsft-engine")
        self.batch_sizes: list[int] = []  # size of every batch run, for tests and logs
        self._resumed: asyncio.Event | None = None

    @property
    def ready(self) -> bool:
        return self.serving is not None

    async def start(self) -> None:
        """Begin loading the model and serving the queue (returns at once)."""
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._tasks = [asyncio.create_task(self._load_then_serve())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def queued(self) -> int:
        """Requests waiting for the worker (not counting a batch being generated)."""
        return len(self._pending)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Start no new batch while the block runs (a running one finishes); requests queue meanwhile.

        Callable from any thread: maintenance, and tests that fill the queue deterministically.
        """
        assert self._resumed is not None, "start() the engine first"
        self._loop.call_soon_threadsafe(self._resumed.clear)
        try:
            yield
        finally:
            self._loop.call_soon_threadsafe(self._resumed.set)

    def submit(self, request: GenerationRequest) -> RequestStream:
        """Queue ``request``; raises :class:`EngineBusy` when the queue already holds ``max_queue``."""
        if not self.ready:
            raise EngineBusy("the model is still loading")
        if len(self._pending) >= self.max_queue:
            raise EngineBusy(f"the server is busy ({len(self._pending)} requests queued); retry shortly")
        stream = RequestStream(request)
        self._pending.append(stream)
        assert self._wakeup is not None
        self._wakeup.set()
        return stream

    async def _load_then_serve(self) -> None:
        try:
            self.serving = await self._loop.run_in_executor(self._executor, self._load)
        except Exception as exc:  # noqa: BLE001 - reported by /health; the server stays up to say why
            self.load_error = exc
            log.error("loading the model failed: %s", exc)
            if self.on_load_error is not None:
                self.on_load_error(exc)
            return
        await self._serve_forever()

    def _next_batch(self) -> list[RequestStream]:
        """The oldest live request plus later ones with the same adapter, up to ``max_batch``."""
        while self._pending and self._pending[0].request.cancelled:
            self._pending.popleft()
        if not self._pending:
            return []
        first = self._pending.popleft()
        batch = [first]
        for stream in list(self._pending):
            if len(batch) >= self.max_batch:
                break
            if stream.request.adapter == first.request.adapter and not stream.request.cancelled:
                self._pending.remove(stream)
                batch.append(stream)
        return batch

    async def _serve_forever(self) -> None:
        assert self._wakeup is not None and self._resumed is not None
        while True:
            await self._resumed.wait()
            batch = self._next_batch()
            if not batch:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            self.batch_sizes.append(len(batch))
            try:
                await self._loop.run_in_executor(self._executor, self._run_batch, batch)
            except Exception as exc:  # noqa: BLE001 - every waiting client must hear about it
                log.exception("generation failed")
                for stream in batch:
                    stream._events.put_nowait(exc)

    def _run_batch(self, batch: list[RequestStream]) -> None:
        """Worker thread: generate for ``batch``, handing events back to the event loop."""
        serving = self.serving
        assert serving is not None

        def emit(row: int, piece: str, result: RowResult | None, logprob: TokenLogprob | None = None) -> None:
            if result is not None and result.error is not None:  # this request alone failed
                self._loop.call_soon_threadsafe(batch[row]._events.put_nowait, result.error)
                return
            final = dataclasses.replace(result) if result is not None else None
            self._loop.call_soon_threadsafe(batch[row]._events.put_nowait, (piece, final, logprob))

        with serving.adapter_active(batch[0].request.adapter):
            generate_batch(serving.model, serving.tokenizer, [s.request for s in batch], serving.eos_ids, emit)
