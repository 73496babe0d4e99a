"""The web studio's JSON API through FastAPI's TestClient: uploads, paintings, jobs, SSE,
every error path, the security checks and persistence across a restart.

Jobs are tiny (64 px, one scale, a few iterations, VGG16) on a tiny random CAN, so
the whole file runs in well under a minute.
"""

from __future__ import annotations

import io
import json
import struct
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from canstyle.can.generate import generate, load_generator  # noqa: E402
from canstyle.imageio import read_metadata  # noqa: E402
from canstyle.web.jobs import INTERRUPTED  # noqa: E402
from tests.helpers import (  # noqa: E402
    LONG,
    MAX_BYTES,
    TINY,
    assert_fails_cleanly,
    make_app,
    png_bytes,
    submit,
    upload,
    wait,
)


def png_header(w: int, h: int) -> bytes:
    """A PNG that claims w x h pixels in a few bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def sse_events(c: TestClient, job_id: str) -> list[dict[str, Any]]:
    events = []
    with c.stream("GET", f"/api/jobs/{job_id}/events") as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    return events


def test_page_static_and_openapi(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200 and '<script src="/static/app.js"' in r.text
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff" and r.headers["x-frame-options"] == "DENY"
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/style.css").status_code == 200
    spec = client.get("/openapi.json").json()
    for path in ("/api/uploads", "/api/paintings", "/api/jobs", "/api/jobs/{job_id}/events",
                 "/api/jobs/{job_id}/cancel", "/api/gallery"):
        assert path in spec["paths"], path
    # Every URL the page calls is a public API path.
    js = client.get("/static/app.js").text
    assert "/api/" in js and "/internal" not in js


@pytest.mark.parametrize("page, assets", [
    ("/docs", ("/docs-assets/swagger-ui-bundle.js", "/docs-assets/swagger-ui.css")),
    ("/redoc", ("/docs-assets/redoc.standalone.js",)),
])
def test_api_docs_work_offline(client: TestClient, page: str, assets: tuple[str, ...]) -> None:
    r = client.get(page)
    assert r.status_code == 200 and "/openapi.json" in r.text
    assert "cdn.jsdelivr" not in r.text and "fonts.googleapis" not in r.text  # all served locally
    for asset in assets:
        assert asset in r.text
        a = client.get(asset)
        assert a.status_code == 200 and len(a.content) > 10_000, asset


def test_api_docs_fall_back_to_the_cdn_without_the_bundle(tmp_path: Path, models_dir: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fastapi_offline", None)  # as if it were not installed
    with TestClient(make_app(tmp_path / "out", models_dir)) as c:
        page = c.get("/docs")
        assert page.status_code == 200 and "cdn.jsdelivr" in page.text
        assert c.get("/docs-assets/swagger-ui.css").status_code == 404


def test_upload_list_and_thumbnail(client: TestClient) -> None:
    data = png_bytes()
    meta = upload(client, data)
    assert len(meta["id"]) == 20 and (meta["width"], meta["height"]) == (90, 60)
    assert upload(client, data)["id"] == meta["id"]  # same bytes, same id
    photos = client.get("/api/photos").json()
    assert photos[0]["id"] == meta["id"]
    assert {"demo-astronaut", "demo-chelsea"} <= {p["id"] for p in photos}
    assert client.get("/api/photos?kind=style").json() == []
    thumb = client.get(meta["thumb_url"])
    assert thumb.status_code == 200 and Image.open(io.BytesIO(thumb.content)).size == (90, 60)
    assert client.get("/api/photos/demo-chelsea/thumb").status_code == 200
    # Stored names are generated from the content hash, never from the request.
    out = client.app.state.studio.uploads.dir
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{meta['id']}{s}" for s in (".img", ".json", ".thumb.jpg"))


def test_oversize_uploads_are_refused(client: TestClient) -> None:
    big = png_bytes(400, 400, "noise")
    assert len(big) > MAX_BYTES
    r = client.post("/api/uploads", content=big)
    assert r.status_code == 413 and "too large" in r.json()["detail"] and "MiB" in r.json()["detail"]

    def chunks():  # no Content-Length: the cap must hold while streaming
        for i in range(0, len(big), 64_000):
            yield big[i : i + 64_000]

    r = client.post("/api/uploads", content=chunks())
    assert r.status_code == 413, r.text
    r = client.post("/api/uploads", content=png_bytes(600, 600, "solid"))  # few bytes, many pixels
    assert r.status_code == 413 and "MP" in r.json()["detail"], r.text
    r = client.post("/api/uploads", content=png_header(30_000, 30_000))  # a decompression bomb
    assert r.status_code == 413 and "too large" in r.json()["detail"], r.text
    r = client.post("/api/jobs", content=b"{" + b" " * (2 << 20) + b"}",
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert client.get("/api/photos").json()[0]["id"].startswith("demo-")  # nothing was stored


def test_non_images_are_refused(client: TestClient) -> None:
    for data, needle in [(b"hello, not an image", "not an image"), (b"", "empty upload"),
                         (png_bytes()[:200], "decode"), (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "not an image")]:
        r = client.post("/api/uploads", content=data)
        assert r.status_code == 400, (data[:20], r.text)
        assert needle in r.json()["detail"], r.json()
    assert not any(client.app.state.studio.uploads.dir.iterdir())


def test_cross_origin_writes_are_refused(client: TestClient) -> None:
    evil = {"Origin": "http://evil.example"}
    r = client.post("/api/uploads", content=png_bytes(), headers=evil)
    assert r.status_code == 403 and "cross-origin" in r.json()["detail"]
    for headers in (evil, {"Origin": "null"}, {"Origin": "http://testserver.evil.example"},
                    {"Sec-Fetch-Site": "cross-site"}):
        r = client.post("/api/paintings", json={"model": "default", "seeds": [0]}, headers=headers)
        assert r.status_code == 403, headers
        assert client.post("/api/jobs", json={}, headers=headers).status_code == 403
        assert client.post("/api/jobs/0123456789abcdef/cancel", headers=headers).status_code == 403
    assert not any(client.app.state.studio.uploads.dir.iterdir())
    assert client.get("/api/models").status_code == 200  # curl and scripts send no Origin
    assert client.get("/api/models", headers=evil).status_code == 403  # a foreign page's fetch()
    r = client.post("/api/uploads", content=png_bytes(), headers={"Origin": "http://testserver"})
    assert r.status_code == 201


def test_host_allow_list(tmp_path: Path, models_dir: Path) -> None:
    app = make_app(tmp_path / "out", models_dir, allowed_hosts={"localhost", "127.0.0.1", "::1"})
    c = TestClient(app)  # Host: testserver, e.g. a DNS-rebinding page's name for us
    r = c.get("/api/models")
    assert r.status_code == 403 and "Host" in r.json()["detail"]
    for host in ("localhost:7860", "127.0.0.1:7860", "[::1]:7860"):
        assert c.get("/api/models", headers={"Host": host}).status_code == 200, host


def test_unknown_ids_are_404(client: TestClient) -> None:
    for url in ("/api/jobs/0123456789abcdef", "/api/jobs/nope", "/api/jobs/0123456789abcdef/events",
                "/api/jobs/0123456789abcdef/preview", "/api/jobs/0123456789abcdef/results/0",
                "/api/jobs/0123456789abcdef/style", "/api/photos/0123456789abcdef0123/thumb",
                "/api/photos/..%2F..%2Fjobs/thumb", "/api/models/nope.safetensors/paintings/1.png",
                "/api/models/pickle.pt/paintings/1.png", "/api/jobs/..%2F..%2F/results/0"):
        r = client.get(url)
        assert r.status_code == 404, url
    r = client.post("/api/jobs/0123456789abcdef/cancel")
    assert r.status_code == 404 and "no such job" in r.json()["detail"]


def test_models_and_painting_grid(client: TestClient, models_dir: Path) -> None:
    ids = [m["id"] for m in client.get("/api/models").json()]
    # broken.safetensors has the right format tag but weights that do not load: not listed.
    assert ids == ["default", "tiny.safetensors"]
    r = client.post("/api/paintings", json={"model": "tiny.safetensors", "seeds": [5, 6]})
    assert r.status_code == 200, r.text
    urls = [p["url"] for p in r.json()["paintings"]]
    got = np.asarray(Image.open(io.BytesIO(client.get(urls[0]).content)).convert("RGB"))
    g = load_generator(models_dir / "tiny.safetensors")[0]
    want = (generate(g, [5])[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert np.array_equal(got, want)  # the painting is the seed's painting
    assert client.get("/api/models/tiny.safetensors/paintings/7.png").status_code == 200  # on demand
    r = client.post("/api/paintings", json={"model": "pickle.pt", "seeds": [0]})
    assert r.status_code == 400 and "unknown model" in r.json()["detail"]
    assert client.post("/api/paintings", json={"model": "default", "seeds": []}).status_code == 422
    assert client.post("/api/paintings", json={"model": "default", "seeds": [-1]}).status_code == 422


def test_job_runs_with_live_progress_and_downloads(client: TestClient) -> None:
    photo = upload(client, png_bytes())["id"]
    job = submit(client, photo)
    assert job["status"] in ("queued", "running") and job["request"]["seed"] == 1
    events = sse_events(client, job["id"])
    assert events[-1]["status"] == "done", events[-1]
    steps = [e["progress"]["step"] for e in events if e["progress"] and e["progress"]["stage"] == "stylize"]
    assert steps and steps == sorted(steps) and max(steps) == 3
    assert any(e["preview_n"] > 0 for e in events) and any(e["status"] == "running" for e in events)
    assert all(e["progress"]["loss"] > 0 for e in events if e["progress"] and e["progress"]["stage"] == "stylize")
    res = events[-1]["results"][0]
    r = client.get(res["download_url"])
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    im = Image.open(io.BytesIO(r.content))
    assert im.size == (64, 43) == (res["width"], res["height"])
    meta = read_metadata(client.app.state.manager.job_dir(job["id"]) / "result_0.png")
    assert meta["job"] == job["id"] and meta["seed"] == 1 and meta["style"]["seed"] == 3
    assert client.get(events[-1]["links"]["style"]).status_code == 200
    assert client.get(res["url"].replace("/results/0", "/results/1")).status_code == 404
    gallery = client.get("/api/gallery").json()
    assert [g["id"] for g in gallery] == [job["id"]]
    assert gallery[0]["info"]["options"]["iterations"] == 3 and gallery[0]["request"]["size"] == 64


def test_uploaded_style_painting(client: TestClient) -> None:
    photo = upload(client, png_bytes())["id"]
    style = upload(client, png_bytes(70, 70), kind="style")["id"]
    assert [s["id"] for s in client.get("/api/photos?kind=style").json()] == [style]
    job = wait(client, submit(client, photo, {"upload": style}, preserve_color="luminance")["id"])
    assert job["status"] == "done" and job["info"]["style"] == {"kind": "upload", "upload": style}
    assert job["info"]["options"]["preserve_color"] == "luminance"


def test_bad_job_requests(client: TestClient) -> None:
    photo = upload(client, png_bytes())["id"]
    ok = {"photos": [photo], "style": {"model": "tiny.safetensors", "seed": 0}, **TINY}
    cases = [({**ok, "size": 8}, 422), ({**ok, "photos": []}, 422), ({**ok, "init": "/etc/passwd"}, 422),
             ({**ok, "style": {"model": "default", "seed": 1, "upload": photo}}, 422),
             ({**ok, "style": {"model": "default"}}, 422), ({**ok, "preserve_color": "sepia"}, 422),
             ({**ok, "photos": ["0123456789abcdef0123"]}, 400), ({**ok, "photos": ["../../etc/passwd"]}, 400),
             ({**ok, "style": {"model": "pickle.pt", "seed": 0}}, 400),
             ({**ok, "style": {"upload": "ffffffffffffffffffff"}}, 400)]
    for body, status in cases:
        r = client.post("/api/jobs", json=body)
        assert r.status_code == status, (body, r.text)
        assert r.json()["detail"]
    assert client.get("/api/jobs").json() == []


def test_cancel_running_and_queued_jobs(client: TestClient) -> None:
    photo = upload(client, png_bytes())["id"]
    running = submit(client, photo, **LONG)["id"]
    queued = submit(client, photo)["id"]
    job = wait(client, running, {"running"})
    assert client.get(f"/api/jobs/{queued}").json()["queue_position"] == 1
    wait_preview = time.monotonic()
    while client.get(f"/api/jobs/{running}").json()["preview_n"] == 0 and time.monotonic() - wait_preview < 30:
        time.sleep(0.05)
    r = client.get(job["links"]["preview"])
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(r.content)).size == (64, 43)
    r = client.post(f"/api/jobs/{queued}/cancel")
    assert r.status_code == 202 and r.json()["status"] == "cancelled"
    r = client.post(f"/api/jobs/{running}/cancel")
    assert r.status_code == 202 and r.json()["cancel_requested"]
    job = wait(client, running)
    assert job["status"] == "cancelled" and job["progress"]["step"] < 2000 and job["results"] == []
    r = client.post(f"/api/jobs/{running}/cancel")
    assert r.status_code == 409 and "already cancelled" in r.json()["detail"]
    # The worker is free again.
    assert wait(client, submit(client, photo)["id"])["status"] == "done"
    assert client.get(f"/api/jobs/{queued}").json()["status"] == "cancelled"


def test_failed_job_reports_its_error_and_the_server_keeps_serving(client: TestClient) -> None:
    photo = upload(client, png_bytes())["id"]
    blocker = submit(client, photo, **LONG)["id"]
    wait(client, blocker, {"running"})
    doomed = submit(client, photo)["id"]
    # The photo's stored bytes go bad while the job waits: it fails with a one-line message.
    (client.app.state.studio.uploads.dir / f"{photo}.img").write_bytes(b"garbage")
    client.post(f"/api/jobs/{blocker}/cancel")
    bad = wait(client, doomed)
    assert bad["status"] == "failed" and "not an image" in bad["error"], bad
    assert "/tmp" not in bad["error"] and "uploads/" not in bad["error"]  # no server path in the message
    photo = upload(client, png_bytes(80, 60))["id"]
    assert wait(client, submit(client, photo)["id"])["status"] == "done"
    assert client.get("/api/models").status_code == 200


def test_queue_limit(tmp_path: Path, models_dir: Path) -> None:
    c = TestClient(make_app(tmp_path / "out", models_dir, max_queued=1))  # no lifespan: nothing runs
    photo = upload(c, png_bytes())["id"]
    submit(c, photo)
    r = c.post("/api/jobs", json={"photos": [photo], "style": {"model": "default", "seed": 0}})
    assert r.status_code == 503 and "already waiting" in r.json()["detail"]


def test_restart_keeps_history_results_and_the_queue(tmp_path: Path, models_dir: Path) -> None:
    out = tmp_path / "out"
    with TestClient(make_app(out, models_dir)) as c:
        photo = upload(c, png_bytes())["id"]
        done = wait(c, submit(c, photo)["id"])
        first = c.get(done["results"][0]["url"]).content
        long = wait(c, submit(c, photo, **LONG)["id"], {"running"})["id"]
    # Stopping the server put the running job back in the queue, on disk.
    assert json.loads((out / "jobs" / long / "job.json").read_text())["status"] == "queued"
    paused = TestClient(make_app(out, models_dir))  # no lifespan: a server that never got to run jobs
    queued = submit(paused, photo)["id"]
    crashed = submit(paused, photo)["id"]
    path = out / "jobs" / crashed / "job.json"  # as if the process died mid-job
    path.write_text(path.read_text().replace('"status": "queued"', '"status": "running"'))
    with TestClient(make_app(out, models_dir)) as c:
        assert c.get(f"/api/jobs/{done['id']}").json()["status"] == "done"
        assert c.get(done["results"][0]["url"]).content == first
        died = c.get(f"/api/jobs/{crashed}").json()
        assert (died["status"], died["error"]) == ("failed", INTERRUPTED)
        wait(c, long, {"running"})
        c.post(f"/api/jobs/{long}/cancel")
        assert wait(c, long)["status"] == "cancelled"
        assert wait(c, queued)["status"] == "done"
        assert [g["id"] for g in c.get("/api/gallery").json()] == [queued, done["id"]]
        assert c.get(f"/api/photos/{photo}/thumb").status_code == 200


def test_serve_cli_binds_loopback_unless_listen(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    import uvicorn

    from canstyle.cli import main

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append({"app": app, **kw}))
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    assert main(["serve", "--output", str(tmp_path / "a"), "--features", "vgg16", "--threads", "1"]) == 0
    assert main(["serve", "--output", str(tmp_path / "b"), "--listen", "--port", "8000", "--threads", "1"]) == 0
    assert (calls[0]["host"], calls[0]["port"]) == ("127.0.0.1", 7860)
    assert (calls[1]["host"], calls[1]["port"]) == ("0.0.0.0", 8000)
    assert TestClient(calls[0]["app"]).get("/api/models").status_code == 403  # Host: testserver
    # --listen keeps an allow-list: a name the machine does not have is refused.
    assert TestClient(calls[1]["app"]).get("/api/models").status_code == 403
    assert main(["serve", "--output", str(tmp_path / "c"), "--listen", "--allowed-host", "testserver",
                 "--threads", "1"]) == 0
    assert TestClient(calls[2]["app"]).get("/api/models").status_code == 200
    # One server per output folder: a second one is refused with a one-line error.
    from canstyle.web.cli import lock_output

    held = lock_output(tmp_path / "a")
    assert_fails_cleanly(capsys, ["serve", "--output", str(tmp_path / "a"), "--threads", "1"], "already using")
    held.close()
    with pytest.raises(SystemExit) as e:
        main(["serve", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "--listen" in text and "(default: 7860)" in text and "(default: 127.0.0.1)" in text


def test_serve_without_the_web_extra_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if `pip install canstyle` without [web]
    assert_fails_cleanly(capsys, ["serve", "--output", str(tmp_path / "studio")], "canstyle[web]")


def test_serve_checks_its_flags_before_starting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    import uvicorn

    calls: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(app))
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    (tmp_path / "file.png").write_bytes(png_bytes())
    cases = [(["--max-upload-mp", "nan"], "--max-upload-mp"), (["--max-upload-mb", "-1"], "--max-upload-mb"),
             (["--max-upload-mb", "0"], "--max-upload-mb"), (["--precision", "fp16", "--device", "cpu"], "fp16"),
             (["--models", str(tmp_path / "nope")], "does not exist"),
             (["--models", str(tmp_path / "file.png")], "is a file")]
    if not torch.cuda.is_available():
        cases.append((["--device", "cuda"], "CUDA is not available"))
    for flags, message in cases:
        assert_fails_cleanly(capsys, ["serve", "--output", str(tmp_path / "studio"), "--threads", "1", *flags], message)
    assert not calls and not (tmp_path / "studio").exists()  # no server started, no folder made
