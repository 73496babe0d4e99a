"""Issue 16, security items 1-6, through the studio's real middleware stack: TestClient on the
app that ``canstyle serve`` builds, raw ASGI calls for what TestClient cannot send (a stalled
body, a disconnect, a connection's local address) and one real uvicorn socket."""

from __future__ import annotations

import asyncio
import io
import logging
import shutil
import socket
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi")
import httpx  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from tests.helpers import (  # noqa: E402
    make_app,
    png_bytes,
    serve_in_thread,
    submit,
    upload,
    wait,
)

PAINT = "/api/models/tiny.safetensors/paintings/{}.png"
IMG_FETCH = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"}


def serve_app(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *flags: str) -> Any:
    """The app exactly as ``canstyle serve FLAGS`` builds it (uvicorn's Server.run is intercepted)."""
    import uvicorn

    from canstyle.cli import main

    apps: list[Any] = []
    def run(server: uvicorn.Server, sockets: Any = None) -> None:  # records instead of serving
        server.started = True
        apps.append(server.config.app)

    monkeypatch.setattr(uvicorn.Server, "run", run)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    assert main(["serve", "--output", str(tmp_path / "studio"), "--threads", "1", *flags]) == 0
    return apps[0]


async def raw_call(app: Any, method: str, path: str, messages: list[dict[str, Any]], *,
                   host: str = "testserver", server: tuple[str, int] = ("testserver", 80),
                   headers: list[tuple[bytes, bytes]] | None = None, timeout: float = 10) -> list[dict[str, Any]]:
    """One request as an ASGI server would make it; after ``messages`` run out, receive() hangs."""
    pending = deque(messages)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.popleft()
        await asyncio.Event().wait()  # a client that stopped sending
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
             "root_path": "", "headers": [(b"host", host.encode()), *(headers or [])],
             "client": ("127.0.0.1", 50000), "server": server}
    await asyncio.wait_for(app(scope, receive, send), timeout)
    return sent


def status_of(sent: list[dict[str, Any]]) -> int | None:
    starts = [m for m in sent if m["type"] == "http.response.start"]
    return starts[0]["status"] if starts else None


# -- 1. DNS rebinding with --listen ------------------------------------------------
def test_listen_keeps_a_host_allow_list(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    app = serve_app(monkeypatch, tmp_path, "--listen", "--allowed-host", "studio.lan")
    c = TestClient(app)
    for host in ("rebind.attacker.example", "rebind.attacker.example:7860", "testserver"):
        r = c.get("/api/jobs", headers={"Host": host})
        assert r.status_code == 403 and "Host" in r.json()["detail"], host
    # The rebinding page's own origin matches its Host, so only the allow-list can stop this write.
    r = c.post("/api/uploads", content=png_bytes(),
               headers={"Host": "rebind.attacker.example:7860", "Origin": "http://rebind.attacker.example:7860"})
    assert r.status_code == 403
    for host in ("studio.lan:7860", f"{socket.gethostname()}:7860", "localhost:7860", "127.0.0.1:7860",
                 "[::1]:7860"):
        assert c.get("/api/jobs", headers={"Host": host}).status_code == 200, host


def test_listen_answers_under_the_address_a_connection_arrived_on(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    app = serve_app(monkeypatch, tmp_path, "--listen")
    here = ("192.0.2.77", 7860)  # as uvicorn reports a LAN connection's local address
    ok = asyncio.run(raw_call(app, "GET", "/api/jobs", [{"type": "http.request", "body": b""}],
                              host="192.0.2.77:7860", server=here))
    other = asyncio.run(raw_call(app, "GET", "/api/jobs", [{"type": "http.request", "body": b""}],
                                 host="198.51.100.9:7860", server=here))
    assert (status_of(ok), status_of(other)) == (200, 403)


def test_loopback_serve_refuses_other_names(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    c = TestClient(serve_app(monkeypatch, tmp_path))
    assert c.get("/api/jobs", headers={"Host": "rebind.attacker.example"}).status_code == 403
    assert c.get("/api/jobs", headers={"Host": "localhost:7860"}).status_code == 200


# -- 2. cross-site GETs create no work ------------------------------------------------
def test_cross_site_painting_gets_generate_nothing(client: TestClient) -> None:
    folder = client.app.state.studio.paintings
    for seed in (11, 12, 13):  # three <img> tags on another site
        r = client.get(PAINT.format(seed), headers=IMG_FETCH)
        assert r.status_code == 403 and "cross-site" in r.json()["detail"]
    # A link followed from another site is a navigation: it may show a painting, never make one.
    nav = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
    assert client.get(PAINT.format(14), headers=nav).status_code == 404
    assert not list(folder.rglob("*.png"))
    same = {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"}
    assert client.get(PAINT.format(14), headers=same).status_code == 200  # the page itself
    assert client.get(PAINT.format(14), headers=nav).status_code == 200  # now cached
    assert len(list(folder.rglob("*.png"))) == 1
    for url in ("/api/jobs", "/api/gallery", "/api/photos", "/api/events"):
        assert client.get(url, headers=IMG_FETCH).status_code == 403, url


def test_concurrent_painting_generation_is_bounded(tmp_path: Path, models_dir: Path) -> None:
    app = make_app(tmp_path / "out", models_dir)

    async def burst() -> tuple[list[int], int, float]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            gets = [c.get(PAINT.format(100 + i)) for i in range(40)]
            t0 = time.perf_counter()
            jobs = asyncio.create_task(c.get("/api/jobs"))
            statuses = [r.status_code for r in await asyncio.gather(*gets)]
            return statuses, (await jobs).status_code, time.perf_counter() - t0

    statuses, jobs_status, _ = asyncio.run(burst())
    assert set(statuses) <= {200, 503} and statuses.count(503) > 0, statuses
    assert jobs_status == 200
    made = len(list(app.state.studio.paintings.rglob("*.png")))
    assert made == statuses.count(200) <= 40


# -- 3. no server paths; damaged exports are not listed --------------------------------
def test_damaged_models_are_not_listed_and_errors_show_no_paths(tmp_path: Path, models_dir: Path) -> None:
    mine = tmp_path / "models"
    mine.mkdir()
    shutil.copy(models_dir / "tiny.safetensors", mine / "tiny.safetensors")
    shutil.copy(models_dir / "tiny.safetensors", mine / "cut.safetensors")
    shutil.copy(models_dir / "broken.safetensors", mine / "broken.safetensors")
    with TestClient(make_app(tmp_path / "out", mine)) as c:
        assert [m["id"] for m in c.get("/api/models").json()] == ["default", "cut.safetensors", "tiny.safetensors"]
        photo = upload(c, png_bytes())["id"]
        blocker = submit(c, photo, size=64, iterations=2000)["id"]
        wait(c, blocker, {"running"})
        doomed = submit(c, photo, {"model": "cut.safetensors", "seed": 1})["id"]
        data = (mine / "cut.safetensors").read_bytes()
        (mine / "cut.safetensors").write_bytes(data[: len(data) // 2])  # damaged while it waits
        assert [m["id"] for m in c.get("/api/models").json()] == ["default", "tiny.safetensors"]
        r = c.post("/api/paintings", json={"model": "cut.safetensors", "seeds": [0]})
        assert r.status_code == 400 and "unknown model" in r.json()["detail"]
        c.post(f"/api/jobs/{blocker}/cancel")
        failed = wait(c, doomed)
        assert failed["status"] == "failed" and "cut.safetensors" in failed["error"]
        for text in (failed["error"], c.get("/api/jobs").text, c.get("/api/models").text):
            assert str(tmp_path) not in text and str(mine) not in text
    from canstyle.web.studio import Studio

    scrub = Studio(tmp_path / "s", mine).scrub
    assert scrub(f"{mine}/x.safetensors: bad") == "x.safetensors: bad"
    assert scrub("cannot read /home/someone/secret/photo.png (damaged)") == "cannot read photo.png (damaged)"
    assert scrub("see http://127.0.0.1:7860/api/jobs") == "see http://127.0.0.1:7860/api/jobs"


# -- 4. body timeout ---------------------------------------------------------------------
def test_a_stalled_body_gets_408_via_asgi(tmp_path: Path, models_dir: Path) -> None:
    app = make_app(tmp_path / "out", models_dir, body_timeout=0.5)
    headers = [(b"content-length", b"1000"), (b"content-type", b"application/octet-stream")]
    t0 = time.monotonic()
    sent = asyncio.run(raw_call(app, "POST", "/api/uploads", [
        {"type": "http.request", "body": b"0123456789", "more_body": True}], headers=headers))
    assert status_of(sent) == 408 and time.monotonic() - t0 < 5
    assert b"did not arrive" in b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


@pytest.fixture()
def live_server(tmp_path: Path, models_dir: Path) -> Iterator[tuple[str, int, Any]]:
    app = make_app(tmp_path / "out", models_dir, allowed_hosts={"127.0.0.1"}, body_timeout=1.0)
    with serve_in_thread(app) as port:
        yield "127.0.0.1", port, app


def test_a_lying_content_length_is_cut_off_on_a_real_socket(live_server: tuple[str, int, Any]) -> None:
    host, port, _ = live_server
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(f"POST /api/uploads HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: 1000\r\n"
                  "Content-Type: application/octet-stream\r\n\r\n0123456789".encode())
        t0 = time.monotonic()
        answer = s.recv(4096).decode("latin-1")
    assert answer.startswith("HTTP/1.1 408") and time.monotonic() - t0 < 8, answer


# -- 5. small file, big decode -------------------------------------------------------------
def test_uploads_decode_small_and_only_once(tmp_path: Path, models_dir: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import canstyle.imageio

    converted: list[tuple[int, int]] = []
    real = canstyle.imageio.pil_to_loaded
    monkeypatch.setattr(canstyle.imageio, "pil_to_loaded", lambda im, *a: converted.append(im.size) or real(im, *a))
    big = np.zeros((6000, 6000, 3), np.uint8)
    big[::97] = 200
    buf = io.BytesIO()
    Image.fromarray(big).save(buf, format="PNG")
    jpeg = io.BytesIO()
    Image.fromarray(np.tile(np.arange(4000, dtype=np.uint8)[None, :, None], (3000, 1, 3))).save(jpeg, format="JPEG")
    app = make_app(tmp_path / "out", models_dir, max_upload_bytes=8 << 20, max_upload_pixels=40_000_000)
    with TestClient(app) as c:
        meta = upload(c, buf.getvalue())
        assert (meta["width"], meta["height"]) == (6000, 6000) and len(buf.getvalue()) < 1 << 20
        assert converted and max(max(s) for s in converted) <= 256, converted  # never a full-size float copy
        converted.clear()
        assert upload(c, buf.getvalue())["id"] == meta["id"]
        assert not converted  # the same bytes again: found by hash, not decoded
        meta = upload(c, jpeg.getvalue())
        assert (meta["width"], meta["height"]) == (4000, 3000) and max(max(s) for s in converted) <= 256
        assert Image.open(io.BytesIO(c.get(meta["thumb_url"]).content)).size == (256, 192)


# -- 6. client disconnects ---------------------------------------------------------------------
def test_a_disconnect_mid_upload_logs_no_traceback(tmp_path: Path, models_dir: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    app = make_app(tmp_path / "out", models_dir)
    headers = [(b"content-length", b"5000")]
    with caplog.at_level(logging.INFO):
        sent = asyncio.run(raw_call(app, "POST", "/api/uploads", [
            {"type": "http.request", "body": b"x" * 100, "more_body": True}, {"type": "http.disconnect"}],
            headers=headers))
    assert status_of(sent) is None  # nobody to answer
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert any("disconnected" in r.getMessage() for r in caplog.records)
    assert not any(app.state.studio.uploads.dir.iterdir())
