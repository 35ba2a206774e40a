"""The lean pipelined Redis client of the value cache's hot read (adapters/cache/resp.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from creditgate.adapters.cache.resp import RespClient
from tests.conftest import REDIS_URL, _redis_cleanup, _unavailable


@pytest.fixture
def prefix() -> Iterator[str]:
    p = f"cgresp:{uuid.uuid4().hex[:12]}:"
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        _unavailable("Redis", exc)
    yield p
    _redis_cleanup(REDIS_URL, p)


class Silent:
    """A TCP server that accepts connections and reads commands but never answers (a paused Redis)."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.port = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.connected = asyncio.Event()

    async def start(self) -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.writers.append(writer)
            self.connected.set()
            while await reader.read(65536):
                pass

        self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    def drop_connections(self) -> None:
        for w in self.writers:
            w.transport.abort()

    async def stop(self) -> None:
        self.drop_connections()
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture
async def silent() -> AsyncIterator[Silent]:
    s = Silent()
    await s.start()
    yield s
    await s.stop()


def test_from_url_takes_plain_tcp_only() -> None:
    c = RespClient.from_url("redis://:pw@example.org:6380/3")
    assert c is not None
    assert (c.host, c.port, c.db, c.username, c.password) == ("example.org", 6380, 3, None, "pw")
    c = RespClient.from_url("redis://user:pw@127.0.0.1")
    assert c is not None and (c.port, c.db, c.username, c.password) == (6379, 0, "user", "pw")
    for other in ("rediss://127.0.0.1:6379/0", "unix:///tmp/redis.sock", "redis://127.0.0.1:6379/0?protocol=3",
                  "redis+sentinel://127.0.0.1:26379/mymaster"):
        assert RespClient.from_url(other) is None, other


async def test_mget_and_pipelined_order(prefix: str) -> None:
    plain = redis.Redis.from_url(REDIS_URL)
    plain.mset({f"{prefix}k{i}": f"v{i}".encode() for i in range(500)})
    c = RespClient.from_url(REDIS_URL)
    assert c is not None
    assert await c.mget([f"{prefix}k1", f"{prefix}missing", f"{prefix}k2"]) == [b"v1", None, b"v2"]

    # many callers at once share the one connection; each gets its own reply
    async def one(i: int) -> list[bytes | None]:
        return await c.mget([f"{prefix}k{i}", f"{prefix}k{(i * 7) % 500}"])

    got = await asyncio.gather(*(one(i) for i in range(500)))
    assert got == [[f"v{i}".encode(), f"v{(i * 7) % 500}".encode()] for i in range(500)]
    assert await c.execute("SET", f"{prefix}x", "é") == b"OK"
    assert await c.mget([f"{prefix}x"]) == ["é".encode()]
    await c.aclose()
    plain.close()


async def test_error_reply_raises_and_the_connection_stays(prefix: str) -> None:
    c = RespClient.from_url(REDIS_URL)
    assert c is not None
    plain = redis.Redis.from_url(REDIS_URL)
    plain.set(f"{prefix}h", "1")
    plain.hset(f"{prefix}hash", "a", "1")
    with pytest.raises(ResponseError):
        await c.execute("GET", f"{prefix}hash")  # WRONGTYPE
    assert await c.mget([f"{prefix}h"]) == [b"1"]
    await c.aclose()
    plain.close()


async def test_database_and_password_from_the_url(prefix: str) -> None:
    base = REDIS_URL.rsplit("/", 1)[0]
    plain = redis.Redis.from_url(base + "/5")
    plain.set(f"{prefix}db5", "five")
    c = RespClient.from_url(base + "/5")
    assert c is not None
    assert await c.mget([f"{prefix}db5"]) == [b"five"]
    await c.aclose()
    plain.delete(f"{prefix}db5")
    plain.close()
    wrong = RespClient.from_url(base.replace("redis://", "redis://:not-the-password@") + "/0")
    assert wrong is not None
    with pytest.raises(RedisError):  # AUTH refused (no password set, or a wrong one)
        await wrong.mget(["x"])
    await wrong.aclose()


async def test_refused_connection() -> None:
    c = RespClient.from_url("redis://127.0.0.1:1/0")
    assert c is not None
    with pytest.raises(RedisConnectionError):
        await c.mget(["a"])
    await c.aclose()


async def test_timeout_fails_every_pending_command_then_reconnects(silent: Silent, prefix: str) -> None:
    c = RespClient(host="127.0.0.1", port=silent.port, read_timeout=0.2)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    results = await asyncio.gather(*(c.mget([f"k{i}"]) for i in range(5)), return_exceptions=True)
    assert all(isinstance(r, RedisTimeoutError) for r in results), results
    assert 0.15 < loop.time() - t0 < 2.0
    with pytest.raises(RedisTimeoutError):  # a new connection, the same silence
        await c.mget(["k"])
    assert len(silent.writers) == 2
    await c.aclose()


async def test_lost_connection_fails_pending_commands(silent: Silent) -> None:
    c = RespClient(host="127.0.0.1", port=silent.port, read_timeout=5.0)
    pending = asyncio.ensure_future(c.mget(["a"]))
    await asyncio.wait_for(silent.connected.wait(), 5)
    await asyncio.sleep(0.05)
    silent.drop_connections()
    with pytest.raises(RedisConnectionError):
        await pending
    await c.aclose()


async def test_a_cancelled_caller_does_not_shift_replies(prefix: str) -> None:
    plain = redis.Redis.from_url(REDIS_URL)
    plain.mset({f"{prefix}a": "A", f"{prefix}b": "B"})
    c = RespClient.from_url(REDIS_URL)
    assert c is not None
    await c.mget([f"{prefix}a"])  # connected
    first = asyncio.ensure_future(c.mget([f"{prefix}a"]))
    second = asyncio.ensure_future(c.mget([f"{prefix}b"]))
    await asyncio.sleep(0)
    first.cancel()
    assert await second == [b"B"]
    assert await c.mget([f"{prefix}a", f"{prefix}b"]) == [b"A", b"B"]
    await c.aclose()
    plain.close()
