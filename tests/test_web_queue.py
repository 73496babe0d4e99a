"""The web studio's job queue through FastAPI's TestClient: a job's live progress (SSE) and
downloads, an uploaded style, bad requests, cancelling, a failing job, the queue limit and
persistence across a restart.

Jobs are tiny (64 px, one scale, a few iterations, VGG16) on the tiny random CAN of the
``models_dir`` fixture, so the whole file runs in well under a minute.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from canstyle.imageio import read_metadata  # noqa: E402
from canstyle.web.jobs import INTERRUPTED  # noqa: E402
from tests.helpers import LONG, TINY, make_app, png_bytes, submit, upload, wait  # noqa: E402


def sse_events(c: TestClient, job_id: str) -> list[dict[str, Any]]:
    events = []
    with c.stream("GET", f"/api/jobs/{job_id}/events") as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    return events


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
