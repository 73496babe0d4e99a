"""``canstyle serve``: the local web studio (FastAPI + uvicorn), on loopback unless --listen."""

from __future__ import annotations

import argparse
import logging
import math
import os
from pathlib import Path
from typing import Any

from canstyle.cliutil import add_features_arg, add_runtime_args
from canstyle.errors import CanstyleError

log = logging.getLogger("canstyle")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (loopback: only this machine)")
    p.add_argument("--port", type=int, default=7860, help="TCP port")
    p.add_argument("--listen", action="store_true",
                   help="bind 0.0.0.0 so other machines can connect (no authentication: trusted networks only)")
    p.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                   help="also answer to this Host name (a DNS alias, a reverse proxy's name); repeatable. "
                        "The machine's own names and addresses are always allowed")
    p.add_argument("-o", "--output", type=Path, metavar="DIR", default=Path("canstyle-studio"),
                   help="folder for uploads, results and job history (kept across restarts)")
    p.add_argument("--models", type=Path, default=None,
                   help="folder of exported CAN generators (*.safetensors) to offer (default: OUTPUT/models)")
    add_features_arg(p)
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads for the worker (default: $OMP_NUM_THREADS, else all cores)")
    p.add_argument("--max-upload-mb", type=float, default=32.0, help="largest upload in MiB")
    p.add_argument("--max-upload-mp", type=float, default=40.0, help="largest upload in megapixels")
    add_runtime_args(p, seed=False, threads=False)


def _threads(requested: int | None) -> int:
    if requested is not None:
        return requested
    env = os.environ.get("OMP_NUM_THREADS", "")
    return int(env) if env.isdigit() and int(env) > 0 else (os.cpu_count() or 1)


def lock_output(folder: Path) -> Any:
    """Hold an exclusive lock on the output folder for the server's lifetime.

    Two servers on one folder would each take the other's running job for a crashed one.
    """
    folder.mkdir(parents=True, exist_ok=True)
    f = open(folder / ".serve.lock", "w")  # noqa: SIM115 -- held open until the process ends
    try:
        import fcntl

        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except ImportError:  # not POSIX: no lock, as before
        pass
    except OSError:
        f.close()
        raise CanstyleError(f"another canstyle serve is already using {folder}; stop it or pick "
                            "another --output") from None
    return f


def _check_args(args: argparse.Namespace) -> None:
    """Every flag, before the server starts (a bad one would otherwise surface at the first job)."""
    from canstyle.device import resolve_device, resolve_precision
    from canstyle.fsutil import check_writable_folder

    if not 0 <= args.port <= 65535:
        raise CanstyleError(f"--port must be 0-65535, got {args.port}")
    if args.threads is not None and args.threads < 1:
        raise CanstyleError("--threads must be at least 1")
    for flag, value in (("--max-upload-mb", args.max_upload_mb), ("--max-upload-mp", args.max_upload_mp)):
        if not (math.isfinite(value) and value > 0):
            raise CanstyleError(f"{flag} must be a positive number, got {value}")
    if args.output.exists() and not args.output.is_dir():
        raise CanstyleError(f"--output must be a folder, and {args.output} is a file")
    check_writable_folder(args.output)  # uploads, results and the job history go there
    if args.models is not None and not args.models.is_dir():
        what = "is a file" if args.models.exists() else "does not exist"
        raise CanstyleError(f"--models must be a folder of exported CAN generators, and {args.models} {what}")
    resolve_precision(args.precision, resolve_device(args.device))  # fails as stylize would


def check_port(host: str, port: int) -> None:
    """Fail on one line if the port is taken, before any model loads (uvicorn would log a
    traceback-like error after the start-up work)."""
    import socket

    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            s.bind((host, port))
        except OSError as e:
            raise CanstyleError(f"cannot listen on {host}:{port}: {e.strerror or e}; "
                                "stop the other server or pick another --port") from None


def is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def allowed_hosts(bind: str, extra: list[str]) -> set[str]:
    """The Host names to answer to: on loopback only loopback names (a DNS-rebinding page
    cannot reach us); otherwise also the machine's own names and addresses. Always an
    allow-list: without one, a rebinding page would pass the Origin check too, since it
    compares Origin with a Host that the attacker chose."""
    from canstyle.web.security import LOOPBACK_HOSTS, machine_hosts

    base = set(LOOPBACK_HOSTS) | {bind} if is_loopback(bind) else machine_hosts(bind)
    return base | {h.strip().lower() for h in extra if h.strip()}


def _server_class() -> Any:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server that, on Ctrl-C or SIGTERM, first tells the app's event streams to end:
        uvicorn waits for open responses before the app's own shutdown runs, and an open page's
        stream never ends by itself (it would be cancelled after the timeout, with a traceback)."""

        def __init__(self, config: Any, closing: Any) -> None:
            super().__init__(config)
            self.closing = closing

        def handle_exit(self, sig: int, frame: Any) -> None:
            self.closing.set()
            super().handle_exit(sig, frame)

    return Server


def run(args: argparse.Namespace) -> int:
    import torch

    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError:  # the studio's packages are an extra, not core dependencies
        raise CanstyleError("the web studio needs FastAPI and uvicorn: pip install 'canstyle[web]'") from None

    from canstyle.web.app import create_app

    _check_args(args)
    lock = lock_output(args.output)
    # One job at a time uses these threads; the event loop and uploads need almost none.
    torch.set_num_threads(_threads(args.threads))
    host = "0.0.0.0" if args.listen else args.host
    check_port(host, args.port)
    allowed = allowed_hosts(host, args.allowed_host)
    if not is_loopback(host):
        log.warning("canstyle serve: listening on %s: anyone who can reach this port can use the studio", host)
    app = create_app(args.output, models_dir=args.models, features=args.features, device=args.device,
                     precision=args.precision, allowed_hosts=allowed,
                     max_upload_bytes=int(args.max_upload_mb * 2**20),
                     max_upload_pixels=int(args.max_upload_mp * 1e6))
    shown = "127.0.0.1" if host == "0.0.0.0" else host
    print(f"canstyle studio: http://{shown}:{args.port}/  (results in {args.output}/; Ctrl-C to stop)", flush=True)
    config = uvicorn.Config(app, host=host, port=args.port, log_level="warning" if args.quiet else "info",
                            timeout_graceful_shutdown=5)
    server = _server_class()(config, app.state.closing)
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C after its clean shutdown; it was asked for
        pass
    finally:
        lock.close()
    return 0 if server.started else 3  # 3: could not start (uvicorn.run's code; it logged why)
