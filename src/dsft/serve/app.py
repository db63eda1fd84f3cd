"""The OpenAI-compatible FastAPI app: routes, auth, request checks and answers.

``create_app(engine, settings)`` is all a caller needs; ``dsft serve`` runs it under uvicorn and the
tests run it on a free loopback port. Every endpoint but ``/health`` requires the API key when one is
set (the API schema and its ``/docs`` and ``/redoc`` pages included). Requests are checked here (body
size, model name, role order, ``max_tokens``, context length) before they reach the engine, so the
engine only ever sees work it can do. Rendering and tokenizing a prompt run in a worker thread: a long
prompt never stalls the event loop (``/health`` and streams keep answering).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse

from dsft.errors import DsftError
from dsft.serve import responses
from dsft.serve.engine import EngineBusy, RequestStream, TransformersEngine
from dsft.serve.generation import GenerationRequest
from dsft.serve.body_limit import BodySizeLimit
from dsft.serve.openai_errors import ApiError, error_body, install_error_handlers
from dsft.serve.prompts import (
    conversation_from_messages, generation_starts_in_reasoning, render_chat_prompt, tokenize_prompt,
    tool_call_reader,
)
from dsft.serve.protocol import (
    ChatCompletionRequest, ChatMessageIn, CompletionRequest, GenerateRequest, SamplingFields,
)
from dsft.serve.serving_model import ServingModel
from dsft.serve.settings import ServeSettings

log = logging.getLogger(__name__)


def create_app(engine: TransformersEngine, settings: ServeSettings) -> FastAPI:
    """Build the app; the engine starts (model loading in the background) when the app starts."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await engine.start()
        yield
        await engine.stop()

    # The schema and docs pages are routes of their own below, so that they sit behind the key too.
    app = FastAPI(title="dsft", lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.state.engine = engine
    app.state.settings = settings
    guarded = [Depends(_require_api_key(settings))]

    @app.get("/openapi.json", dependencies=guarded, include_in_schema=False)
    async def openapi_schema() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", dependencies=guarded, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="dsft API")

    @app.get("/redoc", dependencies=guarded, include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title="dsft API")

    @app.get("/health")
    async def health() -> JSONResponse:
        if engine.ready:
            return JSONResponse({"status": "ok"})
        if engine.load_error is not None:
            return JSONResponse({"status": "error", "error": str(engine.load_error)}, status_code=503)
        return JSONResponse({"status": "loading"}, status_code=503)

    @app.get("/v1/models", dependencies=guarded)
    async def models() -> dict[str, Any]:
        serving = _serving(engine)
        return responses.model_list(settings.served_model_name, _adapter_names(serving))

    @app.post("/v1/chat/completions", dependencies=guarded)
    async def chat_completions(body: ChatCompletionRequest) -> Any:
        serving = _serving(engine)
        prompt_ids, split = await asyncio.to_thread(_chat_prompt, serving, body.messages, body.thinking(),
                                                    body.tool_definitions())
        max_tokens = body.max_completion_tokens or body.max_tokens
        stream = _submit(engine, _generation_request(serving, settings, body, prompt_ids, max_tokens))
        model_name = body.model or settings.served_model_name
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        reply = responses.ReplyFormat(split, tool_call_reader(serving.template_name) if body.parses_tool_calls() else None)
        if body.stream:
            events = responses.chat_stream(stream, model_name, len(prompt_ids), reply, include_usage)
            return _GenerationStream(events, stream)
        result = await stream.collect()
        return responses.chat_completion(result, model_name, len(prompt_ids), reply)

    @app.post("/v1/completions", dependencies=guarded)
    async def completions(body: CompletionRequest) -> Any:
        serving = _serving(engine)
        # Raw text, as vLLM treats it: the tokenizer adds its BOS when it is configured to.
        prompt_ids = await asyncio.to_thread(tokenize_prompt, serving.tokenizer, body.prompt_text(), True)
        request = _generation_request(serving, settings, body, prompt_ids, body.max_tokens)
        stream = _submit(engine, request)
        model_name = body.model or settings.served_model_name
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            events = responses.completion_stream(stream, model_name, len(prompt_ids), include_usage)
            return _GenerationStream(events, stream)
        result = await stream.collect()
        return responses.completion(result, model_name, len(prompt_ids))

    @app.post("/generate", dependencies=guarded)
    async def generate(body: GenerateRequest) -> dict[str, Any]:
        serving = _serving(engine)
        prompt_ids, split = await asyncio.to_thread(
            _chat_prompt, serving, [ChatMessageIn(role="user", content=body.prompt)], None)
        request = _generation_request(serving, settings, body, prompt_ids, body.max_tokens)
        result = await _submit(engine, request).collect()
        return responses.generate_answer(result, len(prompt_ids), split)

    return app


def _require_api_key(settings: ServeSettings) -> Any:
    """A dependency that checks ``Authorization: Bearer KEY`` (constant-time) when a key is set."""

    async def check(request: Request) -> None:
        if settings.api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip(), settings.api_key):
            raise ApiError(401, "missing or wrong API key; send `Authorization: Bearer KEY`", code="invalid_api_key")

    return check


def _serving(engine: TransformersEngine) -> ServingModel:
    if engine.serving is None:
        reason = f"loading failed: {engine.load_error}" if engine.load_error else "the model is still loading"
        raise ApiError(503, reason)
    return engine.serving


def _chat_prompt(serving: ServingModel, messages: list[ChatMessageIn], thinking: bool | None,
                 tools: list[dict[str, Any]] | None = None) -> tuple[list[int], bool]:
    """Prompt token ids rendered with the training template, and whether the output holds reasoning."""
    conversation = conversation_from_messages(messages, tools)
    try:
        prompt = render_chat_prompt(serving.template_name, serving.tokenizer, conversation, thinking)
    except DsftError as exc:  # e.g. a role this family has no place for: the client's to fix
        raise ApiError(400, f"messages: {exc}", "messages") from exc
    prompt_ids = tokenize_prompt(serving.tokenizer, prompt, add_special_tokens=False)
    return prompt_ids, generation_starts_in_reasoning(serving.template_name, prompt)


def _adapter_names(serving: ServingModel) -> list[str]:
    """Adapters clients may name (the run's own adapter is what the served name already means)."""
    return [name for name in serving.adapters if name != serving.default_adapter]


def _generation_request(
    serving: ServingModel, settings: ServeSettings, body: SamplingFields, prompt_ids: list[int],
    max_tokens: int | None,
) -> GenerationRequest:
    """Check the request against the server's limits and build what the engine runs."""
    adapter = serving.default_adapter
    if body.model not in (None, settings.served_model_name):
        if body.model not in _adapter_names(serving):
            raise ApiError(404, f"The model `{body.model}` does not exist; see GET /v1/models", "model",
                           "model_not_found")
        adapter = body.model
    room = serving.max_model_len - len(prompt_ids)
    if room <= 0:
        raise ApiError(400, f"the prompt has {len(prompt_ids)} tokens; this model's context length is "
                            f"{serving.max_model_len} tokens", "messages", "context_length_exceeded")
    if max_tokens is not None and max_tokens > settings.max_tokens:
        raise ApiError(400, f"max_tokens is {max_tokens}; this server allows at most {settings.max_tokens}",
                       "max_tokens")
    if max_tokens is not None and max_tokens > room:
        raise ApiError(400, f"max_tokens ({max_tokens}) + prompt ({len(prompt_ids)} tokens) exceeds the context "
                            f"length of {serving.max_model_len} tokens", "max_tokens", "context_length_exceeded")
    chosen = max_tokens if max_tokens is not None else min(settings.max_tokens, room)
    params = serving.sampling(chosen, body.temperature, body.top_p, body.stop, body.seed, **body.shaping())
    return GenerationRequest(prompt_ids=prompt_ids, params=params, adapter=adapter)


def _submit(engine: TransformersEngine, request: GenerationRequest) -> RequestStream:
    try:
        return engine.submit(request)
    except EngineBusy as exc:
        raise ApiError(503, str(exc), code="server_busy") from exc


class _GenerationStream(StreamingResponse):
    """Server-sent events that stop their request's generation however the response ends.

    Cancelling here, around the whole response, also covers a client that leaves before the first
    chunk (a body generator that never started would never run its ``finally``).
    """

    def __init__(self, events: AsyncIterator[dict[str, Any]], stream: RequestStream) -> None:
        super().__init__(_sse_lines(events), media_type="text/event-stream")
        self._stream = stream

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._stream.cancel()


async def _sse_lines(events: AsyncIterator[dict[str, Any]]) -> AsyncIterator[str]:
    """One ``data: JSON`` line per chunk, then ``data: [DONE]``; a failure mid-stream becomes an error event."""
    try:
        async for chunk in events:
            yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
    except Exception as exc:  # noqa: BLE001 - the status line is gone; tell the client in the stream
        log.error("streamed generation failed: %s", exc, exc_info=exc)
        yield f"data: {json.dumps(error_body(500, f'internal error: {type(exc).__name__}: {exc}'))}\n\n"
    yield "data: [DONE]\n\n"
