"""Request checks for the studio, as one ASGI middleware in front of every route.

- Host allow-list (DNS-rebinding defence): on loopback only localhost names are served.
- State-changing requests (POST, PUT, PATCH, DELETE) from another origin are refused:
  a browser always sends ``Origin`` on them, and it must name this very host.
- Request bodies are capped while they stream in, so neither a lying nor a missing
  Content-Length lets a client push more than the limit into memory.
- Defensive response headers: no sniffing, no framing, same-origin resources only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from fastapi import HTTPException
from starlette.datastructures import Headers
from starlette.responses import JSONResponse

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
# The page needs nothing from elsewhere. /docs is exempt: Swagger UI starts from an inline
# script, and without fastapi-offline installed it loads from its CDN.
CSP = ("default-src 'self'; img-src 'self' data: blob:; script-src 'self'; style-src 'self'; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
CSP_EXEMPT = ("/docs", "/redoc")


class BodyTooLarge(HTTPException):
    """Raised while reading a body past its limit; FastAPI passes HTTPExceptions through."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is too large: the limit is {limit / 2**20:.1f} MiB")


def host_name(host_header: str) -> str:
    """'Example.org:7860' -> 'example.org'; '[::1]:7860' -> '::1'."""
    h = host_header.strip().lower()
    if h.startswith("["):
        return h[1 : h.find("]")] if "]" in h else h
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


def cross_origin_problem(method: str, headers: Headers) -> str | None:
    """Why a state-changing request looks cross-origin, or None if it is fine."""
    if method not in UNSAFE_METHODS:
        return None
    host = headers.get("host", "").lower()
    origin = headers.get("origin")
    if origin is not None:
        parts = urlsplit(origin)
        if origin == "null" or parts.scheme not in ("http", "https") or parts.netloc.lower() != host:
            return f"cross-origin request refused: Origin {origin!r} does not match host {host!r}"
    elif headers.get("sec-fetch-site") in ("cross-site", "same-site"):
        return "cross-origin request refused (Sec-Fetch-Site)"
    return None  # no Origin: not a browser's cross-site request (curl, scripts, tests)


class SecurityMiddleware:
    def __init__(self, app: Any, *, allowed_hosts: set[str] | None, body_limits: dict[str, int],
                 default_body_limit: int) -> None:
        self.app = app
        self.allowed_hosts = None if allowed_hosts is None else {h.lower() for h in allowed_hosts}
        self.body_limits = body_limits  # path -> bytes
        self.default_body_limit = default_body_limit

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
        await self.app(scope, _capped(receive, limit), _with_headers(send, scope["path"]))

    def _refusal(self, scope: Scope, headers: Headers) -> tuple[int, str] | None:
        if self.allowed_hosts is not None and host_name(headers.get("host", "")) not in self.allowed_hosts:
            return 403, "unexpected Host header: this server only answers to " + ", ".join(
                sorted(self.allowed_hosts))
        problem = cross_origin_problem(scope["method"], headers)
        if problem is not None:
            return 403, problem
        limit = self.body_limits.get(scope["path"], self.default_body_limit)
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            return 413, BodyTooLarge(limit).detail
        return None


def _capped(receive: Receive, limit: int) -> Receive:
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(limit)
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
