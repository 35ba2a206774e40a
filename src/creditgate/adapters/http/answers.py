"""Refusals sent by the edge itself: problem+json under /api/v1, GraphQL-shaped JSON elsewhere."""

from __future__ import annotations

import orjson
from starlette.types import Scope, Send

REST_PREFIX = "/api/v1"
TITLES = {413: "Content Too Large", 429: "Too Many Requests"}
GRAPHQL_RESPONSE = b"application/graphql-response+json"


def _header(scope: Scope, name: bytes) -> bytes:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return b""


async def refuse(scope: Scope, send: Send, status: int, message: str, code: str,
                 headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Answers `status` at once; the connection closes (an unread body may follow)."""
    path: str = scope["path"]
    if path == REST_PREFIX or path.startswith(REST_PREFIX + "/"):
        body = orjson.dumps({"type": "about:blank", "title": TITLES.get(status, "Error"), "status": status,
                             "detail": message, "instance": path, "extensions": {"code": code}})
        media = b"application/problem+json"
    elif GRAPHQL_RESPONSE in _header(scope, b"accept"):  # GraphQL over HTTP: no `data` entry
        body = orjson.dumps({"errors": [{"message": message, "extensions": {"code": code}}]})
        media = GRAPHQL_RESPONSE + b"; charset=utf-8"
    else:
        body = orjson.dumps({"data": None, "errors": [{"message": message, "extensions": {"code": code}}]})
        media = b"application/json"
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", media), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *(headers or ())]})
    await send({"type": "http.response.body", "body": body})
