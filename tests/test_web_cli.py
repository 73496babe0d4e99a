"""``canstyle serve`` on a port that is taken: one line, exit code 2, before any model loads."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.helpers import assert_fails_cleanly

pytest.importorskip("fastapi")


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
