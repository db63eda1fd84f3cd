"""Chat with a run's final model or a checkpoint through ``dsft serve``'s own app and engine, in process.

Each chosen weights (a run's ``final/`` or one checkpoint) gets a :class:`TransformersEngine` and the
OpenAI-compatible app of :mod:`dsft.serve.app`; a chat turn is one ``POST /v1/chat/completions`` to that
app, called directly through ASGI, so prompts, limits, sampling and the reasoning split are exactly
``dsft serve``'s. A LoRA run serves the base weights under the name ``base`` and the adapter as ``tuned``
in one engine, which is how base and tuned answer side by side; a full run gets a second engine for its
base when asked.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from dsft.errors import DsftError
from dsft.export.source import ExportSource, resolve_source
from dsft.serve.app import create_app
from dsft.serve.engine import TransformersEngine
from dsft.serve.serving_model import load_serving_model
from dsft.serve.settings import ServeSettings, serve_defaults
from dsft.training.base_model import BaseModelNotFound
from dsft.training.rundir import RunDir
from dsft.ui import runs

BASE, TUNED = "base", "tuned"
MAX_ENGINES = 2  # loaded models kept at once; the least recently used one is stopped
LOAD_TIMEOUT_S = 600


def weights_dir(run_dir: Path, checkpoint: str | None) -> Path:
    """``final/`` or ``checkpoints/NAME``; a missing one is a user error naming what exists, as is a run that has not
    started (:func:`dsft.ui.runs.check_usable`)."""
    runs.check_usable(run_dir)
    if checkpoint:
        if checkpoint not in runs.checkpoints(run_dir):
            raise DsftError(f"checkpoint {checkpoint}: not in {run_dir.name}/checkpoints "
                            f"(have: {', '.join(runs.checkpoints(run_dir)) or 'none'})")
        return RunDir(run_dir).checkpoint_root / checkpoint
    final = RunDir(run_dir).final_path
    if not final.is_dir():
        if not runs.checkpoints(run_dir):  # nothing else to offer: it said "chat with a checkpoint" of none
            raise DsftError(f"{run_dir.name}: no final/ and no checkpoint yet; nothing to chat with until the run "
                            "has saved one")
        raise DsftError(f"{run_dir.name}: no final/ yet (the run has not finished); chat with a checkpoint")
    return final


def serve_settings(run_dir: Path) -> ServeSettings:
    """The limits ``dsft serve RUN`` applies to this run (:func:`dsft.serve.settings.serve_defaults`, the one owner of
    a run's ``serve:`` defaults), served as ``base``, without a key (in process). The one owner of the chat's bounds:
    the page's ``max`` and the request check read ``max_tokens`` here, the serve app enforces it. A directory that
    holds only config.yaml is refused, saying why (:func:`dsft.ui.runs.check_usable`)."""
    runs.check_usable(run_dir)
    serve = serve_defaults(run_dir)
    return ServeSettings(served_model_name=BASE, max_tokens=serve.max_tokens, max_queue=serve.max_queue,
                         max_batch=serve.max_batch)


def sources(run_dir: Path, checkpoint: str | None, with_base: bool) -> list[tuple[str, ExportSource, dict[str, Path]]]:
    """(engine key, source, extra adapters) for the chosen weights (and the base for a full run).

    What those weights load as (base model, tokenizer, template, adapter) is asked of :func:`resolve_source`, as
    ``dsft chat`` and ``dsft serve`` ask it given the same ``final/`` or checkpoint: the dashboard chooses only which
    weights. A LoRA run's adapter is served by name (``tuned``) in the base's engine, so base answers beside it."""
    weights = weights_dir(run_dir, checkpoint)
    try:
        source = resolve_source(weights)
    except BaseModelNotFound as exc:  # the CLI's hint names --base-model, a flag the dashboard has no field for
        raise exc.with_hint("put the base model back where the first path tried says, or chat from a terminal: "
                            f"dsft chat {weights} --base-model PATH_OR_ID") from None
    key = f"{run_dir}|{weights}"
    if source.adapter_dir is not None:
        return [(key, replace(source, adapter_dir=None), {TUNED: source.adapter_dir})]
    found = [(key, source, {})]
    if with_base:  # a full run's base is looked for only when asked: a run moved without it still chats
        try:  # the base as it loads alone (its own tokenizer), prompted in the run's template, as dsft compare does
            base = RunDir(run_dir, weights=weights).base_to_load()
        except BaseModelNotFound as exc:
            raise exc.with_hint("put the base model back where the first path tried says, or untick base side by "
                                "side to chat with the tuned model alone") from None
        found.append((f"base|{base.model_dir}|{base.tokenizer_dir}|{source.template}",
                      replace(source, model_dir=base.model_dir, tokenizer_dir=base.tokenizer_dir), {}))
    return found


class ChatEngines:
    """Loaded engines and their serve apps, at most :data:`MAX_ENGINES` at a time."""

    def __init__(self) -> None:
        self.apps: OrderedDict[str, tuple[TransformersEngine, Any]] = OrderedDict()
        self.lock = asyncio.Lock()

    async def app_for(self, key: str, source: ExportSource, adapters: dict[str, Path]) -> Any:
        async with self.lock:
            if key in self.apps:
                self.apps.move_to_end(key)
            else:
                while len(self.apps) >= MAX_ENGINES:
                    _, (old, _) = self.apps.popitem(last=False)
                    await old.stop()
                load = functools.partial(load_serving_model, source, adapters)
                assert source.run_dir is not None  # sources() names the run of every source it gives
                settings = serve_settings(source.run_dir)
                engine = TransformersEngine(load, max_queue=settings.max_queue, max_batch=settings.max_batch)
                self.apps[key] = (engine, create_app(engine, settings))
                await engine.start()
            engine, app = self.apps[key]
        waited = 0.0
        while not engine.ready:
            if engine.load_error is not None:
                self.apps.pop(key, None)
                raise DsftError(f"loading {source.adapter_dir or source.model_dir} failed: {engine.load_error}")
            if waited > LOAD_TIMEOUT_S:
                raise DsftError("the model is still loading; try again shortly")
            await asyncio.sleep(0.1)
            waited += 0.1
        return app

    async def close(self) -> None:
        for engine, _ in self.apps.values():
            await engine.stop()
        self.apps.clear()

    async def reply(self, run_dir: Path, checkpoint: str | None, messages: list[dict[str, Any]], max_tokens: int,
                    temperature: float, thinking: bool | None, side_by_side: bool) -> dict[str, Any]:
        """``{"tuned": answer, "base": answer?}``; each answer ``{content, reasoning, usage}`` or ``{error}``."""
        found = sources(run_dir, checkpoint, side_by_side)
        body: dict[str, Any] = {"messages": messages, "max_tokens": max_tokens, "temperature": temperature}
        if thinking is not None:
            body["chat_template_kwargs"] = {"thinking": thinking}
        out: dict[str, Any] = {}
        key, source, adapters = found[0]
        app = await self.app_for(key, source, adapters)
        out[TUNED] = await _complete(app, {**body, "model": TUNED if adapters else BASE})
        if side_by_side:
            if len(found) > 1:
                app = await self.app_for(*found[1])
            out[BASE] = await _complete(app, {**body, "model": BASE})
        return out


    async def stream(self, run_dir: Path, checkpoint: str | None, messages: list[dict[str, Any]], max_tokens: int,
                     temperature: float, thinking: bool | None, side_by_side: bool) -> AsyncIterator[dict[str, Any]]:
        """The answers as they are generated: ``{side, reasoning?, content?}`` deltas, then ``{side, done,
        finish_reason, usage}`` (or ``{side, error}``) per side; base and tuned stream at the same time."""
        found = sources(run_dir, checkpoint, side_by_side)
        body: dict[str, Any] = {"messages": messages, "max_tokens": max_tokens, "temperature": temperature,
                                "stream": True, "stream_options": {"include_usage": True}}
        if thinking is not None:
            body["chat_template_kwargs"] = {"thinking": thinking}
        key, source, adapters = found[0]
        tuned_app = await self.app_for(key, source, adapters)
        sides = [(TUNED, tuned_app, TUNED if adapters else BASE)]
        if side_by_side:
            base_app = await self.app_for(*found[1]) if len(found) > 1 else tuned_app
            sides.append((BASE, base_app, BASE))
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

        async def pump(side: str, app: Any, model: str) -> None:
            try:
                async for event in _stream_chat(app, {**body, "model": model}):
                    await queue.put({"side": side, **event})
            finally:
                await queue.put(None)

        tasks = [asyncio.create_task(pump(*side)) for side in sides]
        try:
            ended = 0
            while ended < len(tasks):
                event = await queue.get()
                if event is None:
                    ended += 1
                else:
                    yield event
        finally:
            for task in tasks:
                task.cancel()


async def _stream_chat(app: Any, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """``dsft serve``'s streamed chat completion as deltas, then the end (or the error)."""
    finish, usage, buffer, status = None, None, b"", 200
    async for status, chunk in stream_asgi(app, "/v1/chat/completions", body):
        buffer += chunk
        if status != 200:
            continue  # an error body (JSON), read whole below
        while b"\n\n" in buffer:
            block, buffer = buffer.split(b"\n\n", 1)
            data = block.decode("utf-8", errors="replace").removeprefix("data: ").strip()
            if not data or data == "[DONE]":
                continue
            event = json.loads(data)
            if "error" in event:
                yield {"error": _message(event)}
                return
            usage = event.get("usage") or usage
            for choice in event.get("choices") or []:
                delta = choice.get("delta") or {}
                out = {key: delta[field] for key, field in (("reasoning", "reasoning_content"), ("content", "content"))
                       if delta.get(field)}
                if out:
                    yield out
                finish = choice.get("finish_reason") or finish
    if status != 200:
        try:
            yield {"error": _message(json.loads(buffer or b"{}"))}
        except json.JSONDecodeError:
            yield {"error": buffer.decode(errors="replace")}
        return
    yield {"done": True, "finish_reason": finish, "usage": usage}


def _message(answer: dict[str, Any]) -> str:
    error = answer.get("error")
    return str(error.get("message", error)) if isinstance(error, dict) else str(answer)


async def _complete(app: Any, body: dict[str, Any]) -> dict[str, Any]:
    status, answer = await call_asgi(app, "/v1/chat/completions", body)
    if status != 200:
        return {"error": _message(answer)}
    message = answer["choices"][0]["message"]
    return {"content": message.get("content") or "", "reasoning": message.get("reasoning_content"),
            "finish_reason": answer["choices"][0].get("finish_reason"), "usage": answer.get("usage")}


async def stream_asgi(app: Any, path: str, payload: dict[str, Any]) -> AsyncIterator[tuple[int, bytes]]:
    """POST ``payload`` as JSON to ``app`` in process; (status, body chunk) as the app sends each chunk."""
    body = json.dumps(payload).encode()
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()
    delivered, done = asyncio.Event(), asyncio.Event()
    status = 500

    async def receive() -> dict[str, Any]:
        if not delivered.is_set():
            delivered.set()
            return {"type": "http.request", "body": body, "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body" and message.get("body"):
            await queue.put(message["body"])

    async def run() -> None:
        try:
            await app(_scope(path, body), receive, send)
        finally:
            await queue.put(None)

    task = asyncio.create_task(run())
    try:
        while (chunk := await queue.get()) is not None:
            yield status, chunk
        await task  # an exception inside the app surfaces here
    finally:
        done.set()  # the app sees the client leave: a stream stops generating
        if not task.done():
            task.cancel()


def _scope(path: str, body: bytes) -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                        (b"host", b"dsft-ui")], "client": ("127.0.0.1", 0), "server": ("dsft-ui", 80)}


async def call_asgi(app: Any, path: str, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """POST ``payload`` as JSON to ``app`` in process (no socket, no HTTP client): (status, JSON body)."""
    status, chunks = 500, []
    async for status, chunk in stream_asgi(app, path, payload):
        chunks.append(chunk)
    try:
        return status, json.loads(b"".join(chunks) or b"{}")
    except json.JSONDecodeError:
        return status, {"error": {"message": b"".join(chunks).decode(errors="replace")}}
