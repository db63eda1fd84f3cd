"""What the dashboard answers a query parameter it cannot use: one line naming the parameter and what it takes.

FastAPI checks a route's query parameters with pydantic and answered in its wording: ``GET /api/run`` was
``query.run: Field required``, ``GET /login?wrong=x`` ``query.wrong: Input should be a valid integer, unable to
parse string as an integer``, naming neither what to give nor, for the second, what was given. :data:`TAKES` says
for each route's parameters what they take (the routes are in :mod:`dsft.ui.app` and :mod:`dsft.ui.job_routes`);
a parameter missing from it is named with no example, so a new route is never answered in pydantic's words.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError

RUN = "a run directory under the runs root, e.g. ?run=my-run"
JOB = "a job id, as GET /api/jobs lists them, e.g. ?id=ID"

# (route path, parameter) -> what the parameter takes.
TAKES = {
    ("/api/run", "run"): RUN,
    ("/api/run/events", "run"): RUN,
    ("/api/run/stop", "run"): RUN,
    ("/file", "path"): "a report, log or record file under the runs root, e.g. ?path=my-run/compare/report.md",
    ("/api/prepared", "name"): "a prepared data directory under the runs root, e.g. ?name=prepared/my-data",
    ("/api/data/upload", "name"): "the data file's plain name, e.g. ?name=train.jsonl",
    ("/api/job", "id"): JOB,
    ("/api/job/stop", "id"): JOB,
    ("/login", "wrong"): "0 or 1 (1: the key given was wrong)",
}


def query_refusal(request: Request, exc: RequestValidationError) -> str | None:
    """One line for the first query parameter ``exc`` names: missing, or not what it takes (quoting what came);
    None when the problem is not in the query string (a body's, worded elsewhere).

    >>> from starlette.requests import Request
    >>> request = Request({"type": "http", "method": "GET", "path": "/login", "query_string": b"wrong=x",
    ...                    "headers": []})
    >>> query_refusal(request, RequestValidationError([{"type": "int_parsing", "loc": ("query", "wrong"),
    ...                                                 "msg": "Input should be a valid integer", "input": "x"}]))
    "query parameter wrong: expected 0 or 1 (1: the key given was wrong), got 'x'"
    """
    for err in exc.errors():
        loc: Any = err.get("loc", ())
        if len(loc) < 2 or loc[0] != "query":
            continue
        name = str(loc[1])
        takes = TAKES.get((request.url.path, name), "a value")
        if err.get("type") == "missing":
            return f"query parameter {name}: missing; give {takes}"
        return f"query parameter {name}: expected {takes}, got {err.get('input')!r}"
    return None
