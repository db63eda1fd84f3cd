"""What the dashboard answers a POST body it cannot read: empty, not sent as JSON, JSON that is not an object, not
UTF-8, or larger than a form ever is. Worded as ``dsft serve`` words them (:mod:`dsft.serve.openai_errors`), in the
dashboard's own shape, ``{"error": MESSAGE}``.

FastAPI hands a route declared ``body: dict`` a body whose Content-Type is not JSON (``curl -d`` sends a form) as
bytes, and JSON that is an array, a string or null as itself; either way pydantic's answer was
``body: Input should be a valid dictionary``, which names neither the header nor what the body was.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from dsft.serve.body_limit import BodySizeLimit
from dsft.serve.openai_errors import (body_missing, body_not_an_object, body_not_an_object_message,
                                      undecodable_body_message, validation_message)

# A form's fields or a chat's turns as JSON are kilobytes; data files come through UPLOAD_ROUTE, streamed to disk
# under their own cap (dsft.ui.prepare), never as a JSON body. Bytes.
MAX_BODY_BYTES = 4 * 1024 * 1024
UPLOAD_ROUTE = "/api/data/upload"

# What each JSON route's body looks like, for the refusals.
_EXAMPLES = {
    "/api/runs": '{"name": "...", "model": "...", "data": "..."}',
    "/api/chat": '{"run": "...", "messages": [...]}',
    "/api/chat/stream": '{"run": "...", "messages": [...]}',
    "/api/mask": '{"source": "..."}',
    "/api/prepare": '{"name": "...", "files": "..."}',
    "/api/compare": '{"run": "..."}',
    "/api/export": '{"run": "...", "format": "..."}',
}


def body_refusal(request: Request, exc: RequestValidationError) -> str:
    """Why a route refused its body, in one line: empty, not JSON, not an object, or which field is wrong."""
    example = _EXAMPLES.get(request.url.path, "{...}")
    if body_missing(exc):
        return f"the request body is empty; send the fields as a JSON object, e.g. {example}"
    not_an_object, body = body_not_an_object(exc)
    if not_an_object:
        return body_not_an_object_message(body, request.headers.get("content-type"), example)
    return validation_message(exc)[0]


def undecodable_refusal(exc: Exception) -> str | None:
    """A body that is not UTF-8 (FastAPI says only 'There was an error parsing the body'): where and what it reads
    as; None for any other error."""
    cause = exc.__cause__
    return undecodable_body_message(cause) if isinstance(cause, UnicodeDecodeError) else None


def _too_large(message: str) -> JSONResponse:
    return JSONResponse({"error": f"{message}; data files go through {UPLOAD_ROUTE}"}, status_code=413)


class JsonBodyLimit:
    """``dsft serve``'s body cap (413 before anything parses the body) on every route but the upload."""

    def __init__(self, app: Any, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.capped = BodySizeLimit(app, max_bytes, refusal=_too_large)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await (self.app if scope.get("path") == UPLOAD_ROUTE else self.capped)(scope, receive, send)
