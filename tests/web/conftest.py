"""Browser-facing tests: a live creditgate (uvicorn in a thread, fake clock), Debian's chromium driven by
Playwright (never `playwright install`), and a second local server for pages on another origin.

The live server allows CORS from `http://localhost:*` only, so a page on http://localhost:<port> may
call it and the same page on http://127.0.0.2:<port> may not.
"""

from __future__ import annotations

import functools
import http.server
import pathlib
import shutil
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, Route, async_playwright

from creditgate.services.runtime import Runtime
from tests.conftest import GQL, Backend
from tests.live_helpers import API_KEY, START, live_server
from tests.rest.conftest import Server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CORS_ORIGINS = "http://localhost:*"


@pytest.fixture(scope="session")
def web_server(backend: Backend) -> Iterator[Server]:
    with live_server(backend, cors_origins=CORS_ORIGINS) as server:
        yield server


@pytest.fixture
def web(web_server: Server, rt: Runtime) -> Server:
    """The live server on an empty database (emptied by `rt` afterwards), clock at START."""
    web_server.clock.set(START)
    return web_server


@pytest_asyncio.fixture(loop_scope="session")
async def api(web: Server) -> AsyncIterator[GQL]:
    """GraphQL over HTTP against the live server, with the API key unless a token is given."""
    async with httpx.AsyncClient(base_url=web.url, timeout=30,
                                 headers={"authorization": f"Bearer {API_KEY}"}) as client:
        yield GQL(client)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail("chromium is missing: apt-get install -y chromium (.ci/run does it)")
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        await b.close()


@pytest_asyncio.fixture(loop_scope="session")
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    ctx = await browser.new_context(locale="en-US", timezone_id="UTC", viewport={"width": 1280, "height": 900})
    yield ctx
    await ctx.close()


@dataclass
class Watched:
    page: Page
    outside: list[str]  # requests to any other origin (aborted)
    errors: list[str]  # uncaught page errors


@pytest_asyncio.fixture(loop_scope="session")
async def page(context: BrowserContext, web: Server) -> Watched:
    """A page whose requests may only go to the live server's origin (others are aborted and noted),
    with the browser clock starting at the server's START."""
    p = await context.new_page()
    watched = Watched(p, [], [])

    async def only_here(route: Route) -> None:
        url = route.request.url
        if url.startswith(web.url + "/") or url.startswith(web.url.replace("http", "ws", 1) + "/"):
            await route.continue_()
        else:
            watched.outside.append(url)
            await route.abort()

    await p.route("**/*", only_here)
    p.on("pageerror", lambda exc: watched.errors.append(str(exc)))
    await p.clock.install(time=START)  # then it runs on from there
    return watched


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def static_site(root: pathlib.Path, host: str = "127.0.0.1") -> Iterator[int]:
    """A second tiny web server (another origin) serving the files of `root`; yields its port."""
    handler = functools.partial(_Quiet, directory=str(root))
    srv = http.server.ThreadingHTTPServer((host, 0), handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()
