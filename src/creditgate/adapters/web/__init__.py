"""Browser pages served by creditgate itself: GraphiQL (at GET /graphql), the customer usage page
(/portal) and their assets (/static/...). Every asset is in this package (vendored npm bundles with
their licences under static/vendor/, see its README, or small hand-written files): the pages make no
request to any other origin and need no build step.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
# The pages load nothing from elsewhere; connect-src also allows the WebSocket of this origin.
CSP = ("default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
       "font-src 'self' data:; frame-ancestors *")


@cache
def _page(name: str) -> bytes:
    return (STATIC / name).read_bytes()


def _html(name: str) -> Response:
    return HTMLResponse(_page(name), headers={"content-security-policy": CSP, "referrer-policy": "no-referrer",
                                              "cache-control": "no-cache"})


async def graphiql(request: Request) -> Response:
    """GraphiQL, for GET /graphql from a browser."""
    return _html("graphiql.html")


async def portal(request: Request) -> Response:
    # The subject token travels in the URL fragment, which browsers never send: nothing to log.
    return _html("portal/index.html")


def web_routes() -> list[Route | Mount]:
    return [Route("/portal", portal, methods=["GET"]),
            Mount("/static", StaticFiles(directory=STATIC), name="static")]
