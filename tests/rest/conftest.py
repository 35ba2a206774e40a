"""A live creditgate server (uvicorn in a background thread, own event loop) for the OpenMeter SDK tests.

The server shares the test database of the `backend` fixture; the `rt` fixture of each test empties it
afterwards. Its clock is a settable fake clock, reset for every test.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import uvicorn
from openmeter import Client

from creditgate.adapters.cache import open_cache
from creditgate.adapters.sql.db import Database
from creditgate.app import create_app
from creditgate.services.runtime import Runtime
from tests.conftest import Backend, Clock, make_settings

API_KEY = "test-api-key"
START = datetime(2024, 1, 15, 12, 0, 30, tzinfo=UTC)


@dataclass
class Server:
    url: str
    clock: Clock
    runtime: Runtime

    def client(self, token: str | None = API_KEY, **kwargs: Any) -> Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return Client(endpoint=self.url, headers=headers, retry_total=0, **kwargs)


class ReadyServer(uvicorn.Server):
    """Signals the test thread once it listens."""

    def __init__(self, config: uvicorn.Config, ready: threading.Event) -> None:
        super().__init__(config)
        self.ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def server(backend: Backend) -> Iterator[Server]:
    clock = Clock(START)
    port = _free_port()
    ready = threading.Event()
    holder: dict[str, Any] = {}

    async def main() -> None:
        db = Database(backend.database_url)
        settings = make_settings(backend, api_keys=API_KEY)
        runtime = Runtime(settings=settings, db=db, cache=open_cache(settings, backend.installation), clock=clock)
        holder["runtime"] = runtime
        config = uvicorn.Config(create_app(runtime=runtime), host="127.0.0.1", port=port, log_level="warning",
                                lifespan="off")
        srv = ReadyServer(config, ready)
        holder["server"] = srv
        try:
            await srv.serve()
        finally:
            ready.set()
            if runtime.cache is not None:
                await runtime.cache.close()
            await db.close()

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    assert ready.wait(30), "server did not start"
    yield Server(f"http://127.0.0.1:{port}", clock, holder["runtime"])
    holder["server"].should_exit = True
    thread.join(30)


@pytest.fixture
def live(server: Server, rt: Runtime) -> Server:
    """The live server on an empty database (emptied by `rt` afterwards), clock at START."""
    server.clock.set(START)
    return server


@pytest.fixture
def om(live: Server) -> Client:
    """An SDK client authenticated with the API key."""
    return live.client()
