"""A live creditgate server (tests/live_helpers.py: uvicorn in a background thread, own event loop) for the
OpenMeter SDK tests.

The server shares the test database of the `backend` fixture; the `rt` fixture of each test empties it
afterwards. Its clock is a settable fake clock, reset for every test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from openmeter import Client

from creditgate.services.runtime import Runtime
from tests.conftest import Backend
from tests.live_helpers import API_KEY, START, LiveServer, live_server

__all__ = ["API_KEY", "START", "Server"]

Server = LiveServer  # the name the SDK, web and import tests use


@pytest.fixture(scope="session")
def server(backend: Backend) -> Iterator[Server]:
    with live_server(backend) as srv:
        yield srv


@pytest.fixture
def live(server: Server, rt: Runtime) -> Server:
    """The live server on an empty database (emptied by `rt` afterwards), clock at START."""
    server.clock.set(START)
    return server


@pytest.fixture
def om(live: Server) -> Client:
    """An SDK client authenticated with the API key."""
    return live.client()
