"""A lean Redis client for the value cache's hot read: one pipelined connection, hiredis on both ends.

redis-py spends about 100 µs of CPU per command on the event loop (a pool checkout and release, a
retry wrapper, an `asyncio.timeout` and a task for every write, attribute bookkeeping), more than the
rest of a cached read. This client keeps one connection per process and pipelines every command on
it: a command is packed by hiredis, queued, and written together with the others queued in the same
event-loop turn; replies come back in order and resolve the callers' futures in order (hiredis
Reader). Only what the hot read needs: commands whose replies are plain RESP2 values.

Failures keep redis-py's contract for the caller (RedisCache): a refused or lost connection raises
`redis.exceptions.ConnectionError`, a command without a reply after `read_timeout` seconds raises
`redis.exceptions.TimeoutError` (and the connection is dropped, failing every command still on it),
an error reply raises `redis.exceptions.ResponseError`. No retries; the next command reconnects.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Sequence
from typing import Any, cast
from urllib.parse import urlparse

import hiredis
from redis.asyncio.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

GRACE = 0.005  # seconds: see _Protocol._check


class _Protocol(asyncio.Protocol):
    """One connection: commands out in order, replies matched to them in order."""

    def __init__(self, loop: asyncio.AbstractEventLoop, read_timeout: float) -> None:
        self.loop = loop
        self.read_timeout = read_timeout
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader(protocolError=InvalidResponse, replyError=ResponseError)
        self.pending: collections.deque[tuple[asyncio.Future[Any], float]] = collections.deque()
        self.out: list[bytes] = []
        self.watchdog: asyncio.TimerHandle | None = None
        self.closed: BaseException | None = None  # why the connection is gone

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # (uvloop's transports do not subclass it)

    def send(self, packed: bytes) -> asyncio.Future[Any]:
        if self.closed is not None:
            raise RedisConnectionError(f"connection to Redis lost: {self.closed}")
        fut = self.loop.create_future()
        now = self.loop.time()
        self.pending.append((fut, now + self.read_timeout))
        if not self.out:  # the first command of this loop turn: write them all at its end
            self.loop.call_soon(self._flush)
        self.out.append(packed)
        if self.watchdog is None:
            self.watchdog = self.loop.call_at(now + self.read_timeout, self._check)
        return fut

    def _flush(self) -> None:
        out, self.out = self.out, []
        if self.transport is not None and self.closed is None and out:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        pending = self.pending
        while True:
            try:
                reply = self.reader.gets()
            except InvalidResponse as exc:
                self._fail(exc)
                return
            if reply is False:
                return
            if not pending:  # a reply nobody asked for: the stream is out of step
                self._fail(InvalidResponse("unexpected reply from Redis"))
                return
            fut = pending.popleft()[0]
            if not fut.done():  # (its caller may have been cancelled; the reply is consumed all the same)
                if isinstance(reply, ResponseError):
                    fut.set_exception(reply)
                else:
                    fut.set_result(reply)

    def _check(self, oldest: asyncio.Future[Any] | None = None) -> None:
        """Fails the connection once its oldest command has waited `read_timeout`; else sleeps until then.

        A deadline that has passed gets one more look after the loop has polled its sockets (GRACE
        seconds later): on a busy loop the timer can run before the reply that is already waiting
        in the socket is read, and that reply should not count as a timeout."""
        self.watchdog = None
        if not self.pending or self.closed is not None:
            return
        first, deadline = self.pending[0]
        if self.loop.time() < deadline:
            self.watchdog = self.loop.call_at(deadline, self._check)
        elif first is not oldest:
            self.watchdog = self.loop.call_later(GRACE, self._check, first)
        else:
            self._fail(RedisTimeoutError("Timeout reading from Redis"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RedisConnectionError(f"connection to Redis lost: {exc or 'closed'}"))

    def _fail(self, exc: BaseException) -> None:
        if self.closed is None:
            self.closed = exc
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None
        while self.pending:
            fut = self.pending.popleft()[0]
            if not fut.done():
                fut.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()


class RespClient:
    """Commands on one pipelined connection to a plain `redis://` server (see the module docstring)."""

    def __init__(self, host: str, port: int, *, db: int = 0, username: str | None = None,
                 password: str | None = None, connect_timeout: float = 0.25, read_timeout: float = 0.5) -> None:
        self.host, self.port, self.db = host, port, db
        self.username, self.password = username, password
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self._proto: _Protocol | None = None
        self._connecting: asyncio.Task[_Protocol] | None = None

    @classmethod
    def from_url(cls, url: str, *, connect_timeout: float = 0.25, read_timeout: float = 0.5) -> RespClient | None:
        """A client for a `redis://host[:port][/db]` URL (credentials allowed); None for anything else
        (TLS, unix sockets, options in the query string): those stay with redis-py."""
        parsed = urlparse(url)
        if parsed.scheme != "redis" or parsed.query or not parsed.hostname:
            return None
        kw: Any = parse_url(url)
        return cls(kw.get("host", "localhost"), int(kw.get("port", 6379)), db=int(kw.get("db", 0)),
                   username=kw.get("username"), password=kw.get("password"),
                   connect_timeout=connect_timeout, read_timeout=read_timeout)

    async def execute(self, *args: str | bytes | int | float) -> Any:
        proto = self._proto
        if proto is None or proto.closed is not None or proto.loop is not asyncio.get_running_loop():
            proto = await self._connect()
        return await proto.send(hiredis.pack_command(args))  # type: ignore[arg-type]  # the stub wants a 1-tuple

    async def mget(self, keys: Sequence[str | bytes]) -> list[bytes | None]:
        out: list[bytes | None] = await self.execute("MGET", *keys)
        return out

    async def aclose(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
            self._connecting = None
        proto, self._proto = self._proto, None
        if proto is not None and proto.transport is not None:
            proto.transport.close()

    async def _connect(self) -> _Protocol:
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.get_running_loop().create_task(self._open())
        # shield: a caller that is cancelled does not cancel the connection the others wait for
        return await asyncio.shield(self._connecting)

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, proto = await loop.create_connection(lambda: _Protocol(loop, self.read_timeout),
                                                        self.host, self.port)
        except TimeoutError:
            raise RedisTimeoutError(f"Timeout connecting to Redis at {self.host}:{self.port}") from None
        except OSError as exc:
            raise RedisConnectionError(f"Error connecting to Redis at {self.host}:{self.port}: {exc}") from exc
        hello: list[tuple[str | int, ...]] = []
        if self.password is not None:
            hello.append(("AUTH", self.username, self.password) if self.username else ("AUTH", self.password))
        if self.db:
            hello.append(("SELECT", self.db))
        try:
            for command in hello:
                await proto.send(hiredis.pack_command(command))  # type: ignore[arg-type]
        except BaseException:
            proto._fail(RedisConnectionError("Redis refused the connection's AUTH or SELECT"))
            raise
        self._proto = proto
        return proto
