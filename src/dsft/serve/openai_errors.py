"""Errors in OpenAI's JSON shape: ``{"error": {"message", "type", "param", "code"}}``.

The official clients read this shape to build their exception (``openai.BadRequestError`` and
friends), so every non-2xx answer of the server uses it, including FastAPI's own validation errors.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from dsft.text_encoding import encoding_hint

log = logging.getLogger(__name__)

# HTTP status -> OpenAI error type (the names OpenAI's API itself uses).
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    503: "service_unavailable_error",
}


# The pydantic error type of a misspelt request field (dsft.serve.protocol); its ctx names the field, which
# the model holding it cannot put in loc.
UNKNOWN_FIELD = "unknown_field"


class ApiError(Exception):
    """An error answered to the client with ``status`` and OpenAI's error body."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """The JSON body for an error answer."""
    error_type = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def error_response(status: int, message: str, param: str | None = None, code: str | None = None) -> JSONResponse:
    """A JSON response carrying :func:`error_body`; 503 answers also suggest when to retry."""
    headers = {"Retry-After": "1"} if status == 503 else None
    return JSONResponse(error_body(status, message, param, code), status_code=status, headers=headers)


def validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    """One readable line per pydantic problem, and the first offending field as ``param``."""
    problems = []
    first_param: str | None = None
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            # loc is ("body", character offset): a position, not a field.
            offset = err.get("loc", ("body", None))[-1]
            reason = (err.get("ctx") or {}).get("error", "JSON decode error")
            problems.append(f"the request body is not valid JSON ({reason} at character {offset})")
            continue
        # loc starts with "body"; the rest names the field, e.g. ("body", "messages", 0, "role").
        loc = [str(part) for part in err.get("loc", ()) if part != "body"]
        if err.get("type") == UNKNOWN_FIELD:  # raised by the model holding the field: name the field itself
            loc.append(str((err.get("ctx") or {}).get("field")))
        where = ".".join(loc) or "body"
        first_param = first_param or (where if loc else None)
        problems.append(f"{where}: {str(err.get('msg', 'invalid')).removeprefix('Value error, ')}")
    return "; ".join(problems) or "invalid request", first_param


def body_missing(exc: RequestValidationError) -> bool:
    """Whether the request came with no body at all (FastAPI's 'body: Field required')."""
    return any(err.get("type") == "missing" and tuple(err.get("loc", ())) == ("body",) for err in exc.errors())


def _body_example(request: Request) -> str:
    return '{"messages": [...]}' if request.url.path.endswith("/chat/completions") else '{"prompt": "..."}'


def _missing_body_message(request: Request) -> str:
    """No body at all: say the fields go in a JSON body, and that query parameters sent instead are not read
    (a FastAPI handler such as ``def generate(prompt: str)`` takes them from the query string)."""
    message = (f"body: missing; send the fields as a JSON body (content-type: application/json), "
               f"e.g. {_body_example(request)}")
    if request.query_params:
        message += f"; query parameters ({', '.join(dict.fromkeys(request.query_params.keys()))}) are not read"
    return message


# JSON's names for what a body parsed to, when it is not the object a request must be.
_JSON_KINDS = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean",
               type(None): "null"}


def body_not_an_object(exc: RequestValidationError) -> tuple[bool, Any]:
    """Whether the body as a whole is not a JSON object, and what it was (bytes: FastAPI did not parse it)."""
    for err in exc.errors():
        if tuple(err.get("loc", ())) == ("body",) and err.get("type") in ("model_attributes_type", "dict_type"):
            return True, err.get("input")
    return False, None


def body_not_an_object_message(body: Any, content_type: str | None, example: str) -> str:
    """Why a body that is not a JSON object was refused, and what to send instead.

    FastAPI parses a body as JSON only when its Content-Type says JSON; any other body reaches
    validation as bytes, and pydantic's "Input should be a valid dictionary" says nothing of the header.
    curl's ``-d`` sends ``application/x-www-form-urlencoded`` unless told otherwise.

    >>> message = body_not_an_object_message(b"a=b", "application/x-www-form-urlencoded", "{...}")
    >>> for part in message.split("; "): print(part)
    the request body must be JSON sent with Content-Type: application/json
    this one came as application/x-www-form-urlencoded
    with curl, add -H 'Content-Type: application/json' (-d alone sends a form)
    >>> print(body_not_an_object_message([1, 2], "application/json", '{"prompt": "..."}'))
    the request body must be a JSON object, e.g. {"prompt": "..."}; this one is an array
    """
    if isinstance(body, (bytes, bytearray)):
        came_as = f"came as {content_type}" if content_type else "came with no Content-Type header"
        return (f"the request body must be JSON sent with Content-Type: application/json; this one {came_as}; "
                "with curl, add -H 'Content-Type: application/json' (-d alone sends a form)")
    kind = _JSON_KINDS.get(type(body), f"a {type(body).__name__}")
    return f"the request body must be a JSON object, e.g. {example}; this one is {kind}"


def undecodable_body_message(error: UnicodeDecodeError) -> str:
    """A JSON body that is not UTF-8 (a Chinese-locale Windows client sends GBK): where, and what it reads as.

    >>> undecodable_body_message(UnicodeDecodeError("utf-8", "发".encode("gbk"), 0, 1, "invalid start byte"))[:63]
    'the request body is not valid UTF-8 (byte 0xB7 at byte 0); it r'
    """
    raw = bytes(error.object)
    hint = encoding_hint(raw) or "; send the JSON encoded as UTF-8"
    return f"the request body is not valid UTF-8 (byte 0x{raw[error.start]:02X} at byte {error.start}){hint}"


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error (ours, FastAPI's validation, HTTP errors) in OpenAI's shape."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.param, exc.code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # OpenAI and vLLM answer malformed bodies with 400, not FastAPI's default 422.
        if body_missing(exc):
            return error_response(400, _missing_body_message(request), None, "invalid_request")
        not_an_object, body = body_not_an_object(exc)
        if not_an_object:
            message = body_not_an_object_message(body, request.headers.get("content-type"), _body_example(request))
            return error_response(400, message, None, "invalid_request")
        message, param = validation_message(exc)
        return error_response(400, message, param, "invalid_request")

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        # A bug or a failed generation: say so in the clients' shape; the traceback goes to the log.
        log.error("request failed: %s", exc, exc_info=exc)
        return error_response(500, f"internal error: {type(exc).__name__}: {exc}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc.__cause__, UnicodeDecodeError):  # FastAPI says only 'There was an error parsing the body'
            return error_response(exc.status_code, undecodable_body_message(exc.__cause__), None, "invalid_request")
        return error_response(exc.status_code, str(exc.detail))
