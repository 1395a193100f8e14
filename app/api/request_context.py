"""Every request gets an id (the caller's `X-Request-ID`, or a new one), sent back in the response's
`X-Request-ID` and carried by every log line written while it is served; one access line per request.

A pure ASGI middleware: `@app.middleware("http")` (BaseHTTPMiddleware) would cost the predict route
an extra task and a copy of the response body.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.logs import request_id

log = logging.getLogger("app.api.access")

# A caller's id is used only if it is short and plain: it goes into headers and every log line.
_CALLER_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
# Scraped and probed every few seconds: their lines would drown the rest at INFO.
_QUIET_PATHS = frozenset({"/metrics", "/healthz"})


def request_id_of(scope: Scope) -> str:
    """The caller's X-Request-ID when it is a plain token, else a new id."""
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            supplied = value.decode("latin-1")
            if _CALLER_ID.fullmatch(supplied):
                return supplied
            break
    return uuid.uuid4().hex


class RequestContext:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id_of(scope)
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 500  # unless a response starts

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append("X-Request-ID", rid)
            await send(message)

        error: Exception | None = None
        try:
            await self.app(scope, receive, send_with_id)
        except Exception as raised:  # answered 500 by the server; the access line says why, with the id
            error = raised
            raise
        finally:
            _access_line(scope, status, started, error)
            request_id.reset(token)


def _access_line(scope: Scope, status: int, started: float, error: Exception | None) -> None:
    path = scope["path"]
    level = logging.ERROR if error else logging.DEBUG if path in _QUIET_PATHS else logging.INFO
    if not log.isEnabledFor(level):
        return
    duration_ms = round((time.perf_counter() - started) * 1000, 2)
    method = scope["method"]
    log.log(
        level,
        "%s %s %s %.1f ms",
        method,
        path,
        status,
        duration_ms,
        extra={"method": method, "path": path, "status": status, "duration_ms": duration_ms},
        exc_info=error,
    )
