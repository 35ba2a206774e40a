"""Live servers (creditgate in a thread, own event loop, fake clock) for the SDK, browser, import and
subscription tests, and a graphql-transport-ws client for the subscription tests (docs/semantics.md §10)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import uvicorn
from openmeter import Client
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from creditgate.adapters.cache import open_cache, open_signals
from creditgate.adapters.sql.db import Database
from creditgate.app import create_app
from creditgate.services import live
from creditgate.services.runtime import Runtime
from tests.conftest import GQL, Backend, Clock, installation_of, make_settings
from tests.ent_helpers import events

API_KEY = "test-api-key"
START = datetime(2024, 1, 15, 12, 0, 30, tzinfo=UTC)
SUBSCRIBE = """subscription($s: String!, $f: [String!]) { entitlementValues(subjectKey: $s, featureKeys: $f) {
  subjectKey featureKey entitlementId asOf cause value { hasAccess balance usage overage config } } }"""
WAIT = 15.0  # seconds a test waits for a message before failing (never a timing assertion)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ReadyServer(uvicorn.Server):
    """Signals the test thread once it listens."""

    def __init__(self, config: uvicorn.Config, ready: threading.Event) -> None:
        super().__init__(config)
        self.ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


@dataclass
class LiveServer:
    url: str
    clock: Clock
    runtime: Runtime
    loop: asyncio.AbstractEventLoop
    bus: Any = None

    def client(self, token: str | None = API_KEY, **kwargs: Any) -> Client:
        """An OpenMeter SDK client (with the API key unless another token, or None, is given)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return Client(endpoint=self.url, headers=headers, retry_total=0, **kwargs)

    @property
    def ws_url(self) -> str:
        return self.url.replace("http", "ws", 1) + "/graphql"

    def call(self, fn: Callable[[], Any]) -> None:
        """Run `fn` on the server's event loop (its hub and change signal live there)."""
        self.loop.call_soon_threadsafe(fn)

    def clock_moved(self) -> None:
        self.call(lambda: live.hub(self.runtime).clock_moved())

    def gap(self) -> None:
        self.call(lambda: self.loop.create_task(self.runtime.changes.gap()))


@contextlib.contextmanager
def live_server(backend: Backend, *, clock: Clock | None = None, signals_redis: str | None = None,
                **overrides: Any) -> Iterator[LiveServer]:
    """creditgate on a free port of 127.0.0.1 in a thread (own event loop), with the API key, on the test
    database (or `database_url=` another one). With `signals_redis`, the change signal rides that Redis (the
    value cache too), as a `serve` process does. Other keywords override settings (make_settings)."""
    clock = clock or Clock(START)
    port = free_port()
    ready = threading.Event()
    holder: dict[str, Any] = {}
    if signals_redis is not None:
        overrides["redis_url"] = signals_redis
    settings = make_settings(backend, **{"api_keys": API_KEY, **overrides})
    url = settings.database_url
    installation = backend.installation if url == backend.database_url else installation_of(url)

    async def main() -> None:
        db = Database(url)
        runtime = Runtime(settings=settings, db=db, cache=open_cache(settings, installation), clock=clock)
        bus = open_signals(settings, installation) if signals_redis is not None else None
        if bus is not None:
            runtime.changes.attach(bus)
        holder["runtime"], holder["loop"], holder["bus"] = runtime, asyncio.get_running_loop(), bus
        config = uvicorn.Config(create_app(runtime=runtime), host="127.0.0.1", port=port, log_level="warning",
                                lifespan="off")
        holder["server"] = srv = ReadyServer(config, ready)
        try:
            await srv.serve()
        finally:
            ready.set()
            if bus is not None:
                await bus.close()
            if runtime.cache is not None:
                await runtime.cache.close()
            await db.close()

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    assert ready.wait(30), "server did not start"
    assert "runtime" in holder, "server did not start"
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", clock, holder["runtime"], holder["loop"], holder["bus"])
    finally:
        holder["server"].should_exit = True
        thread.join(30)


@dataclass
class Socket:
    """One graphql-transport-ws connection: subscribe, and read each subscription's messages."""

    ws: ClientConnection
    inbox: dict[str, asyncio.Queue[dict[str, Any]]] = field(default_factory=dict)
    pinged: asyncio.Event = field(default_factory=asyncio.Event)
    reader: asyncio.Task[None] | None = None
    _n: int = 0

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in self.ws:
                msg = json.loads(raw)
                if msg["type"] == "ping":
                    self.pinged.set()
                    await self.ws.send(json.dumps({"type": "pong"}))
                elif "id" in msg:
                    self.inbox.setdefault(msg["id"], asyncio.Queue()).put_nowait(msg)

    async def subscribe(self, subject: str, features: list[str] | None = None, query: str = SUBSCRIBE) -> str:
        self._n += 1
        op = str(self._n)
        self.inbox.setdefault(op, asyncio.Queue())
        await self.ws.send(json.dumps({"id": op, "type": "subscribe",
                                       "payload": {"query": query, "variables": {"s": subject, "f": features}}}))
        return op

    async def message(self, op: str, wait: float = WAIT) -> dict[str, Any]:
        return await asyncio.wait_for(self.inbox.setdefault(op, asyncio.Queue()).get(), wait)

    async def update(self, op: str, wait: float = WAIT) -> dict[str, Any]:
        msg = await self.message(op, wait)
        assert msg["type"] == "next", msg
        assert "errors" not in msg["payload"], msg
        data: dict[str, Any] = msg["payload"]["data"]["entitlementValues"]
        return data

    async def updates(self, op: str, n: int) -> dict[str, dict[str, Any]]:
        """The next n updates of `op`, by feature key."""
        out = {}
        for _ in range(n):
            u = await self.update(op)
            out[u["featureKey"]] = u
        assert len(out) == n, out
        return out

    def pending(self, op: str) -> int:
        return self.inbox.setdefault(op, asyncio.Queue()).qsize()

    async def error_code(self, op: str) -> str:
        msg = await self.message(op)
        assert msg["type"] == "error", msg
        code: str = msg["payload"][0]["extensions"]["code"]
        return code

    async def closed(self) -> tuple[int | None, str | None]:
        """Waits until the server closes the socket: (code, reason)."""
        if self.reader is not None:
            await asyncio.wait_for(self.reader, WAIT)
        await asyncio.wait_for(self.ws.wait_closed(), WAIT)
        return self.ws.close_code, self.ws.close_reason


@contextlib.asynccontextmanager
async def socket_to(url: str, token: str | None = API_KEY, *, ack: bool = True, **kwargs: Any):  # type: ignore[no-untyped-def]
    """A connection after connection_init (and its ack, unless `ack` is False)."""
    async with connect(url, subprotocols=["graphql-transport-ws"], open_timeout=WAIT, **kwargs) as ws:  # type: ignore[list-item]
        payload = {"Authorization": f"Bearer {token}"} if token else {}
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        sock = Socket(ws)
        if ack:
            first = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
            assert first == {"type": "connection_ack"}, first
        sock.reader = asyncio.create_task(sock._read())
        try:
            yield sock
        finally:
            sock.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sock.reader


async def until_usage(sock: Socket, op: str, usage: float, wait: float = WAIT) -> dict[str, Any]:
    """The next update carrying `usage`. Before it only RESYNCs of older values may come: gaps being made up
    for (docs/semantics.md §10.3), each with the value as it stood when it was read."""
    while True:
        u = await sock.update(op, wait)
        if u["value"]["usage"] == usage:
            return u
        assert u["cause"] == "RESYNC" and u["value"]["usage"] < usage, u


async def until_live(sock: Socket, op: str, write: Callable[[], Awaitable[float]], last: dict[str, Any],
                     wait: float = WAIT, writes: int = 10) -> dict[str, Any]:
    """After an outage, until a write arrives as INGEST again (`last`: the latest update, perhaps already one).
    `write` writes and returns the usage it leads to; its update carries it, as INGEST or as RESYNC while gaps
    of the outage are still being made up for (one per failure a process saw: a failed publish, a listener
    that reconnected, a cache that could not invalidate; a few, never stale, never left out)."""
    for _ in range(writes):
        if last["cause"] == "INGEST":
            return last
        last = await until_usage(sock, op, await write(), wait)
    assert last["cause"] == "INGEST", last
    return last


def unit_writer(gq: GQL, usage: float) -> Callable[[], Awaitable[float]]:
    """A `write` for `until_live`: each call ingests one more unit for acme and returns the usage it makes."""
    async def write() -> float:
        nonlocal usage
        await events(gq, "acme", ("2024-01-15T12:00:00Z", 1))
        usage += 1
        return usage
    return write


def api(url: str, token: str = API_KEY) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, timeout=30, headers={"authorization": f"Bearer {token}"})


class OwnRedis:
    """A redis-server of the test's own on a free port (the shared one on 6379 stays up): stop and start it."""

    def __init__(self) -> None:
        self.binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen([self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return
            time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)  # a paused one too
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def pause(self) -> None:
        """Redis stops answering, its connections stay open (SIGSTOP); `resume` goes on."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)
