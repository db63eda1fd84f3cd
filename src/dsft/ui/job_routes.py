"""The dashboard's routes for jobs: upload and prepare data, a prepared directory, compare and export a run,
the jobs' status and their stop. Errors are :class:`dsft.errors.DsftError` (400, or 404 for a path outside the root),
turned into responses by the app's handlers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse

from dsft.templates import TEMPLATE_CHOICES
from dsft.ui import job_pages, jobs, launch, mask, prepare, run_jobs


def add_job_routes(app: FastAPI, root: Path) -> None:
    @app.get("/prepare", response_class=HTMLResponse)
    def prepare_page() -> str:
        files = mask.data_files(root)
        return job_pages.prepare_page(files, launch.model_options(root), list(TEMPLATE_CHOICES),
                                      list(prepare.FORMATS))

    @app.post("/api/data/upload")
    async def upload(request: Request, name: str) -> dict[str, Any]:
        prepare.upload_target(root, name)  # refuse a bad name before reading the body
        return await prepare.save_upload(root, name, request.stream())

    @app.post("/api/prepare")
    def start_prepare(body: dict[str, Any]) -> dict[str, str]:
        return prepare.start_prepare(root, body)

    @app.get("/api/prepared")
    def prepared_json(name: str) -> dict[str, Any]:
        return prepare.prepared_view(root, name)

    @app.get("/prepared/{name:path}", response_class=HTMLResponse)
    def prepared_page(name: str) -> str:
        return job_pages.prepared_page(prepare.prepared_view(root, name))

    @app.post("/api/compare")
    def start_compare(body: dict[str, Any]) -> dict[str, str]:
        return run_jobs.start_compare(root, body)

    @app.post("/api/export")
    def start_export(body: dict[str, Any]) -> dict[str, str]:
        return run_jobs.start_export(root, body)

    @app.get("/api/jobs")
    def jobs_json(target: str | None = None) -> list[dict[str, Any]]:
        return [job.as_dict() for job in jobs.list_jobs(root, target)]

    @app.get("/api/job", response_model=None)
    def job_json(id: str) -> dict[str, Any] | JSONResponse:  # noqa: A002 - the query name
        job = jobs.read_job(root, id)
        if job is None:
            return JSONResponse({"error": f"job {id}: no such job"}, status_code=404)
        return job.as_dict()

    @app.post("/api/job/stop", response_model=None)
    def stop_job(id: str) -> dict[str, Any] | JSONResponse:
        job = jobs.stop_job(root, id)  # one that has already ended: CannotStop, answered 409
        if job is None:
            return JSONResponse({"error": f"job {id}: no such job"}, status_code=404)
        return job.as_dict()
