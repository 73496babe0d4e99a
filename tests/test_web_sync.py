"""What keeps several open pages in step and lets the server stop cleanly: a ``deleted`` event
on the all-jobs stream, streams that end when the server begins to stop, the job list in pages
with a total, the queue counts, and messages and names that say what they mean."""

from __future__ import annotations

import json
import signal
import threading
import time
from typing import Any

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from canstyle.web.uploads import clean_name  # noqa: E402
from tests.helpers import TINY, png_bytes, submit, upload, wait  # noqa: E402


def _read_events(client: TestClient, out: list[tuple[str, dict[str, Any]]], done: threading.Event) -> None:
    """Every (event name, data) of GET /api/events until the stream ends; sets ``done`` then."""
    name = "message"
    with client.stream("GET", "/api/events") as r:
        for line in r.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                out.append((name, json.loads(line[6:])))
    done.set()


def _until(cond: Any, timeout: float = 30) -> None:
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, "timed out"
        time.sleep(0.05)


def test_other_pages_hear_of_deletes_and_streams_end_at_shutdown(client: TestClient) -> None:
    photo = upload(client, png_bytes())["id"]
    events: list[tuple[str, dict[str, Any]]] = []
    ended = threading.Event()
    reader = threading.Thread(target=_read_events, args=(client, events, ended), daemon=True)
    reader.start()
    time.sleep(0.3)
    job = wait(client, submit(client, photo)["id"])["id"]
    _until(lambda: any(n == "job" and e["id"] == job and e["status"] == "done" for n, e in events))
    assert not any(n == "deleted" for n, _ in events)
    assert client.delete(f"/api/jobs/{job}").status_code == 204
    _until(lambda: ("deleted", {"id": job}) in events)
    assert not ended.is_set()
    client.app.state.closing.set()  # what `canstyle serve` does on Ctrl-C or SIGTERM
    assert ended.wait(5), "the event stream did not end when the server began to stop"
    reader.join(5)


def test_job_list_pages_and_queue_counts(client: TestClient) -> None:
    photo = upload(client, png_bytes())["id"]
    ids = [wait(client, submit(client, photo, seed=s)["id"])["id"] for s in range(3)]
    r = client.get("/api/jobs?limit=2")
    assert r.headers["x-total-count"] == "3" and [j["id"] for j in r.json()] == ids[::-1][:2]
    assert [j["id"] for j in client.get("/api/jobs?offset=2&limit=2").json()] == ids[:1]
    assert len(client.get("/api/jobs").json()) == 3  # no limit: all of them, as before
    assert client.get("/api/jobs?status=running&limit=1").json() == []
    assert client.get("/api/jobs?limit=0").status_code == 422
    assert client.get("/api/queue").json() == {"queued": 0, "running": 0, "done": 3, "failed": 0, "cancelled": 0}


def test_unknown_model_is_named_as_a_model(client: TestClient) -> None:
    body = {"photos": ["demo-chelsea"], "style": {"model": "../../x.safetensors", "seed": 1}, **TINY}
    r = client.post("/api/jobs", json=body)
    assert r.status_code == 400 and r.json()["detail"] == "unknown model: ../../x.safetensors"


def test_display_names_lose_control_and_direction_characters() -> None:
    assert clean_name("holiday\u202egpj.exe") == "holidaygpj.exe"  # would display as "holidayexe.jpg"
    assert clean_name("a\u200bb\x00c\x7f.png") == "abc.png"
    assert clean_name("C:\\photos\\Été 2024.jpg") == "Été 2024.jpg"
    assert clean_name(None) == "" and len(clean_name("x" * 500)) == 120


def test_serve_tells_the_app_to_end_its_streams_on_a_signal() -> None:
    uvicorn = pytest.importorskip("uvicorn")
    from canstyle.web.cli import _server_class

    closing = threading.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:  # never served
        raise AssertionError

    server = _server_class()(uvicorn.Config(app), closing)
    server.handle_exit(signal.SIGTERM, None)
    assert closing.is_set() and server.should_exit
