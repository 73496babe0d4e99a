"""Routes for uploads (photos and style paintings), CAN models and painting grids."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from canstyle.errors import CanstyleError
from canstyle.web.jobs import JobManager
from canstyle.web.schemas import GridRequest
from canstyle.web.studio import Studio, UploadTooLarge

ERR = {400: {"description": "bad input, with a message"}, 403: {"description": "cross-origin or bad Host"},
       404: {"description": "unknown id"}}
UPLOAD_BODY = {"requestBody": {"required": True, "description": "the raw image file (any format PIL reads)",
                               "content": {"application/octet-stream": {"schema": {"type": "string",
                                                                                   "format": "binary"}}}}}
MAX_PAINT_WAITING = 8  # generation requests allowed to wait; more get 503 (a flood cannot queue work)


def not_found(what: str, key: object) -> HTTPException:
    return HTTPException(404, f"no such {what}: {key}")


def _source_out(meta: dict[str, Any]) -> dict[str, Any]:
    base = f"/api/photos/{meta['id']}"
    return {**meta, "thumb_url": f"{base}/thumb", "view_url": f"{base}/view"}


def source_routes(app: FastAPI, studio: Studio, manager: JobManager) -> None:
    uploads = studio.uploads

    @app.post("/api/uploads", status_code=201, openapi_extra=UPLOAD_BODY,
              summary="Upload a photo or a style painting (raw bytes as the request body)",
              responses={**ERR, 408: {"description": "the body stalled"},
                         413: {"description": "over the byte or pixel limit"}})
    async def upload(request: Request, kind: Literal["photo", "style"] = "photo",
                     name: str | None = Query(None, max_length=500, description="file name, for display")
                     ) -> dict[str, Any]:
        data = await request.body()  # the middleware caps its size and time while it streams in
        if not data:
            raise HTTPException(400, "empty upload: send the image file as the request body")
        try:
            meta = await run_in_threadpool(uploads.add, data, kind, name)
        except UploadTooLarge as e:
            raise HTTPException(413, str(e)) from None
        except CanstyleError as e:
            raise HTTPException(400, str(e)) from None
        return _source_out(meta)

    @app.get("/api/photos", summary="Uploaded photos (or style paintings) and the bundled photos")
    def photos(kind: Literal["photo", "style"] = "photo") -> list[dict[str, Any]]:
        return [_source_out(m) for m in uploads.list(kind)]

    @app.get("/api/photos/{photo_id}/thumb", summary="A small JPEG of an uploaded or bundled image",
             response_class=FileResponse, responses=ERR)
    def thumb(photo_id: str) -> FileResponse:
        try:
            return FileResponse(uploads.thumb_path(photo_id))
        except KeyError:
            raise not_found("photo", photo_id) from None

    @app.get("/api/photos/{photo_id}/view", summary="The photo at viewing size (JPEG), for before/after",
             response_class=FileResponse, responses=ERR)
    async def view(photo_id: str) -> FileResponse:
        try:
            return FileResponse(await run_in_threadpool(uploads.view_path, photo_id))
        except KeyError:
            raise not_found("photo", photo_id) from None

    @app.delete("/api/photos/{photo_id}", status_code=204, summary="Delete an upload and its thumbnails",
                responses={**ERR, 409: {"description": "a queued or running job uses it"}})
    def delete_photo(photo_id: str) -> Response:
        try:
            uploads.path(photo_id)
            if manager.uses_source(photo_id):
                raise HTTPException(409, "a queued or running job uses this image; cancel it first")
            uploads.delete(photo_id)
        except KeyError:
            raise not_found("photo", photo_id) from None
        except CanstyleError as e:
            raise HTTPException(400, str(e)) from None
        return Response(status_code=204)


def _model_out(m: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in m.items() if k != "path"}  # server paths stay private


class PaintSlots:
    """One painting generation at a time; waiting happens on the event loop, not in a thread,
    so a flood of painting requests cannot starve the thread pool that other routes use."""

    def __init__(self) -> None:
        self._sem = asyncio.Semaphore(1)
        self.waiting = 0

    async def run(self, fn: Any, *args: Any) -> Any:
        if self.waiting >= MAX_PAINT_WAITING:
            raise HTTPException(503, "busy generating paintings; try again in a moment",
                                headers={"Retry-After": "1"})
        self.waiting += 1
        try:
            async with self._sem:
                return await run_in_threadpool(fn, *args)
        finally:
            self.waiting -= 1


def model_routes(app: FastAPI, studio: Studio) -> None:
    slots = PaintSlots()

    @app.get("/api/models", summary="CAN generators: the default and each valid export in the models dir")
    def models() -> list[dict[str, Any]]:
        return [_model_out(m) for m in studio.models()]

    @app.post("/api/paintings", summary="Generate a grid of CAN paintings, one per seed",
              responses={**ERR, 503: {"description": "too many generations waiting"}})
    async def paintings(body: GridRequest) -> dict[str, Any]:
        try:
            m = await slots.run(studio.paint_grid, body.model, body.seeds)
        except KeyError:
            raise HTTPException(400, f"unknown model: {body.model}") from None
        except CanstyleError as e:
            raise HTTPException(400, studio.scrub(str(e))) from None
        return {"model": _model_out(m), "paintings": [
            {"seed": s, "url": f"/api/models/{m['id']}/paintings/{s}.png"} for s in body.seeds]}

    @app.get("/api/models/{model_id}/paintings/{seed}.png", response_class=FileResponse, responses=ERR,
             summary="One CAN painting at the generator's native size (generated on first same-origin use)")
    async def painting(request: Request, model_id: str, seed: int) -> FileResponse:
        if not 0 <= seed < 2**31:
            raise not_found("seed", seed)
        try:
            path = await run_in_threadpool(studio.cached_painting, model_id, seed)
            if path is None:
                # Only the page itself (or a non-browser client) may make the server paint.
                if request.headers.get("sec-fetch-site") not in (None, "same-origin", "none"):
                    raise HTTPException(404, "this painting has not been generated yet")
                path = await slots.run(studio.painting_path, model_id, seed)
        except KeyError:
            raise not_found("model", model_id) from None
        except CanstyleError as e:
            raise HTTPException(400, studio.scrub(str(e))) from None
        return FileResponse(path, headers={"Cache-Control": "max-age=86400"})
