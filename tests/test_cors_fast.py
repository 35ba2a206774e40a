"""The CORS middleware's path for requests without an Origin (adapters/web/cors.py) answers exactly as
Starlette's CORSMiddleware does: both are run on the same requests and their responses compared."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.middleware.cors import CORSMiddleware
from starlette.types import Receive, Scope, Send

from creditgate.adapters.web.cors import Cors, cors_middleware

VARIES: list[list[tuple[bytes, bytes]]] = [
    [], [(b"vary", b"Accept")], [(b"x-a", b"1"), (b"vary", b"Accept"), (b"x-b", b"2"), (b"vary", b"Cookie")],
    [(b"content-type", b"text/plain")],
]


def inner(headers: list[tuple[bytes, bytes]]) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": list(headers)})
        await send({"type": "http.response.body", "body": b"ok"})
    return app


async def answer(app: Any, method: str, headers: dict[str, str]) -> tuple[int, list[tuple[str, str]], bytes]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        r = await client.request(method, "/x", headers=headers)
    return r.status_code, r.headers.multi_items(), r.content


@pytest.mark.parametrize("spec", ["*", "https://app.example.com", "https://*.example.com,http://localhost:*"])
async def test_same_answers_as_starlette(spec: str) -> None:
    kwargs = cors_middleware(spec).kwargs
    requests: list[tuple[str, dict[str, str]]] = [
        ("GET", {}), ("POST", {"content-type": "application/json"}), ("OPTIONS", {}),
        ("GET", {"origin": "https://app.example.com"}), ("POST", {"origin": "https://evil.example.org"}),
        ("OPTIONS", {"origin": "https://a.example.com", "access-control-request-method": "POST"}),
        ("GET", {"origin": "http://localhost:5173"}),
    ]
    for headers in VARIES:
        ours, theirs = Cors(inner(headers), **kwargs), CORSMiddleware(inner(headers), **kwargs)
        for method, sent in requests:
            assert await answer(ours, method, sent) == await answer(theirs, method, sent), (headers, method, sent)


async def test_no_origin_adds_vary() -> None:
    app = Cors(inner([(b"vary", b"Accept")]), **cors_middleware("*").kwargs)
    _, headers, _ = await answer(app, "GET", {})
    assert ("vary", "Accept, Origin") in headers
