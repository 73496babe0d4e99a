"""Routes for jobs: submit, list, follow (SSE), cancel, delete, their images, the gallery and zips.

The read-only routes are ``async``: they only copy in-memory snapshots, and running them on
the event loop keeps them fast while the thread pool is busy (uploads, paintings).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import tempfile
import threading
import zipfile
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Query, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, StreamingResponse
from starlette.background import BackgroundTask

from canstyle.errors import CanstyleError
from canstyle.seeds import draw_seed
from canstyle.web.jobs import TERMINAL, Job, JobManager, QueueFull
from canstyle.web.routes_sources import ERR, not_found
from canstyle.web.schemas import JobRequest
from canstyle.web.studio import Studio

RESULT_FILE = re.compile(r"result_\d+\.png")
POLL = 0.2  # seconds between snapshot checks of an event stream
KEEPALIVE = 15.0  # an SSE comment this often keeps proxies and browsers from timing out
SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


def job_out(d: dict[str, Any]) -> dict[str, Any]:
    """A job's public state plus the URLs the page needs."""
    base = f"/api/jobs/{d['id']}"
    d["links"] = {"self": base, "events": f"{base}/events", "cancel": f"{base}/cancel",
                  "preview": f"{base}/preview", "style": f"{base}/style", "zip": f"{base}/zip"}
    d["results"] = [{**r, "url": f"{base}/results/{r['index']}", "thumb_url": f"{base}/results/{r['index']}/thumb",
                     "download_url": f"{base}/results/{r['index']}?download=1"} for r in d["results"]]
    return d


def _job_or_404(manager: JobManager, job_id: str) -> Job:
    try:
        return manager.get(job_id)
    except KeyError:
        raise not_found("job", job_id) from None


def job_routes(app: FastAPI, studio: Studio, manager: JobManager) -> None:
    """Submit, list, inspect, follow, cancel and delete jobs."""

    @app.post("/api/jobs", status_code=202, summary="Queue a job", responses={**ERR, 503: {"description": "queue full"}})
    def submit(body: JobRequest) -> dict[str, Any]:
        req = body.model_dump()
        try:
            studio.check_request(req)  # unknown ids and unusable sizes fail now, not in the queue
        except KeyError as e:
            raise HTTPException(400, str(e.args[0])) from None
        except CanstyleError as e:
            raise HTTPException(400, studio.scrub(str(e))) from None
        if req["seed"] is None:
            req["seed"] = draw_seed()  # recorded, so the result can be reproduced
        try:
            job = manager.submit(req)
        except QueueFull as e:
            raise HTTPException(503, str(e)) from None
        return job_out(manager.snapshot(job.id)[1])

    @app.get("/api/jobs", summary="Jobs, newest first (X-Total-Count: how many match)")
    async def jobs(response: Response, status: Literal["queued", "running", "done", "failed", "cancelled"] | None = None,
                   offset: int = Query(0, ge=0), limit: int | None = Query(None, ge=1)) -> list[dict]:
        found, total = manager.page(status, offset, limit)
        response.headers["X-Total-Count"] = str(total)
        return [job_out(j) for j in found]

    @app.get("/api/queue", summary="How many jobs there are of each status")
    async def queue() -> dict[str, int]:
        return manager.counts()

    @app.get("/api/jobs/{job_id}", summary="One job's state and progress", responses=ERR)
    async def job(job_id: str) -> dict[str, Any]:
        _job_or_404(manager, job_id)
        return job_out(manager.snapshot(job_id)[1])

    @app.post("/api/jobs/{job_id}/cancel", status_code=202, summary="Cancel a queued or running job",
              responses={**ERR, 409: {"description": "the job has already finished"}})
    def cancel(job_id: str) -> dict[str, Any]:
        _job_or_404(manager, job_id)
        try:
            return job_out(manager.cancel(job_id))
        except CanstyleError as e:
            raise HTTPException(409, str(e)) from None

    @app.delete("/api/jobs/{job_id}", status_code=204, summary="Delete a finished job with all its files",
                responses={**ERR, 409: {"description": "the job is queued or running"}})
    def delete(job_id: str) -> Response:
        _job_or_404(manager, job_id)
        try:
            manager.delete(job_id)
        except CanstyleError as e:
            raise HTTPException(409, str(e)) from None
        shutil.rmtree(manager.job_dir(job_id), ignore_errors=True)
        return Response(status_code=204)


def job_event_routes(app: FastAPI, manager: JobManager) -> None:
    """Server-sent events: one job's, or every job's (they end when ``app.state.closing`` is set)."""

    @app.get("/api/jobs/{job_id}/events", summary="Server-sent events: the job's state on every change",
             response_class=StreamingResponse, responses=ERR)
    async def events(job_id: str) -> StreamingResponse:
        _job_or_404(manager, job_id)
        stream = _job_stream(manager, job_id, app.state.closing)
        return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)

    @app.get("/api/events", summary="Server-sent events for every job: one stream serves a whole browser",
             response_class=StreamingResponse)
    async def all_events() -> StreamingResponse:
        stream = _all_stream(manager, app.state.closing)
        return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)


def job_file_routes(app: FastAPI, manager: JobManager) -> None:
    """Images of a job: its preview, results (to get or delete), their thumbnails, the style painting."""

    @app.get("/api/jobs/{job_id}/preview", summary="The running job's latest preview (JPEG)", responses=ERR)
    async def preview(job_id: str) -> Response:
        _job_or_404(manager, job_id)
        data = manager.preview(job_id)
        if data is None:
            raise HTTPException(404, "no preview yet")
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    def result_path(job_id: str, index: int, suffix: str = ".png") -> Any:
        job = _job_or_404(manager, job_id)
        files = [r["file"] for r in job.results if r.get("index") == index]
        if not files or not RESULT_FILE.fullmatch(files[0]):
            raise not_found("result", index)
        path = manager.job_dir(job_id) / files[0].replace(".png", suffix)
        if not path.is_file():  # e.g. deleted by hand from the output folder
            raise not_found("result", index)
        return path

    @app.get("/api/jobs/{job_id}/results/{index}", response_class=FileResponse, responses=ERR,
             summary="A result PNG (parameters in its metadata); ?download=1 to save it")
    def result(job_id: str, index: int, download: bool = False) -> FileResponse:
        name = f"canstyle-{job_id}-{index}.png"
        return FileResponse(result_path(job_id, index), media_type="image/png", filename=name if download else None)

    @app.get("/api/jobs/{job_id}/results/{index}/thumb", response_class=FileResponse, responses=ERR,
             summary="A small JPEG of a result, for galleries")
    def result_thumb(job_id: str, index: int) -> FileResponse:
        return FileResponse(result_path(job_id, index, ".thumb.jpg"), media_type="image/jpeg")

    @app.delete("/api/jobs/{job_id}/results/{index}", status_code=204, responses=ERR,
                summary="Delete one result of a finished job")
    def delete_result(job_id: str, index: int) -> Response:
        _job_or_404(manager, job_id)
        try:
            r = manager.drop_result(job_id, index)
        except KeyError:
            raise not_found("result", index) from None
        except CanstyleError as e:
            raise HTTPException(409, str(e)) from None
        for suffix in (".png", ".thumb.jpg"):
            with contextlib.suppress(FileNotFoundError):
                (manager.job_dir(job_id) / r["file"].replace(".png", suffix)).unlink()
        return Response(status_code=204)

    @app.get("/api/jobs/{job_id}/style", response_class=FileResponse, responses=ERR,
             summary="The painting the job used as its style (upscaled CAN painting or the upload)")
    def style(job_id: str) -> FileResponse:
        path = manager.job_dir(_job_or_404(manager, job_id).id) / "style.png"
        if not path.is_file():
            raise HTTPException(404, "the style painting is not ready yet")
        return FileResponse(path, media_type="image/png")


def job_archive_routes(app: FastAPI, manager: JobManager) -> None:
    """A job's zip, and the gallery of jobs with results."""

    @app.get("/api/jobs/{job_id}/zip", response_class=FileResponse, responses=ERR,
             summary="A zip of the job's results, the painting it used and its parameters")
    async def zipped(job_id: str) -> FileResponse:
        _job_or_404(manager, job_id)
        snap = manager.snapshot(job_id)[1]
        if not snap["results"]:
            raise HTTPException(404, "this job has no results yet")
        path = await run_in_threadpool(_write_zip, manager, snap)
        return FileResponse(path, media_type="application/zip", filename=f"canstyle-{job_id}.zip",
                            background=BackgroundTask(os.unlink, path))

    @app.get("/api/gallery", summary="Jobs with results (finished, or kept from a stopped job), newest first")
    async def gallery(response: Response, offset: int = Query(0, ge=0),
                      limit: int = Query(24, ge=1, le=200)) -> list[dict[str, Any]]:
        keep = ("id", "status", "created", "finished", "request", "info", "results", "links")
        jobs = [j for j in manager.list() if j["results"] and j["status"] in TERMINAL]
        response.headers["X-Total-Count"] = str(len(jobs))
        return [{k: j[k] for k in keep} for j in map(job_out, jobs[offset : offset + limit])]


def _write_zip(manager: JobManager, snap: dict[str, Any]) -> str:
    """The job's files in a temporary zip (deleted once sent); PNGs are stored, not recompressed."""
    folder = manager.job_dir(snap["id"])
    fd, path = tempfile.mkstemp(prefix="canstyle-", suffix=".zip")
    os.close(fd)
    params = {k: snap[k] for k in ("id", "status", "created", "finished", "request", "info", "results")}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for r in snap["results"]:
            if RESULT_FILE.fullmatch(r["file"]) and (folder / r["file"]).is_file():
                z.write(folder / r["file"], r["file"])
        if (folder / "style.png").is_file():
            z.write(folder / "style.png", "painting.png")
        z.writestr("parameters.json", json.dumps(params, indent=1, default=str))
    return path


async def _job_stream(manager: JobManager, job_id: str, closing: threading.Event) -> AsyncIterator[str]:
    """SSE: one ``job`` event per change, ending after a terminal status, a delete, or when the
    server is shutting down."""
    yield "retry: 2000\n\n"
    last, idle = -1, 0.0
    while not closing.is_set():
        try:
            version, snap = manager.snapshot(job_id)
        except KeyError:
            return
        if version != last:
            last, idle = version, 0.0
            yield f"event: job\ndata: {json.dumps(job_out(snap))}\n\n"
            if snap["status"] in TERMINAL:
                return
        elif idle >= KEEPALIVE:
            idle = 0.0
            yield ": keep-alive\n\n"
        await asyncio.sleep(POLL)
        idle += POLL


async def _all_stream(manager: JobManager, closing: threading.Event) -> AsyncIterator[str]:
    """SSE: a ``job`` event for every change of any job (at first, the unfinished jobs) and a
    ``deleted`` event for every job deleted, so that every open page drops it. The stream ends
    when the server shuts down: an open page must not hold the shutdown up."""
    yield "retry: 2000\n\n"
    seen: dict[str, int] = {}
    last, idle = manager.version, 0.0
    for snap in manager.changed_since(seen)[0]:  # everything counts as seen; the live jobs are sent
        if snap["status"] not in TERMINAL:
            yield f"event: job\ndata: {json.dumps(job_out(snap))}\n\n"
    while not closing.is_set():
        if manager.version != last:
            last, idle = manager.version, 0.0
            changed, gone = manager.changed_since(seen)
            for snap in changed:
                yield f"event: job\ndata: {json.dumps(job_out(snap))}\n\n"
            for job_id in gone:
                yield f"event: deleted\ndata: {json.dumps({'id': job_id})}\n\n"
        elif idle >= KEEPALIVE:
            idle = 0.0
            yield ": keep-alive\n\n"
        await asyncio.sleep(POLL)
        idle += POLL
