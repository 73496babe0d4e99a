"""``canstyle serve`` on a port that is taken: one line, exit code 2, before any model loads."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

pytest.importorskip("fastapi")


def test_serve_on_a_busy_port_fails_on_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import canstyle.web.app as web_app
    from canstyle.cli import main

    built: list[object] = []
    monkeypatch.setattr(web_app, "create_app", lambda *a, **k: built.append(a))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(SystemExit) as e:
            main(["serve", "--output", str(tmp_path / "studio"), "--port", str(port), "--threads", "1"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and f"127.0.0.1:{port}" in err, err
    assert "Traceback" not in err and not built  # failed before the models were loaded
