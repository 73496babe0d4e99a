"""The web studio's JSON API through FastAPI's TestClient: the page, the API docs, uploads and
their limits, the security checks (origin, host), unknown ids and the model/painting grid.
Jobs are in test_web_queue.py, ``canstyle serve`` in test_web_cli.py.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from canstyle.can.generate import load_generator, sample  # noqa: E402
from tests.helpers import MAX_BYTES, make_app, png_bytes, png_header, upload  # noqa: E402


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
    want = (sample(g, [5])[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert np.array_equal(got, want)  # the painting is the seed's painting
    assert client.get("/api/models/tiny.safetensors/paintings/7.png").status_code == 200  # on demand
    r = client.post("/api/paintings", json={"model": "pickle.pt", "seeds": [0]})
    assert r.status_code == 400 and "unknown model" in r.json()["detail"]
    assert client.post("/api/paintings", json={"model": "default", "seeds": []}).status_code == 422
    assert client.post("/api/paintings", json={"model": "default", "seeds": [-1]}).status_code == 422
