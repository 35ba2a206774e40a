"""CORS for browser frontends on other origins (README: CREDITGATE_CORS_ORIGINS).

`CREDITGATE_CORS_ORIGINS` is a comma-separated list: `*` (any origin), exact origins
(`https://app.example.com`) and patterns where `*` stands for one or more whole DNS labels at the
start of the host (`https://*.example.com`) or for any port (`http://localhost:*`).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.types import Message, Receive, Scope, Send

# What browser clients commonly send: auth, tracing (W3C, B3, Sentry), request ids, Apollo's client
# identification, idempotency keys.
ALLOW_HEADERS = (
    "authorization", "content-type", "accept", "traceparent", "tracestate", "baggage", "sentry-trace",
    "b3", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-request-id",
    "x-correlation-id", "apollographql-client-name", "apollographql-client-version",
    "apollo-require-preflight", "x-apollo-operation-name", "idempotency-key",
)
# Response headers scripts may read (besides the CORS-safelisted ones).
EXPOSE_HEADERS = ("x-request-id", "retry-after", "www-authenticate", "location", "link", "traceresponse",
                  "server-timing", "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")

_ORIGIN = re.compile(r"(?P<scheme>https?)://(?P<host>[A-Za-z0-9.*-]+|\[[0-9A-Fa-f:.]+\])(?::(?P<port>\d+|\*))?")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"


def _pattern(origin: str) -> str:
    """The regular expression of one origin pattern (ValueError when it is not one)."""
    m = _ORIGIN.fullmatch(origin)
    host = m["host"] if m else ""
    labels = host.split(".")
    if not m or any("*" in label for label in labels[1:]) or (labels[0] != "*" and "*" in labels[0]) \
            or (labels[0] == "*" and len(labels) < 3):
        raise ValueError(f"CREDITGATE_CORS_ORIGINS: {origin!r} is not an origin or an origin pattern "
                         "(like https://*.example.com or http://localhost:*)")
    out = re.escape(m["scheme"]) + "://"
    if labels[0] == "*":  # one or more labels, then at least two fixed ones (never `*.com`)
        out += rf"(?:{_LABEL}\.)+" + re.escape(".".join(labels[1:]))
    else:
        out += re.escape(host)
    if m["port"] == "*":
        out += r"(?::\d{1,5})?"
    elif m["port"]:
        out += re.escape(":" + m["port"])
    return out


def parse_origins(spec: str) -> tuple[list[str], str | None]:
    """Exact origins (or ["*"]) and one regular expression for the patterns (None without any)."""
    exact: list[str] = []
    patterns: list[str] = []
    for item in (o.strip().rstrip("/") for o in spec.split(",")):
        if not item:
            continue
        if item == "*":
            exact.append("*")
        elif "*" in item:
            patterns.append(_pattern(item))
        else:
            _pattern(item)  # checks its form
            exact.append(item)
    return exact, "|".join(f"(?:{p})" for p in patterns) or None


class Cors(CORSMiddleware):
    """Starlette's CORS middleware with a cheaper path for requests without an Origin header (servers,
    scripts: nearly all API traffic). Such a request gets what Starlette gives it, `Vary: Origin` added
    to the response (merged with a Vary the app set), without building Headers objects per request;
    requests with an Origin go through Starlette's code unchanged."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, _ in scope["headers"]:
            if name == b"origin":
                await super().__call__(scope, receive, send)
                return

        async def vary(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = _vary_origin(list(message.get("headers", ())))
            await send(message)

        await self.app(scope, receive, vary)


def _vary_origin(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """`headers` with "Origin" appended to Vary, as starlette's MutableHeaders["Vary"] = ... does:
    the Vary headers joined into the first one's place, or a new one at the end."""
    found = [i for i, (name, _) in enumerate(headers) if name == b"vary"]
    if not found:
        headers.append((b"vary", b"Origin"))
        return headers
    joined = b", ".join([*(headers[i][1] for i in found), b"Origin"])
    for i in reversed(found[1:]):
        del headers[i]
    headers[found[0]] = (b"vary", joined)
    return headers


def cors_middleware(spec: str) -> Middleware:
    origins, regex = parse_origins(spec)
    return Middleware(Cors, allow_origins=origins, allow_origin_regex=regex, allow_methods=METHODS,
                      allow_headers=ALLOW_HEADERS, expose_headers=EXPOSE_HEADERS, max_age=600)


def origin_checker(spec: str) -> Callable[[str], bool]:
    """Whether a browser origin may connect, by the same list: for WebSocket handshakes, which CORS
    does not cover (the /graphql subscriptions)."""
    exact, regex = parse_origins(spec)
    pattern = re.compile(regex) if regex else None
    any_origin = "*" in exact
    return lambda origin: any_origin or origin in exact or bool(pattern and pattern.fullmatch(origin))
