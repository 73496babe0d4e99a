"""Plain helpers shared by test modules; the fixtures built on them live in conftest.py.

Test modules import shared code from here, never from each other.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

# -- the CLI's failure shape ------------------------------------------------------------------
# Every user error: exit code 2 and one stderr line, "canstyle: error: ..." from a failed run or
# "canstyle COMMAND: error: ... (see --help)" from a bad flag; never a traceback.
ERROR_LINE = re.compile(r"canstyle(?: [a-z][a-z-]*)?: error: \S")


def assert_one_line_error(code: object, err: str, *needles: str) -> str:
    """Check a finished command: exit ``code`` 2 and ``err`` (its whole stderr) exactly one
    ``canstyle...: error: ...`` line containing every needle. Returns that line."""
    lines = err.splitlines()
    assert code == 2, (code, err)
    assert len(lines) == 1 and "Traceback" not in err, err
    line = lines[0].strip()
    assert ERROR_LINE.match(line), err
    for needle in needles:
        assert needle in line, (needle, err)
    return line


def assert_fails_cleanly(capsys: pytest.CaptureFixture[str], argv: list[str], *needles: str,
                         stdout_lacks: str | None = None) -> str:
    """Run ``canstyle ARGV`` in-process and check it fails cleanly: SystemExit(2) and one error
    line on stderr containing every needle (see ``assert_one_line_error``). With
    ``stdout_lacks``, that text must not be on stdout either (e.g. nothing was processed).
    Returns the error line."""
    from canstyle.cli import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    out, err = capsys.readouterr()
    if stdout_lacks is not None:
        assert stdout_lacks not in out, (stdout_lacks, out)
    return assert_one_line_error(e.value.code, err, *needles)


@contextmanager
def serve_in_thread(app: Any) -> Iterator[int]:
    """A real uvicorn server for ``app`` on a free loopback port, in a thread; yields the port."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    t0 = time.monotonic()
    while not srv.started and time.monotonic() - t0 < 30:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    try:
        yield sock.getsockname()[1]
    finally:
        srv.should_exit = True
        thread.join(15)
        sock.close()
