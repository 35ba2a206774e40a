"""Request ids, one access-log line per request, latency histograms and error counts.

`x-request-id`: a sent one is kept (only letters, digits and `._:-@/+=`, at most 64 characters),
else a fresh one is made; it is in the response header, the log line and `scope["state"]`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from creditgate import metrics

access_log = logging.getLogger("creditgate.access")
log = logging.getLogger("creditgate.http")

REQUEST_ID = b"x-request-id"
MAX_ID = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9._:\-@/+=]")
MAX_PATH = 256
# The code of a refusal that carries no GraphQL error code of its own.
STATUS_CODES = {400: "BAD_USER_INPUT", 401: "UNAUTHENTICATED", 403: "FORBIDDEN", 404: "NOT_FOUND",
                405: "METHOD_NOT_ALLOWED", 406: "NOT_ACCEPTABLE", 409: "CONFLICT", 413: "PAYLOAD_TOO_LARGE",
                415: "UNSUPPORTED_MEDIA_TYPE", 429: "RATE_LIMITED", 500: "INTERNAL", 503: "UNAVAILABLE"}
POOL_SAMPLE_SECONDS = 5.0


def request_id(sent: bytes | None) -> str:
    if sent:
        clean = _UNSAFE.sub("", sent.decode("latin-1"))[:MAX_ID]
        if clean:
            return clean
    return os.urandom(8).hex()


def printable(text: str) -> str:
    """A path as logged: bounded, control characters escaped."""
    text = text[:MAX_PATH]
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def classify(scope: Scope) -> tuple[str, str]:
    """(api, operation) of a finished request; every label value comes from a bounded set."""
    path: str = scope["path"]
    state = scope.get("state") or {}
    operation = state.get("operation")
    if path == "/graphql":
        return "graphql", operation or "(none)"
    if path.startswith("/api/v1"):
        return "rest", operation or "unmatched"
    route = scope.get("route")
    template = getattr(route, "path", None)
    return "other", template if isinstance(template, str) and template else "unmatched"


class Observe:
    def __init__(self, app: ASGIApp, access_log: bool = True) -> None:
        self.app = app
        self.access_log = access_log
        self._sampler: asyncio.Task[None] | None = None
        self._sample = bool(metrics.multiprocess_dir())  # read once: prometheus_client reads it at import too

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._on_lifespan(send))
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        sent = None
        for name, value in scope["headers"]:
            if name == REQUEST_ID:
                sent = value
                break
        rid = request_id(sent)
        scope.setdefault("state", {})["request_id"] = rid
        header = (REQUEST_ID, rid.encode())
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        if self._sample and self._sampler is None:
            self._sampler = asyncio.get_running_loop().create_task(self._sample_pool(scope))
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self._done(scope, rid, status, time.perf_counter() - start)

    def _done(self, scope: Scope, rid: str, status: int, seconds: float) -> None:
        api, operation = classify(scope)
        metrics.observe_request(api, operation, seconds)
        if status >= 400 and not (scope.get("state") or {}).get("errors_counted"):
            metrics.count_error(api, STATUS_CODES.get(status, str(status)))
        if self.access_log and access_log.isEnabledFor(logging.INFO):
            method: str = scope["method"]
            path = printable(scope["path"])
            client = scope.get("client")
            fields: dict[str, Any] = {
                "request_id": rid, "method": method, "path": path, "api": api, "operation": operation,
                "status": status, "duration_ms": round(seconds * 1000, 3),
                "client": client[0] if client else None}
            access_log.info("%s %s %d %.1fms op=%s id=%s", method, path, status, seconds * 1000, operation, rid,
                            extra={"http": fields})

    def _on_lifespan(self, send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                if self._sampler is not None:
                    self._sampler.cancel()
                metrics.worker_exit()
            await send(message)
        return wrapped

    async def _sample_pool(self, scope: Scope) -> None:
        """With several workers each keeps its pool gauges fresh (a scrape reaches only one of them)."""
        app = scope["app"]
        while True:
            try:
                metrics.set_pool(*app.state.runtime.db.pool_usage())
            except Exception:  # a missing runtime during start or stop: try again later
                log.debug("pool sample skipped", exc_info=True)
            await asyncio.sleep(POOL_SAMPLE_SECONDS)
