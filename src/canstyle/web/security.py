"""Request checks for the studio, as one ASGI middleware in front of every route.

- Host allow-list (DNS-rebinding defence), in every mode: loopback names and addresses, the
  machine's own names and addresses with ``--listen``, plus names given with ``--allowed-host``.
- State-changing requests (POST, PUT, PATCH, DELETE) from another origin are refused:
  a browser always sends ``Origin`` on them, and it must name this very host.
- API requests that a browser marks as cross-site (``Sec-Fetch-Site``) are refused whatever
  their method, so an ``<img>`` on another site cannot make the server generate or read anything.
- Request bodies are capped while they stream in, so neither a lying nor a missing
  Content-Length lets a client push more than the limit into memory; a body that stalls
  or trickles past the timeout gets 408; a client that disconnects is logged in one line.
- Defensive response headers: no sniffing, no framing, same-origin resources only.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from fastapi import HTTPException
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse

log = logging.getLogger("canstyle.web")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
CROSS_SITE = frozenset({"cross-site", "same-site"})  # same-site: another port or subdomain
# The page needs nothing from elsewhere. /docs is exempt: Swagger UI starts from an inline
# script, and without fastapi-offline installed it loads from its CDN.
CSP = ("default-src 'self'; img-src 'self' data: blob:; script-src 'self'; style-src 'self'; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
CSP_EXEMPT = ("/docs", "/redoc")


class BodyTooLarge(HTTPException):
    """Raised while reading a body past its limit; FastAPI passes HTTPExceptions through."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is too large: the limit is {limit / 2**20:.1f} MiB")


class BodyTimeout(HTTPException):
    def __init__(self, seconds: float) -> None:
        super().__init__(408, f"the request body did not arrive within {seconds:g} s")


def host_name(host_header: str) -> str:
    """'Example.org:7860' -> 'example.org'; '[::1]:7860' -> '::1'; 'name.' -> 'name'."""
    h = host_header.strip().lower()
    if h.startswith("["):
        return h[1 : h.find("]")] if "]" in h else h
    h = h.rsplit(":", 1)[0] if h.count(":") == 1 else h
    return h.rstrip(".")


def _ip(text: str) -> str | None:
    """The canonical form of an IP literal, or None for a name."""
    try:
        return str(ipaddress.ip_address(text.split("%", 1)[0]))
    except ValueError:
        return None


def machine_hosts(bind: str) -> set[str]:
    """This machine's own names and addresses, for serving beyond loopback (``--listen``).

    The names come from the OS, the addresses from resolving them and from the route a packet
    to the internet would take (a UDP connect sends nothing). Other names (a reverse proxy's, a
    DNS alias) must be allowed with ``--allowed-host``. Connections are also answered under the
    local address they arrived on (see ``HostPolicy``).
    """
    names = {socket.gethostname(), socket.getfqdn(), *LOOPBACK_HOSTS}
    names |= {f"{socket.gethostname().split('.')[0]}.local"}  # mDNS name on most LANs
    if bind not in ("0.0.0.0", "::", ""):
        names.add(bind)
    found = set(names)
    for name in names:
        try:
            found |= {str(info[4][0]) for info in socket.getaddrinfo(name, None)}
        except OSError:
            continue
    for family, probe in ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1")):
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.connect((probe, 9))
                found.add(str(s.getsockname()[0]))
        except OSError:
            continue
    return {h.lower() for h in found if h}


class HostPolicy:
    """Which Host headers to answer: listed names, listed addresses, and the local address the
    connection arrived on. A rebinding attack needs a DNS *name* that the attacker controls;
    an IP literal Host only reaches us when the browser was pointed at our address itself."""

    def __init__(self, hosts: Iterable[str]) -> None:
        listed = {host_name(h) for h in hosts if h.strip()}
        self.names = {h for h in listed if _ip(h) is None}
        self.addresses = {a for a in map(_ip, listed) if a is not None}

    def allows(self, host: str, scope: Scope) -> bool:
        name = host_name(host)
        ip = _ip(name)
        if ip is None:
            return name in self.names
        server = scope.get("server") or ("", 0)
        return ip in self.addresses or ip == _ip(str(server[0]))

    def describe(self) -> str:
        return ", ".join(sorted(self.names | self.addresses))


def cross_origin_problem(method: str, path: str, headers: Headers) -> str | None:
    """Why a request looks cross-origin in a way we refuse, or None if it is fine."""
    host = headers.get("host", "").lower()
    origin = headers.get("origin")
    api = path.startswith("/api/")
    if origin is not None and (method in UNSAFE_METHODS or api):
        parts = urlsplit(origin)
        if origin == "null" or parts.scheme not in ("http", "https") or parts.netloc.lower() != host:
            return f"cross-origin request refused: Origin {origin!r} does not match host {host!r}"
    site = headers.get("sec-fetch-site")
    if site in CROSS_SITE:
        if method in UNSAFE_METHODS:
            return "cross-origin request refused (Sec-Fetch-Site)"
        # A person following a link is fine; a page's <img>, fetch or frame is not.
        navigation = headers.get("sec-fetch-mode") == "navigate" and headers.get("sec-fetch-dest") == "document"
        if api and not navigation:
            return "cross-site request refused (Sec-Fetch-Site): open the studio's own page instead"
    return None  # no Origin, no fetch metadata: not a browser's cross-site request (curl, scripts)


class SecurityMiddleware:
    def __init__(self, app: Any, *, allowed_hosts: Iterable[str], body_limits: dict[str, int],
                 default_body_limit: int, body_timeout: float = 30.0, body_deadline: float = 300.0) -> None:
        self.app = app
        self.hosts = HostPolicy(allowed_hosts)
        self.body_limits = body_limits  # path -> bytes
        self.default_body_limit = default_body_limit
        self.body_timeout = body_timeout  # longest pause between two chunks of a body
        self.body_deadline = body_deadline  # longest time for a whole body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        problem = self._refusal(scope, headers)
        if problem is not None:
            status, detail = problem
            await JSONResponse({"detail": detail}, status)(scope, receive, send)
            return
        limit = self.body_limits.get(scope["path"], self.default_body_limit)
        wrapped = _guarded(receive, limit, self.body_timeout, self.body_deadline)
        try:
            await self.app(scope, wrapped, _with_headers(send, scope["path"]))
        except ClientDisconnect:  # the client went away mid-body: nothing to answer, nothing to trace
            log.info("client disconnected during %s %s", scope["method"], scope["path"])

    def _refusal(self, scope: Scope, headers: Headers) -> tuple[int, str] | None:
        if not self.hosts.allows(headers.get("host", ""), scope):
            return 403, "unexpected Host header: this server only answers to " + self.hosts.describe()
        problem = cross_origin_problem(scope["method"], scope["path"], headers)
        if problem is not None:
            return 403, problem
        limit = self.body_limits.get(scope["path"], self.default_body_limit)
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            return 413, BodyTooLarge(limit).detail
        return None


def _guarded(receive: Receive, limit: int, idle: float, deadline: float) -> Receive:
    """``receive`` with the size cap and the timeouts applied while the body streams in.

    Once the body is complete, calls pass straight through: a streaming response waits on
    ``receive`` for the disconnect, for as long as it streams.
    """
    seen, complete, start = 0, False, time.monotonic()

    async def wrapped() -> Message:
        nonlocal seen, complete
        if complete:
            return await receive()
        left = min(idle, deadline - (time.monotonic() - start))
        try:
            message = await asyncio.wait_for(receive(), max(left, 0.001))
        except (TimeoutError, asyncio.TimeoutError):  # distinct classes before Python 3.11
            raise BodyTimeout(idle if left == idle else deadline) from None
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(limit)
            complete = not message.get("more_body", False)
        elif message["type"] == "http.disconnect":
            complete = True
            raise ClientDisconnect
        return message

    return wrapped


def _with_headers(send: Send, path: str) -> Send:
    extra = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
             (b"referrer-policy", b"no-referrer"), (b"cross-origin-resource-policy", b"same-origin")]
    if not path.startswith(CSP_EXEMPT):
        extra.append((b"content-security-policy", CSP.encode()))

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return wrapped
