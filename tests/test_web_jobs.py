"""Issue 16, items 7-9 and the API behind the page's new features: NaN in JSON, unusable
images refused early with their real size, finished photos kept when a job is cancelled,
fails or dies, deleting, zips, gallery paging, the all-jobs event stream, queue order."""

from __future__ import annotations

import io
import json
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from canstyle.web.jobs import INTERRUPTED, JobManager  # noqa: E402
from tests.helpers import TINY, make_app, png_bytes, submit, upload, wait  # noqa: E402

STYLE = {"model": "tiny.safetensors", "seed": 3}


def job_body(photos: list[str], **opts: Any) -> dict[str, Any]:
    return {"photos": photos, "style": STYLE, "seed": 1, **TINY, **opts}


# -- 7. NaN and Infinity ------------------------------------------------------------------
@pytest.mark.parametrize("field, value", [("style_strength", "NaN"), ("style_strength", "Infinity"),
                                          ("size", "-Infinity"), ("seed", "NaN")])
def test_nan_and_infinity_get_422_with_json(client: TestClient, field: str, value: str) -> None:
    text = json.dumps({k: v for k, v in job_body(["demo-astronaut"]).items() if k != field})
    text = text[:-1] + f', "{field}": {value}}}'
    r = client.post("/api/jobs", content=text, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert any(field in d["loc"] for d in detail), detail
    r = client.post("/api/paintings", content='{"model": "default", "seeds": [NaN]}',
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"]


# -- 8. unusable images are refused early, by their real size --------------------------------
def test_unusable_images_are_refused_at_upload(client: TestClient) -> None:
    for w, h in ((1, 1), (20000, 8), (8, 600)):
        r = client.post("/api/uploads?kind=photo&name=tiny.png", content=png_bytes(w, h, "solid"))
        assert r.status_code == 400, (w, h, r.text)
        assert f"{w}×{h}" in r.json()["detail"] and "tiny.png" in r.json()["detail"]
    r = client.post("/api/uploads?kind=style", content=png_bytes(4000, 40, "solid"))  # 100:1
    assert r.status_code == 400 and "too thin" in r.json()["detail"]
    assert not any(client.app.state.studio.uploads.dir.iterdir())


def test_sizes_that_do_not_fit_the_job_are_refused_at_submit(client: TestClient) -> None:
    thin = upload(client, png_bytes(600, 40), "photo")["id"]
    r = client.post("/api/jobs", json=job_body([thin], size=64))
    assert r.status_code == 400 and "600×40" in r.json()["detail"] and "size 64" in r.json()["detail"], r.text
    assert client.post("/api/jobs", json=job_body([thin], size=512)).status_code == 202
    style = upload(client, png_bytes(1000, 40), "style")["id"]
    photo = upload(client, png_bytes())["id"]
    r = client.post("/api/jobs", json={**job_body([photo]), "style": {"upload": style}})
    assert r.status_code == 400 and "1000×40" in r.json()["detail"], r.text
    tiny = upload(client, png_bytes(32, 32))["id"]  # the smallest usable photo really runs
    job = wait(client, submit(client, tiny, preserve_color="histogram")["id"])
    assert job["status"] == "done", job["error"]


# -- 9. finished photos are kept -----------------------------------------------------------------
def _two_photos(c: TestClient) -> list[str]:
    return [upload(c, png_bytes())["id"], upload(c, png_bytes(80, 64))["id"]]


def _assert_first_kept(c: TestClient, job: dict[str, Any]) -> None:
    assert [r["index"] for r in job["results"]] == [0], job
    r = c.get(job["results"][0]["download_url"])
    assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).size == (64, 43)
    assert c.get(job["results"][0]["thumb_url"]).status_code == 200
    gallery = c.get("/api/gallery").json()
    assert job["id"] in [g["id"] for g in gallery]
    with zipfile.ZipFile(io.BytesIO(c.get(job["links"]["zip"]).content)) as z:
        assert {"result_0.png", "painting.png", "parameters.json"} <= set(z.namelist())


def test_cancel_keeps_the_finished_photo(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    real = JobManager._add_result

    def then_cancel(self: JobManager, job: Any, result: Any, info: Any) -> None:
        real(self, job, result, info)
        if result is not None and result["index"] == 0:
            self.cancel(job.id)  # the user presses Cancel while photo 2 runs

    monkeypatch.setattr(JobManager, "_add_result", then_cancel)
    job = wait(client, submit(client, _two_photos(client)[0], photos=_two_photos(client))["id"])
    assert job["status"] == "cancelled"
    _assert_first_kept(client, job)


def test_a_failing_photo_keeps_the_ones_before_it(tmp_path: Path, models_dir: Path) -> None:
    c = TestClient(make_app(tmp_path / "out", models_dir))  # no lifespan yet: the job waits
    photos = _two_photos(c)
    job_id = c.post("/api/jobs", json=job_body(photos)).json()["id"]
    (c.app.state.studio.uploads.dir / f"{photos[1]}.img").write_bytes(b"not an image any more")
    with c:
        job = wait(c, job_id)
        assert job["status"] == "failed" and "photo 2" in job["error"]
        _assert_first_kept(c, job)


def test_a_crash_keeps_the_finished_photo(tmp_path: Path, models_dir: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    snapshots: list[bytes] = []
    real = JobManager._add_result

    def snapshot_then_cancel(self: JobManager, job: Any, result: Any, info: Any) -> None:
        real(self, job, result, info)
        if result is not None:  # what the disk holds at this instant is what a kill -9 leaves
            snapshots.append((self.job_dir(job.id) / "job.json").read_bytes())
            self.cancel(job.id)

    monkeypatch.setattr(JobManager, "_add_result", snapshot_then_cancel)
    with TestClient(make_app(out, models_dir)) as c:
        job_id = wait(c, c.post("/api/jobs", json=job_body(_two_photos(c))).json()["id"])["id"]
    monkeypatch.setattr(JobManager, "_add_result", real)
    assert json.loads(snapshots[0])["status"] == "running"
    (out / "jobs" / job_id / "job.json").write_bytes(snapshots[0])
    with TestClient(make_app(out, models_dir)) as c:
        job = c.get(f"/api/jobs/{job_id}").json()
        assert (job["status"], job["error"]) == ("failed", INTERRUPTED)
        _assert_first_kept(c, job)


# -- deleting, zips, paging, events, queue order -------------------------------------------------
def test_delete_photos_results_and_jobs_with_their_files(client: TestClient) -> None:
    photos = _two_photos(client)
    job = wait(client, client.post("/api/jobs", json=job_body(photos)).json()["id"])
    folder = client.app.state.manager.job_dir(job["id"])
    assert client.delete("/api/photos/demo-astronaut").status_code == 400
    assert client.delete(f"/api/jobs/{job['id']}/results/0").status_code == 204
    assert not (folder / "result_0.png").exists() and not (folder / "result_0.thumb.jpg").exists()
    assert [r["index"] for r in client.get(f"/api/jobs/{job['id']}").json()["results"]] == [1]
    assert client.delete(f"/api/jobs/{job['id']}/results/0").status_code == 404
    assert client.delete(f"/api/jobs/{job['id']}").status_code == 204
    assert not folder.exists() and client.get(f"/api/jobs/{job['id']}").status_code == 404
    assert client.get("/api/gallery").json() == []
    assert client.delete(f"/api/photos/{photos[0]}").status_code == 204
    assert not list(client.app.state.studio.uploads.dir.glob(f"{photos[0]}*"))
    assert photos[0] not in [p["id"] for p in client.get("/api/photos").json()]
    assert client.delete(f"/api/photos/{photos[0]}").status_code == 404
    running = submit(client, photos[1], size=64, iterations=2000)["id"]
    wait(client, running, {"running"})
    assert client.delete(f"/api/jobs/{running}").status_code == 409  # cancel it first
    assert client.delete(f"/api/photos/{photos[1]}").status_code == 409  # a job still needs it
    client.post(f"/api/jobs/{running}/cancel")
    wait(client, running)


def test_gallery_pages_use_thumbnails(client: TestClient) -> None:
    photo = upload(client, png_bytes())["id"]
    ids = [wait(client, submit(client, photo, seed=s)["id"])["id"] for s in range(3)]
    r = client.get("/api/gallery?offset=0&limit=2")
    assert r.headers["x-total-count"] == "3" and [g["id"] for g in r.json()] == ids[::-1][:2]
    assert [g["id"] for g in client.get("/api/gallery?offset=2&limit=2").json()] == ids[:1]
    thumb = client.get(r.json()[0]["results"][0]["thumb_url"])
    assert thumb.headers["content-type"] == "image/jpeg" and max(Image.open(io.BytesIO(thumb.content)).size) <= 256
    view = client.get(f"/api/photos/{photo}/view")
    assert view.status_code == 200 and Image.open(io.BytesIO(view.content)).size == (90, 60)


def test_one_event_stream_follows_every_job(client: TestClient) -> None:
    photo = upload(client, png_bytes())["id"]
    seen: list[dict[str, Any]] = []

    def read() -> None:
        with client.stream("GET", "/api/events") as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    seen.append(json.loads(line[6:]))
                    if sum(e["status"] == "done" for e in seen) == 2:
                        return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(0.3)
    a, b = submit(client, photo)["id"], submit(client, photo, seed=5)["id"]
    reader.join(60)
    assert {e["id"] for e in seen if e["status"] == "done"} == {a, b}


def test_queue_positions_when_jobs_arrive_together(tmp_path: Path, models_dir: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    c = TestClient(make_app(tmp_path / "out", models_dir))  # no lifespan: everything stays queued
    photo = upload(c, png_bytes())["id"]
    monkeypatch.setattr("canstyle.web.jobs.time.time", lambda: 1_700_000_000.0)  # all in one clock tick
    barrier = threading.Barrier(12)

    def one(_: int) -> str:
        barrier.wait()
        return c.post("/api/jobs", json=job_body([photo])).json()["id"]

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(12) as pool:
        ids = list(pool.map(one, range(12)))
    positions = {j["id"]: j["queue_position"] for j in c.get("/api/jobs").json()}
    assert sorted(positions[i] for i in ids) == list(range(12))
    order = list(c.app.state.manager._queue.queue)
    assert [positions[i] for i in order] == list(range(12))  # the worker takes them in that order


def test_small_fixes_head_favicon_and_html(client: TestClient) -> None:
    assert client.head("/").status_code == 200
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    page = client.get("/").text
    assert 'rel="icon"' in page and 'aria-label' in page
