"""``canstyle serve``: where it binds and which hosts it answers, and its one-line errors (a
held output folder, no [web] extra, bad flags, a busy port), all before a server starts."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from tests.helpers import assert_fails_cleanly, cli_help, png_bytes  # noqa: E402


def test_serve_on_a_busy_port_fails_on_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import canstyle.web.app as web_app

    built: list[object] = []
    monkeypatch.setattr(web_app, "create_app", lambda *a, **k: built.append(a))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert_fails_cleanly(capsys, ["serve", "--output", str(tmp_path / "studio"), "--port", str(port),
                                      "--threads", "1"], f"127.0.0.1:{port}")
    assert not built  # failed before the models were loaded


def test_serve_cli_binds_loopback_unless_listen(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    import uvicorn

    from canstyle.cli import main

    calls: list[dict[str, Any]] = []
    def run(server: uvicorn.Server, sockets: Any = None) -> None:  # records instead of serving
        c, server.started = server.config, True
        calls.append({"app": c.app, "host": c.host, "port": c.port, "closing": server.closing})

    monkeypatch.setattr(uvicorn.Server, "run", run)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    assert main(["serve", "--output", str(tmp_path / "a"), "--features", "vgg16", "--threads", "1"]) == 0
    assert main(["serve", "--output", str(tmp_path / "b"), "--listen", "--port", "8000", "--threads", "1"]) == 0
    assert (calls[0]["host"], calls[0]["port"]) == ("127.0.0.1", 7860)
    assert (calls[1]["host"], calls[1]["port"]) == ("0.0.0.0", 8000)
    assert calls[0]["closing"] is calls[0]["app"].state.closing  # a signal ends the app's streams
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
    text = cli_help(capsys, "serve")
    assert "--listen" in text and "(default: 7860)" in text and "(default: 127.0.0.1)" in text


def test_serve_without_the_web_extra_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if `pip install canstyle` without [web]
    assert_fails_cleanly(capsys, ["serve", "--output", str(tmp_path / "studio")], "canstyle[web]")


def test_serve_checks_its_flags_before_starting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    import uvicorn

    calls: list[Any] = []
    def run(server: uvicorn.Server, sockets: Any = None) -> None:
        server.started = True
        calls.append(server.config.app)

    monkeypatch.setattr(uvicorn.Server, "run", run)
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


def test_ctrl_c_stops_serve_cleanly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """uvicorn raises Ctrl-C again after its clean shutdown: serve exits 0 and frees its folder."""
    import uvicorn

    from canstyle.cli import main
    from canstyle.web.cli import lock_output

    def run(server: uvicorn.Server, sockets: Any = None) -> None:
        server.started = True
        raise KeyboardInterrupt

    monkeypatch.setattr(uvicorn.Server, "run", run)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    assert main(["serve", "--output", str(tmp_path / "s"), "--threads", "1"]) == 0
    lock_output(tmp_path / "s").close()  # the folder's lock was released
