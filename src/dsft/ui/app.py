"""The dashboard's FastAPI app: pages, the live metrics stream, auth and the runs-root fence.

``create_app(root, api_key)`` is all a caller needs. With a key, every route but ``/login`` and the static
files needs it, as ``Authorization: Bearer KEY`` or the cookie ``/login`` sets. Requests that change
something (start, stop, chat, mask, upload, prepare, compare, export) are ``POST``s carrying the header
``X-Dsft-Ui: 1``, which a page on another site cannot send without a CORS preflight this app never grants.
The job routes live in :mod:`dsft.ui.job_routes`.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware

from dsft.errors import DsftError
from dsft.serve.openai_errors import validation_message
from dsft.serve.protocol import ChatCompletionRequest
from dsft.templates import TEMPLATE_CHOICES
from dsft.ui import job_pages, jobs, launch, mask, pages, run_jobs, runs
from dsft.ui.chat import ChatEngines, serve_settings, sources
from dsft.ui.job_routes import add_job_routes
from dsft.ui.paths import OutsideRoot, inside_root, shown
from dsft.ui.processes import CannotStop
from dsft.ui.query_params import query_refusal
from dsft.ui.request_bodies import JsonBodyLimit, body_refusal, undecodable_refusal
from dsft.whole_numbers import whole_number

STATIC = Path(__file__).parent / "static"
COOKIE = "dsft_ui_key"
LIVE = ("running", "starting")


class UiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def create_app(root: Path, api_key: str | None = None, allowed_hosts: list[str] | None = None,
               poll_s: float = 0.5) -> FastAPI:
    """The dashboard over the runs under ``root``; ``allowed_hosts`` guards a loopback bind against DNS
    rebinding (None = any Host header)."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise DsftError(f"--runs {root}: not a directory")
    engines = ChatEngines()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await engines.close()

    app = FastAPI(title="dsft ui", openapi_url=None, docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.root = root
    app.state.chat = engines
    app.state.poll_s = poll_s
    app.add_middleware(JsonBodyLimit)  # inside _Auth: a request without the key is refused before its size matters
    app.add_middleware(_Auth, api_key=api_key)
    if allowed_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)

    @app.exception_handler(UiError)
    async def ui_error(request: Request, exc: UiError) -> Response:
        return _error(request, exc.status, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def no_route(request: Request, exc: StarletteHTTPException) -> Response:
        # An address no route serves: the dashboard's error page (or its {"error"}), not the bare {"detail"}.
        message = (f"{request.url.path}: no such page" if exc.status_code == 404 else
                   undecodable_refusal(exc) or f"{request.method} {request.url.path}: {exc.detail}")
        return _error(request, exc.status_code, message)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> Response:
        # A query parameter named with what it takes; a body as dsft serve says it (invalid JSON named).
        return _error(request, 400, query_refusal(request, exc) or body_refusal(request, exc))

    @app.exception_handler(DsftError)
    async def dsft_error(request: Request, exc: DsftError) -> Response:
        status = 404 if isinstance(exc, OutsideRoot) else 409 if isinstance(exc, CannotStop) else 400
        # Paths relative to the runs root, as the dashboard names them everywhere (the readers say absolute ones).
        return _error(request, status, shown(root, str(exc)))

    @app.get("/", response_class=HTMLResponse)
    async def runs_page() -> str:
        return pages.runs_page(runs.list_runs(root), str(root))

    @app.get("/api/runs")
    async def runs_json() -> list[dict[str, Any]]:
        return [r.as_dict() for r in runs.list_runs(root)]

    @app.get("/run/{name:path}", response_class=HTMLResponse)
    def run_page(name: str) -> str:  # reads files: in the thread pool, not the event loop
        run_dir = _run_dir(root, name)
        summary = runs.summarize(root, run_dir)
        started = runs.read_launch(root, summary.name)
        finished = summary.has_final and summary.status not in LIVE
        sections = job_pages.run_sections(
            summary.name, finished, run_jobs.comparisons(root, run_dir), run_jobs.export_formats(summary.method),
            run_jobs.shown_path(root, run_jobs.default_eval_data(root, run_dir)), mask.data_files(root),
            jobs.list_jobs(root, summary.name),
            ended="" if summary.has_final or summary.status in LIVE else summary.status)
        return pages.run_page(
            summary, runs.config_text(run_dir), runs.data_report(run_dir), runs.run_records(root, run_dir),
            runs.checkpoints(run_dir), runs.reports(root, run_dir), runs.export_records(run_dir),
            can_stop=bool(started) and summary.status in LIVE, log=launch.log_tail(root, summary.name),
            sections=sections, ollama_installed=shutil.which("ollama") is not None,
            stop_requested=(started or {}).get("stop_requested", ""))

    @app.get("/api/run")
    async def run_json(run: str) -> dict[str, Any]:
        run_dir = _run_dir(root, run)
        rows, _ = runs.read_metrics_from(run_dir)
        return {**runs.summarize(root, run_dir).as_dict(), "checkpoints": runs.checkpoints(run_dir),
                "metrics": rows, "data_report": runs.data_report(run_dir)}

    @app.get("/api/run/events")
    async def run_events(request: Request, run: str) -> StreamingResponse:
        run_dir = _run_dir(root, run)
        last = request.headers.get("last-event-id", "")
        offset = max(whole_number(last) or 0, 0)
        return StreamingResponse(_metric_events(request, root, run_dir, offset, app.state.poll_s),
                                 media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    @app.get("/file")
    async def run_file(path: str) -> Response:
        target = inside_root(root, path)
        if not target.is_file() or target.suffix not in (*runs.REPORT_SUFFIXES, ".json", ".jsonl", ".yaml", ".txt",
                                                           ".log", ".png"):
            raise UiError(404, f"{path}: not a report file")
        if target.suffix == ".html":
            # A report may quote model output: sandboxed, it cannot run script against this origin.
            return HTMLResponse(target.read_text(encoding="utf-8", errors="replace"),
                                headers={"Content-Security-Policy": "sandbox"})
        if target.suffix == ".png":
            return FileResponse(target, media_type="image/png")
        return PlainTextResponse(target.read_text(encoding="utf-8", errors="replace"))

    @app.get("/data", response_class=HTMLResponse)
    def data_page(source: str = "") -> str:
        return pages.data_page(mask.mask_sources(root), list(TEMPLATE_CHOICES), source)

    @app.post("/api/mask")
    def mask_json(body: dict[str, Any]) -> dict[str, Any]:
        thinking = body.get("thinking")
        return mask.mask_view(
            root, str(body.get("source") or ""), index=_int(body.get("index", 0), "record"),
            template=body.get("template") or None, tokenizer=body.get("tokenizer") or None,
            masking=body.get("masking") or None, thinking=None if thinking in (None, "") else bool(thinking))

    @app.get("/new", response_class=HTMLResponse)
    def new_page(data: str = "") -> str:
        return pages.new_page(launch.model_options(root), mask.mask_sources(root), list(TEMPLATE_CHOICES), data)

    @app.post("/api/runs")
    def start(body: dict[str, Any]) -> dict[str, Any]:
        name = launch.start_run(root, body)
        return {"run": name, "url": pages.run_link(name)}

    @app.post("/api/run/stop")
    def stop(run: str) -> dict[str, Any]:
        run_dir = _run_dir(root, run)
        return launch.stop_run(root, runs.summarize(root, run_dir).name)

    @app.get("/chat/{name:path}", response_class=HTMLResponse)
    async def chat_page(name: str, checkpoint: str = "") -> str:
        run_dir = _run_dir(root, name)
        summary = runs.summarize(root, run_dir)
        return pages.chat_page(summary, runs.checkpoints(run_dir), checkpoint, serve_settings(run_dir).max_tokens)

    @app.post("/api/chat")
    async def chat(body: dict[str, Any]) -> dict[str, Any]:
        return await engines.reply(*_chat_request(root, body))

    @app.post("/api/chat/stream")
    async def chat_stream(body: dict[str, Any]) -> StreamingResponse:
        request = _chat_request(root, body)
        sources(request[0], request[1], request[-1])  # a wrong run or checkpoint: 400 before the stream starts

        async def events() -> AsyncIterator[str]:
            try:
                async for event in engines.stream(*request):
                    yield f"data: {json.dumps(event, ensure_ascii=False)}\n\n"
            except DsftError as exc:  # the model failed to load: said in the stream (the status line is sent)
                yield f"data: {json.dumps({'side': 'tuned', 'error': shown(root, str(exc))})}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    add_job_routes(app, root)

    @app.get("/static/{name}")
    async def static(name: str) -> Response:
        target = inside_root(STATIC, name)
        media = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}.get(target.suffix)
        if media is None or not target.is_file():
            raise UiError(404, f"{name}: no such file")
        return FileResponse(target, media_type=media)

    @app.get("/login", response_class=HTMLResponse)
    async def login_form(next: str = "/", wrong: Literal["0", "1"] = "0") -> str:  # noqa: A002 - the query name
        # The text "0" or "1", not an int: an int took any whole number (?wrong=2 read as wrong).
        return pages.login_page(_local(next), wrong == "1")

    @app.post("/login")
    async def login(request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", errors="replace"))
        key, target = form.get("key", [""])[0], _local(form.get("next", ["/"])[0])
        if api_key is None or not secrets.compare_digest(key.encode(), api_key.encode()):
            return RedirectResponse(f"/login?wrong=1&next={quote(target)}", status_code=303)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(COOKIE, api_key, httponly=True, samesite="strict")
        return response

    return app


def _chat_request(root: Path, body: dict[str, Any]) -> tuple[Any, ...]:
    """(run dir, checkpoint, messages, max tokens, temperature, thinking, side by side) of a chat request."""
    run_dir = _run_dir(root, str(body.get("run") or ""))
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise UiError(400, "messages: a non-empty list of {role, content}")
    try:  # as dsft serve's app checks them, but before any model loads (it answered 200 with the error after)
        ChatCompletionRequest.model_validate({"messages": messages})
    except ValidationError as exc:
        raise UiError(400, validation_message(RequestValidationError(exc.errors()))[0]) from None
    temperature = body.get("temperature", 0.0)
    if not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2:
        raise UiError(400, f"temperature: a number in 0..2, got {temperature!r}")
    # Bounded as `dsft serve RUN` bounds it (the run's serve.max_tokens), before any model loads.
    limit, max_tokens = serve_settings(run_dir).max_tokens, body.get("max_tokens", 128)
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 1 <= max_tokens <= limit:
        raise UiError(400, f"max tokens: a whole number in 1..{limit} (this run's serve.max_tokens), "
                           f"got {max_tokens!r}")
    thinking = body.get("thinking")
    return (run_dir, body.get("checkpoint") or None, messages, max_tokens, float(temperature),
            None if thinking in (None, "") else bool(thinking), bool(body.get("side_by_side")))


def _run_dir(root: Path, name: str) -> Path:
    run_dir = inside_root(root, name, field="run")
    if not (run_dir.is_dir() and runs.is_run(run_dir)):
        raise UiError(404, f"{name}: not a run directory (no run.json or config.yaml)")
    return run_dir


def _int(value: Any, name: str) -> int:
    """A whole number (JSON integer or its text, read as the CLI reads ``--index``: :func:`whole_number`), never a
    float cut down (2.5 is not record 2), a boolean or full-width digits."""
    number = whole_number(value)
    if number is None:
        raise UiError(400, f"{name}: expected a whole number, got {value!r}")
    if number < 0:
        raise UiError(400, f"{name}: must be >= 0, got {number}")
    return number


def _local(target: str) -> str:
    """A redirect target on this site only (no scheme, no ``//host``)."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"


def _wants_html(request: Request) -> bool:
    return request.method == "GET" and not request.url.path.startswith("/api/") and \
        "text/html" in request.headers.get("accept", "")


def _error(request: Request, status: int, message: str) -> Response:
    # A refusal may quote a request's lone UTF-16 surrogate ("\ud800" in JSON), which UTF-8 cannot encode: escaped.
    message = message.encode("utf-8", "backslashreplace").decode("utf-8")
    if _wants_html(request):
        return HTMLResponse(pages.error_page(status, message), status_code=status)
    return JSONResponse({"error": message}, status_code=status)


async def _metric_events(request: Request, root: Path, run_dir: Path, offset: int,
                         poll_s: float) -> AsyncIterator[str]:
    """Server-sent events: ``rows`` (new metrics lines, id = byte offset), ``status`` when it changes, ``best``
    (the run's best metric, as the runs table has it) when an evaluation or the status may have changed it,
    ``done`` once the run is no longer live and every row has been sent."""
    status, best = None, None
    while not await request.is_disconnected():
        rows, offset_after = runs.read_metrics_from(run_dir, offset)
        if rows:
            yield f"id: {offset_after}\nevent: rows\ndata: {json.dumps(rows)}\n\n"
        offset = offset_after
        now, was = runs.live_status(root, run_dir), status
        if now != status:
            status = now
            yield f"event: status\ndata: {json.dumps(status)}\n\n"
        if now != was or any(key.startswith("eval_") for row in rows for key in row):  # else it cannot have moved
            found = runs.summarize(root, run_dir).best_metric
            if found != best:
                best = found
                yield f"event: best\ndata: {json.dumps(best)}\n\n"
        if status not in LIVE and not rows:
            yield "event: done\ndata: {}\n\n"
            return
        await asyncio.sleep(poll_s)


class _Auth(BaseHTTPMiddleware):
    """The API key (Bearer header or login cookie) on every route but ``/login`` and ``/static``; the
    ``X-Dsft-Ui`` header on every POST but the login form."""

    def __init__(self, app: Any, api_key: str | None) -> None:
        super().__init__(app)
        self.api_key = api_key

    async def dispatch(self, request: Request, call_next: Any) -> Response:
        path = request.url.path
        if request.method == "POST" and path != "/login" and request.headers.get("x-dsft-ui") != "1":
            return JSONResponse({"error": "POST requests need the header X-Dsft-Ui: 1"}, status_code=403)
        if self.api_key is None or path == "/login" or path.startswith("/static/"):
            return await call_next(request)
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        given = token.strip() if scheme.lower() == "bearer" else request.cookies.get(COOKIE, "")
        if secrets.compare_digest(given.encode(), self.api_key.encode()):
            return await call_next(request)
        if _wants_html(request):
            return RedirectResponse(f"/login?next={quote(path)}", status_code=303)
        return JSONResponse({"error": "missing or wrong API key; send `Authorization: Bearer KEY` or sign in "
                                      "at /login"}, status_code=401)
