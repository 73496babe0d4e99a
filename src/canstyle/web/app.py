"""The studio's FastAPI app: ``create_app(output_dir, ...)``.

The page in ``static/`` talks to the JSON API below and nothing else; OpenAPI lives at
``/openapi.json`` (and ``/docs``). Heavy work never runs on the event loop: jobs go to
the one worker thread, image decoding and grid generation to the thread pool, and the
live event streams only poll in-memory snapshots. Routes live in ``routes_sources``
(uploads, models, paintings) and ``routes_jobs`` (jobs, results, gallery, events).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from canstyle import __version__
from canstyle.web.jobs import JobManager
from canstyle.web.routes_jobs import (
    job_archive_routes,
    job_event_routes,
    job_file_routes,
    job_routes,
)
from canstyle.web.routes_sources import model_routes, source_routes
from canstyle.web.schemas import JobRequest
from canstyle.web.security import LOOPBACK_HOSTS, SecurityMiddleware
from canstyle.web.studio import Studio

log = logging.getLogger("canstyle.web")
STATIC = Path(__file__).resolve().parent / "static"


def create_app(output_dir: str | Path, *, models_dir: str | Path | None = None, features: str = "auto",
               device: str = "auto", precision: str = "auto", allowed_hosts: Iterable[str] | None = None,
               max_upload_bytes: int = 32 * 2**20, max_upload_pixels: int = 40_000_000,
               max_queued: int = 200, body_timeout: float = 30.0, body_deadline: float = 300.0) -> FastAPI:
    """The studio app; results, uploads and job history live under ``output_dir``.

    ``allowed_hosts``: the Host names (and addresses) to answer to; None means the loopback
    names only. There is no way to switch the check off. Jobs run once the app's lifespan
    has started. ``body_timeout`` bounds the pause between two chunks of a request body,
    ``body_deadline`` the whole body (408 past either).
    """
    studio = Studio(Path(output_dir), None if models_dir is None else Path(models_dir), features=features,
                    device=device, precision=precision, max_pixels=max_upload_pixels)
    manager = JobManager(studio.jobs, studio.run_job, max_queued=max_queued, scrub=studio.scrub)

    @asynccontextmanager
    async def lifespan(_: FastAPI):  # type: ignore[no-untyped-def]
        app.state.closing.clear()  # a second lifespan of the same app (tests) streams again
        manager.start()
        yield
        app.state.closing.set()
        await run_in_threadpool(manager.stop)

    app = FastAPI(title="canstyle studio", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Upload photos, pick a CAN painting, watch style transfer live.")
    _api_docs(app)
    _error_handlers(app, studio)
    # closing: set when the server begins to stop (serve sets it on the signal), so event streams
    # end then; an open page would otherwise hold the shutdown up until it timed out.
    app.state.studio, app.state.manager, app.state.closing = studio, manager, threading.Event()
    hosts = set(LOOPBACK_HOSTS) if allowed_hosts is None else set(allowed_hosts)
    app.add_middleware(SecurityMiddleware, allowed_hosts=hosts, default_body_limit=1 << 20,
                       body_limits={"/api/uploads": max_upload_bytes}, body_timeout=body_timeout,
                       body_deadline=body_deadline)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    limits = {"max_upload_bytes": max_upload_bytes, "max_upload_pixels": max_upload_pixels,
              "body_timeout_s": body_timeout, "body_deadline_s": body_deadline}
    source_routes(app, studio, manager)
    model_routes(app, studio)
    job_routes(app, studio, manager)
    job_event_routes(app, manager)
    job_file_routes(app, manager)
    job_archive_routes(app, manager)

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    @app.get("/api/config", summary="Limits, quality presets and defaults for the page")
    def config() -> dict[str, Any]:
        from canstyle.nst.plan import QUALITY

        return {"version": __version__, "limits": limits, "quality": QUALITY,
                "defaults": JobRequest.model_json_schema()["properties"], "queue": manager.counts()}

    return app


def _plain(value: Any) -> Any:
    """JSON-safe copy: NaN and infinities (which JSON cannot carry) become strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value if value is None or isinstance(value, str | int | float | bool) else str(value)


def _error_handlers(app: FastAPI, studio: Studio) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler echoes the input, and a NaN in it made the answer itself fail
        # (500, plain text). Only the location, message and type go back.
        errors = [{"loc": _plain(list(e.get("loc", ()))), "msg": str(e.get("msg", "")), "type": e.get("type")}
                  for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(Exception)
    async def crashed(_: Request, exc: Exception) -> JSONResponse:
        # A bug: the traceback goes to the server log (Starlette logs it), the browser gets one line.
        return JSONResponse({"detail": studio.scrub(f"internal error: {type(exc).__name__}")}, status_code=500)


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
