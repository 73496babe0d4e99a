"""The studio's FastAPI app: ``create_app(output_dir, ...)``.

The page in ``static/`` talks to the JSON API below and nothing else; OpenAPI lives at
``/openapi.json`` (and ``/docs``). Heavy work never runs on the event loop: jobs go to
the one worker thread, image decoding and grid generation to the thread pool, and the
live event stream only polls in-memory snapshots.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles

from canstyle import __version__
from canstyle.errors import CanstyleError
from canstyle.web.jobs import TERMINAL, JobManager, QueueFull
from canstyle.web.schemas import GridRequest, JobRequest
from canstyle.web.security import SecurityMiddleware
from canstyle.web.studio import Studio, UploadTooLarge, stylize_options

STATIC = Path(__file__).resolve().parent / "static"
RESULT_FILE = re.compile(r"result_\d+\.png")
POLL = 0.2  # seconds between snapshot checks of an event stream
KEEPALIVE = 15.0  # an SSE comment this often keeps proxies and browsers from timing out

ERR = {400: {"description": "bad input, with a message"}, 403: {"description": "cross-origin or bad Host"},
       404: {"description": "unknown id"}}
UPLOAD_BODY = {"requestBody": {"required": True, "description": "the raw image file (any format PIL reads)",
                               "content": {"application/octet-stream": {"schema": {"type": "string",
                                                                                   "format": "binary"}}}}}


def create_app(output_dir: str | Path, *, models_dir: str | Path | None = None, features: str = "auto",
               device: str = "auto", precision: str = "auto", allowed_hosts: set[str] | None = None,
               max_upload_bytes: int = 32 * 2**20, max_upload_pixels: int = 40_000_000,
               max_queued: int = 200) -> FastAPI:
    """The studio app; results, uploads and job history live under ``output_dir``.

    ``allowed_hosts`` None accepts any Host header (the CLI passes loopback names
    unless ``--listen``). Jobs run once the app's lifespan has started.
    """
    studio = Studio(Path(output_dir), None if models_dir is None else Path(models_dir), features=features,
                    device=device, precision=precision, max_pixels=max_upload_pixels)
    manager = JobManager(studio.jobs, studio.run_job, max_queued=max_queued)

    @asynccontextmanager
    async def lifespan(_: FastAPI):  # type: ignore[no-untyped-def]
        manager.start()
        yield
        await run_in_threadpool(manager.stop)

    app = FastAPI(title="canstyle studio", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Upload photos, pick a CAN painting, watch style transfer live.")
    _api_docs(app)
    app.state.studio, app.state.manager = studio, manager
    app.add_middleware(SecurityMiddleware, allowed_hosts=allowed_hosts, default_body_limit=1 << 20,
                       body_limits={"/api/uploads": max_upload_bytes})
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    limits = {"max_upload_bytes": max_upload_bytes, "max_upload_pixels": max_upload_pixels}
    _source_routes(app, studio)
    _model_routes(app, studio)
    _job_routes(app, studio, manager)
    _job_file_routes(app, manager)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/api/config", summary="Limits, quality presets and defaults for the page")
    def config() -> dict[str, Any]:
        from canstyle.nst.stylize import QUALITY

        return {"version": __version__, "limits": limits, "quality": QUALITY,
                "defaults": JobRequest.model_json_schema()["properties"], "queue": manager.counts()}

    return app


def _api_docs(app: FastAPI) -> None:
    """Swagger UI at /docs and ReDoc at /redoc, served from the installed fastapi-offline files.

    FastAPI's default pages load their scripts from a CDN, which leaves them blank on a machine
    without internet; those pages remain the fallback when the package is not installed. Only
    the package's static files are used (Swagger UI 5, which reads OpenAPI 3.1, and ReDoc).
    """
    from importlib.resources import files

    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
    from fastapi.responses import HTMLResponse

    try:
        static = files("fastapi_offline") / "static"
    except ModuleNotFoundError:
        swagger, redoc = {}, {}
    else:
        app.mount("/docs-assets", StaticFiles(directory=str(static)), name="docs-assets")
        swagger = {"swagger_js_url": "/docs-assets/swagger-ui-bundle.js",
                   "swagger_css_url": "/docs-assets/swagger-ui.css",
                   "swagger_favicon_url": "/docs-assets/favicon.png"}
        redoc = {"redoc_js_url": "/docs-assets/redoc.standalone.js",
                 "redoc_favicon_url": "/docs-assets/favicon.png", "with_google_fonts": False}
    spec = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=spec, title=f"{app.title} API", **swagger)

    @app.get("/redoc", include_in_schema=False)
    def redoc_page() -> HTMLResponse:
        return get_redoc_html(openapi_url=spec, title=f"{app.title} API", **redoc)


def _not_found(what: str, key: object) -> HTTPException:
    return HTTPException(404, f"no such {what}: {key}")


def _source_out(meta: dict[str, Any]) -> dict[str, Any]:
    return {**meta, "thumb_url": f"/api/photos/{meta['id']}/thumb"}


def _source_routes(app: FastAPI, studio: Studio) -> None:
    @app.post("/api/uploads", status_code=201, openapi_extra=UPLOAD_BODY,
              summary="Upload a photo or a style painting (raw bytes as the request body)",
              responses={**ERR, 413: {"description": "over the byte or pixel limit"}})
    async def upload(request: Request, kind: Literal["photo", "style"] = "photo") -> dict[str, Any]:
        data = await request.body()  # the middleware caps its size while it streams in
        if not data:
            raise HTTPException(400, "empty upload: send the image file as the request body")
        try:
            meta = await run_in_threadpool(studio.add_upload, data, kind)
        except UploadTooLarge as e:
            raise HTTPException(413, str(e)) from None
        except CanstyleError as e:
            raise HTTPException(400, str(e)) from None
        return _source_out(meta)

    @app.get("/api/photos", summary="Uploaded photos (or style paintings) and the bundled photos")
    def photos(kind: Literal["photo", "style"] = "photo") -> list[dict[str, Any]]:
        return [_source_out(m) for m in studio.list_sources(kind)]

    @app.get("/api/photos/{photo_id}/thumb", summary="A small JPEG of an uploaded or bundled image",
             response_class=FileResponse, responses=ERR)
    def thumb(photo_id: str) -> FileResponse:
        try:
            return FileResponse(studio.thumb_path(photo_id))
        except KeyError:
            raise _not_found("photo", photo_id) from None


def _model_out(m: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in m.items() if k != "path"}  # server paths stay private


def _model_routes(app: FastAPI, studio: Studio) -> None:
    @app.get("/api/models", summary="CAN generators: the default and each exported one in the models dir")
    def models() -> list[dict[str, Any]]:
        return [_model_out(m) for m in studio.models()]

    @app.post("/api/paintings", summary="Generate a grid of CAN paintings, one per seed", responses=ERR)
    async def paintings(body: GridRequest) -> dict[str, Any]:
        try:
            m = await run_in_threadpool(studio.paint_grid, body.model, body.seeds)
        except KeyError:
            raise HTTPException(400, f"unknown model: {body.model}") from None
        except CanstyleError as e:
            raise HTTPException(400, str(e)) from None
        return {"model": _model_out(m), "paintings": [
            {"seed": s, "url": f"/api/models/{m['id']}/paintings/{s}.png"} for s in body.seeds]}

    @app.get("/api/models/{model_id}/paintings/{seed}.png", response_class=FileResponse, responses=ERR,
             summary="One CAN painting at the generator's native size (generated on first use)")
    async def painting(model_id: str, seed: int) -> FileResponse:
        if not 0 <= seed < 2**31:
            raise _not_found("seed", seed)
        try:
            return FileResponse(await run_in_threadpool(studio.painting_path, model_id, seed))
        except KeyError:
            raise _not_found("model", model_id) from None
        except CanstyleError as e:
            raise HTTPException(400, str(e)) from None


def _job_out(d: dict[str, Any]) -> dict[str, Any]:
    """A job's public state plus the URLs the page needs."""
    base = f"/api/jobs/{d['id']}"
    d["links"] = {"self": base, "events": f"{base}/events", "cancel": f"{base}/cancel",
                  "preview": f"{base}/preview", "style": f"{base}/style"}
    d["results"] = [{**r, "url": f"{base}/results/{r['index']}",
                     "download_url": f"{base}/results/{r['index']}?download=1"} for r in d["results"]]
    return d


def _check_sources(studio: Studio, req: dict[str, Any]) -> None:
    """Refuse unknown ids now (400), not after the job has waited in the queue."""
    for pid in req["photos"]:
        try:
            studio.source_path(pid)
        except KeyError:
            raise HTTPException(400, f"unknown photo: {pid}") from None
    style = req["style"]
    try:
        if style["upload"] is not None:
            studio.source_path(style["upload"])
        else:
            studio.model(style["model"])
    except KeyError:
        raise HTTPException(400, f"unknown style painting or model: {style['upload'] or style['model']}") from None


def _job_routes(app: FastAPI, studio: Studio, manager: JobManager) -> None:
    """Submit, list, inspect, follow and cancel jobs."""

    def job_or_404(job_id: str) -> Any:
        return _job_or_404(manager, job_id)

    @app.post("/api/jobs", status_code=202, summary="Queue a job", responses={**ERR, 503: {"description": "queue full"}})
    def submit(body: JobRequest) -> dict[str, Any]:
        req = body.model_dump()
        _check_sources(studio, req)
        if req["seed"] is None:
            req["seed"] = random.randrange(2**31)  # recorded, so the result can be reproduced
        try:
            stylize_options(req)
            job = manager.submit(req)
        except QueueFull as e:
            raise HTTPException(503, str(e)) from None
        except CanstyleError as e:
            raise HTTPException(400, str(e)) from None
        return _job_out(manager.snapshot(job.id)[1])

    @app.get("/api/jobs", summary="All jobs, newest first")
    def jobs(status: Literal["queued", "running", "done", "failed", "cancelled"] | None = None) -> list[dict]:
        return [_job_out(j) for j in manager.list(status)]

    @app.get("/api/jobs/{job_id}", summary="One job's state and progress", responses=ERR)
    def job(job_id: str) -> dict[str, Any]:
        job_or_404(job_id)
        return _job_out(manager.snapshot(job_id)[1])

    @app.post("/api/jobs/{job_id}/cancel", status_code=202, summary="Cancel a queued or running job",
              responses={**ERR, 409: {"description": "the job has already finished"}})
    def cancel(job_id: str) -> dict[str, Any]:
        job_or_404(job_id)
        try:
            return _job_out(manager.cancel(job_id))
        except CanstyleError as e:
            raise HTTPException(409, str(e)) from None

    @app.get("/api/jobs/{job_id}/events", summary="Server-sent events: the job's state on every change",
             response_class=StreamingResponse, responses=ERR)
    async def events(job_id: str) -> StreamingResponse:
        job_or_404(job_id)
        return StreamingResponse(_event_stream(manager, job_id), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def _job_or_404(manager: JobManager, job_id: str) -> Any:
    try:
        return manager.get(job_id)
    except KeyError:
        raise _not_found("job", job_id) from None


def _job_file_routes(app: FastAPI, manager: JobManager) -> None:
    """Images of a job (preview, results, style) and the gallery of finished ones."""

    def job_or_404(job_id: str) -> Any:
        return _job_or_404(manager, job_id)

    @app.get("/api/jobs/{job_id}/preview", summary="The running job's latest preview (JPEG)", responses=ERR)
    def preview(job_id: str) -> Response:
        job_or_404(job_id)
        data = manager.preview(job_id)
        if data is None:
            raise HTTPException(404, "no preview yet")
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @app.get("/api/jobs/{job_id}/results/{index}", response_class=FileResponse, responses=ERR,
             summary="A result PNG (parameters in its metadata); ?download=1 to save it")
    def result(job_id: str, index: int, download: bool = False) -> FileResponse:
        job = job_or_404(job_id)
        files = [r["file"] for r in job.results if r.get("index") == index]
        path = manager.job_dir(job_id) / files[0] if files and RESULT_FILE.fullmatch(files[0]) else None
        if path is None or not path.is_file():  # e.g. deleted by hand from the output folder
            raise _not_found("result", index)
        name = f"canstyle-{job_id}-{index}.png"
        return FileResponse(path, media_type="image/png",
                            filename=name if download else None)

    @app.get("/api/jobs/{job_id}/style", response_class=FileResponse, responses=ERR,
             summary="The painting the job used as its style (upscaled CAN painting or the upload)")
    def style(job_id: str) -> FileResponse:
        path = manager.job_dir(job_or_404(job_id).id) / "style.png"
        if not path.is_file():
            raise HTTPException(404, "the style painting is not ready yet")
        return FileResponse(path, media_type="image/png")

    @app.get("/api/gallery", summary="Finished results with their parameters, newest first")
    def gallery() -> list[dict[str, Any]]:
        keep = ("id", "created", "finished", "request", "info", "results", "links")
        return [{k: j[k] for k in keep} for j in map(_job_out, manager.list("done"))]


async def _event_stream(manager: JobManager, job_id: str):  # type: ignore[no-untyped-def]
    """SSE: one ``job`` event per change, ending after a terminal status."""
    yield "retry: 2000\n\n"
    last, idle = -1, 0.0
    while True:
        version, snap = manager.snapshot(job_id)
        if version != last:
            last, idle = version, 0.0
            yield f"event: job\ndata: {json.dumps(_job_out(snap))}\n\n"
            if snap["status"] in TERMINAL:
                return
        elif idle >= KEEPALIVE:
            idle = 0.0
            yield ": keep-alive\n\n"
        await asyncio.sleep(POLL)
        idle += POLL
