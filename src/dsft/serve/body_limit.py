"""A cap on request body size: a larger body is answered 413 before anything parses it.

Pure ASGI middleware (no buffering of bodies under the cap beyond what the route reads anyway): a
``Content-Length`` above the cap is refused at once; a chunked body is counted as it arrives and
refused as soon as it passes the cap, before the route has seen any of it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.responses import Response

from dsft.serve.openai_errors import error_response

Scope = dict[str, Any]
Message = dict[str, Any]


def _openai_refusal(message: str) -> Response:
    return error_response(413, message, code="request_too_large")


class BodySizeLimit:
    """Refuse HTTP request bodies larger than ``max_bytes`` with status 413, in OpenAI's error shape unless
    ``refusal`` (message -> response) gives the app's own (the dashboard's ``{"error": MESSAGE}``)."""

    def __init__(self, app: Any, max_bytes: int, refusal: Callable[[str], Response] = _openai_refusal) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.refusal = refusal

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, receive, send, declared)
            return
        if declared is not None:
            await self.app(scope, receive, send)
            return
        # No length given (chunked): read the whole body now, counting, and replay it to the route.
        chunks: list[Message] = []
        size = 0
        while True:
            message = await receive()
            chunks.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._refuse(scope, receive, send, size)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return chunks.pop(0) if chunks else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Any, send: Any, size: int) -> None:
        message = (f"the request body has {'at least ' if _content_length(scope) is None else ''}{size} bytes; "
                   f"this server accepts at most {self.max_bytes}")
        await self.refusal(message)(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
