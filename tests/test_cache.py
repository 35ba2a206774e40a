"""The value cache (docs/semantics.md §8): the same behaviour tests on the in-process cache and on Redis,
then Redis failure handling against a private redis-server that the tests stop and resume."""

from __future__ import annotations

import logging
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
import redis
from redis.asyncio.connection import Connection

from creditgate.adapters.cache import Hit, ValueCache, open_cache, resp
from creditgate.adapters.cache.memory import MemoryCache
from creditgate.adapters.cache.redis_cache import RedisCache
from creditgate.adapters.cache.redis_replicated import ClusterCache, open_redis
from creditgate.config import Settings
from tests.conftest import REDIS_URL, REQUIRE, _redis_cleanup, _unavailable
from tests.live_helpers import OwnRedis
from tests.redis_topologies import Cluster, SentinelSetup, unique_prefix

INST = "0123456789abcdef0123456789abcdef"  # an installation id, as migration 0002 makes them


class Mono:
    """A fake monotonic clock."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def mono() -> Mono:
    return Mono()


def _redis_or_skip(url: str) -> None:
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        _unavailable("Redis", exc)


@pytest.fixture
def shared_redis() -> Iterator[str]:
    """A unique key prefix on the test Redis, deleted afterwards."""
    _redis_or_skip(REDIS_URL)
    prefix = f"cgtest:{uuid.uuid4().hex[:12]}:"
    yield prefix
    _redis_cleanup(REDIS_URL, prefix)


@pytest_asyncio.fixture(loop_scope="session", params=["memory", "redis", "cluster", "sentinel"])
async def cache(request: pytest.FixtureRequest, mono: Mono) -> AsyncIterator[ValueCache]:
    """The behaviour tests run on every implementation: in-process, one Redis, a real Redis Cluster
    (3 masters, 3 replicas) and a Sentinel setup (tests/redis_topologies.py)."""
    if request.param == "memory":
        yield MemoryCache(clock=mono)
        return
    if request.param == "redis":
        prefix: str = request.getfixturevalue("shared_redis")
        c: RedisCache = RedisCache.from_url(REDIS_URL, prefix, installation=INST, clock=mono)
        yield c
        await c.close()
        return
    setup: Cluster | SentinelSetup = request.getfixturevalue(f"redis_{request.param}")
    prefix = unique_prefix()
    c = open_redis(setup.url, prefix, installation=INST, clock=mono)
    assert isinstance(c, ClusterCache) == (request.param == "cluster")
    yield c
    await c.close()
    setup.cleanup(prefix)


def items(hits: list[Hit], keys: list[tuple[str, str]], ttl: float | None = 60.0) -> list[Any]:
    return [(g, k, f"{g}/{k}".encode(), h.token, ttl) for (g, k), h in zip(keys, hits, strict=True)]


async def values(c: ValueCache, keys: list[tuple[str, str]]) -> list[bytes | None]:
    return [h.value for h in await c.get_many(keys)]


# -- behaviour, both implementations --


async def test_miss_then_hit(cache: ValueCache) -> None:
    keys = [("e1", "now"), ("e1", "2024-01-01T00:00:00Z"), ("e2", "now")]
    assert await cache.get_many([]) == []
    hits = await cache.get_many(keys)
    assert [h.value for h in hits] == [None, None, None]
    await cache.put_many(items(hits, keys))
    assert await values(cache, keys) == [b"e1/now", b"e1/2024-01-01T00:00:00Z", b"e2/now"]
    assert await values(cache, [("e1", "other"), ("e3", "now")]) == [None, None]
    # Same key twice in one read; binary values survive.
    hits = await cache.get_many([("e4", "k")])
    await cache.put_many([("e4", "k", b"\x00\xff\n", hits[0].token, None)])
    assert await values(cache, [("e4", "k"), ("e4", "k")]) == [b"\x00\xff\n", b"\x00\xff\n"]


async def test_overwrite_and_several_items_of_a_new_group(cache: ValueCache) -> None:
    keys = [("g", "a"), ("g", "b"), ("g", "c")]
    hits = await cache.get_many(keys)
    await cache.put_many(items(hits, keys))  # one call creates the group's state for all three
    assert await values(cache, keys) == [b"g/a", b"g/b", b"g/c"]
    hits = await cache.get_many([("g", "a")])
    await cache.put_many([("g", "a", b"new", hits[0].token, 60.0)])
    assert await values(cache, [("g", "a")]) == [b"new"]


async def test_invalidate_hides_the_group_only(cache: ValueCache) -> None:
    keys = [("e1", "now"), ("e1", "t1"), ("e2", "now"), ("e2", "t1")]
    await cache.put_many(items(await cache.get_many(keys), keys))
    await cache.invalidate(["e1"])
    assert await values(cache, keys) == [None, None, b"e2/now", b"e2/t1"]
    await cache.invalidate([])
    await cache.invalidate(["e2", "never-cached"])
    assert await values(cache, keys) == [None, None, None, None]


async def test_put_with_a_token_read_before_invalidate_is_dropped(cache: ValueCache) -> None:
    """A read computed before a write stores its result after the write's invalidation."""
    keys = [("e1", "now"), ("e2", "now")]
    stale = await cache.get_many(keys)  # the read takes its tokens ...
    await cache.invalidate(["e1"])  # ... the write commits and invalidates ...
    await cache.put_many(items(stale, keys))  # ... the read stores what it computed
    assert await values(cache, keys) == [None, b"e2/now"]
    fresh = await cache.get_many(keys[:1])
    await cache.put_many(items(fresh, keys[:1]))
    assert await values(cache, keys[:1]) == [b"e1/now"]


async def test_stale_token_of_a_cached_group(cache: ValueCache) -> None:
    keys = [("e1", "now")]
    await cache.put_many(items(await cache.get_many(keys), keys))
    stale = await cache.get_many(keys)
    assert stale[0].value == b"e1/now"
    await cache.invalidate(["e1"])
    await cache.invalidate(["e1"])
    await cache.put_many([("e1", "now", b"old", stale[0].token, 60.0)])
    assert await values(cache, keys) == [None]


async def test_expired_ttl_is_not_stored(cache: ValueCache) -> None:
    keys = [("e1", "now"), ("e1", "later")]
    hits = await cache.get_many(keys)
    await cache.put_many([("e1", "now", b"x", hits[0].token, 0.0), ("e1", "later", b"y", hits[1].token, -1.0)])
    assert await values(cache, keys) == [None, None]


# -- TTLs, per implementation --


async def test_memory_ttl_expires_on_the_clock(mono: Mono) -> None:
    c = MemoryCache(clock=mono)
    keys = [("e1", "now"), ("e1", "past")]
    hits = await c.get_many(keys)
    await c.put_many([("e1", "now", b"v", hits[0].token, 10.0), ("e1", "past", b"p", hits[1].token, None)])
    mono.advance(9.999)
    assert await values(c, keys) == [b"v", b"p"]
    mono.advance(0.001)
    assert await values(c, keys) == [None, b"p"]
    mono.advance(10**9)
    assert await values(c, keys) == [None, b"p"]


async def test_memory_is_bounded_lru(mono: Mono) -> None:
    c = MemoryCache(max_entries=3, clock=mono)
    for k in "abc":
        await c.put_many(items(await c.get_many([("g", k)]), [("g", k)]))
    assert await values(c, [("g", "a")]) == [b"g/a"]  # a becomes the most recent
    await c.put_many(items(await c.get_many([("h", "d")]), [("h", "d")]))
    assert len(c) == 3
    assert await values(c, [("g", "a"), ("g", "b"), ("g", "c"), ("h", "d")]) == [b"g/a", None, b"g/c", b"h/d"]
    await c.invalidate(["g"])
    assert len(c) == 1


async def test_redis_ttl_is_set_as_px(shared_redis: str) -> None:
    c = RedisCache.from_url(REDIS_URL, shared_redis, installation=INST, max_ttl=3600.0)
    keys = [("e1", "now"), ("e1", "past"), ("e1", "long")]
    hits = await c.get_many(keys)
    await c.put_many([("e1", "now", b"v", hits[0].token, 0.25), ("e1", "past", b"p", hits[1].token, None),
                      ("e1", "long", b"l", hits[2].token, 10**7)])
    plain = redis.Redis.from_url(REDIS_URL)
    now_ms = plain.pttl(f"{c.namespace}v:e1:now")
    past_ms = plain.pttl(f"{c.namespace}v:e1:past")
    long_ms = plain.pttl(f"{c.namespace}v:e1:long")
    plain.close()
    assert 0 < now_ms <= 250
    assert 3_500_000 < past_ms <= 3_600_000  # "no expiry" is capped by max_ttl
    assert 3_500_000 < long_ms <= 3_600_000
    await c.close()


async def test_redis_without_ttl_cap(shared_redis: str) -> None:
    c = RedisCache.from_url(REDIS_URL, shared_redis, installation=INST, max_ttl=None)
    hits = await c.get_many([("e1", "past")])
    await c.put_many([("e1", "past", b"p", hits[0].token, None)])
    plain = redis.Redis.from_url(REDIS_URL)
    assert plain.pttl(f"{c.namespace}v:e1:past") == -1
    plain.close()
    assert await values(c, [("e1", "past")]) == [b"p"]
    await c.close()


# -- Redis: round trips, workers, lost state --


class Trips:
    """Counts writes to Redis sockets: a pipeline or a command is one write, then its replies."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        original = Connection.send_packed_command

        async def counting(conn: Connection, command: Any, check_health: bool = True) -> None:
            self.count += 1
            await original(conn, command, check_health)

        monkeypatch.setattr(Connection, "send_packed_command", counting)
        sent = resp._Protocol.send  # get_many's MGET goes over the lean connection (adapters/cache/resp.py)

        def counting_lean(proto: resp._Protocol, packed: bytes) -> Any:
            self.count += 1
            return sent(proto, packed)

        monkeypatch.setattr(resp._Protocol, "send", counting_lean)

    def take(self) -> int:
        n, self.count = self.count, 0
        return n


async def test_redis_one_round_trip_per_call(shared_redis: str, monkeypatch: pytest.MonkeyPatch) -> None:
    c = RedisCache.from_url(REDIS_URL, shared_redis, installation=INST)
    keys = [(f"e{i % 7}", f"k{i}") for i in range(200)]
    await c.put_many(items(await c.get_many(keys[:1]), keys[:1]))  # connects and loads the script
    trips = Trips(monkeypatch)
    hits = await c.get_many(keys)
    assert trips.take() == 1
    await c.put_many(items(hits, keys))
    assert trips.take() == 1
    assert await values(c, keys) == [f"{g}/{k}".encode() for g, k in keys]
    assert trips.take() == 1
    await c.invalidate([f"e{i}" for i in range(7)])
    assert trips.take() == 1
    await c.close()


async def test_redis_workers_share_invalidations(shared_redis: str) -> None:
    a = RedisCache.from_url(REDIS_URL, shared_redis, installation=INST)
    b = RedisCache.from_url(REDIS_URL, shared_redis, installation=INST)
    keys = [("e1", "now")]
    stale_b = await b.get_many(keys)
    await a.put_many(items(await a.get_many(keys), keys))
    assert await values(b, keys) == [b"e1/now"]
    await a.invalidate(["e1"])
    assert await values(b, keys) == [None]
    await b.put_many(items(stale_b, keys))
    assert await values(a, keys) == [None]
    await a.close()
    await b.close()


async def test_redis_lost_state_never_revives_entries(shared_redis: str) -> None:
    """Generations and the epoch are nonces: losing them (restart, eviction) only causes misses."""
    c = RedisCache.from_url(REDIS_URL, shared_redis, installation=INST)
    keys = [("e1", "now"), ("e2", "now")]
    await c.invalidate(["e1"])
    await c.put_many(items(await c.get_many(keys), keys))
    before = await c.get_many(keys)
    plain = redis.Redis.from_url(REDIS_URL)
    plain.delete(f"{c.namespace}g:e1")  # the generation is evicted
    assert await values(c, keys) == [None, b"e2/now"]
    plain.delete(f"{c.namespace}epoch")  # the epoch is lost
    assert await values(c, keys) == [None, None]
    await c.put_many(items(before, keys))  # tokens from before the loss are refused
    assert await values(c, keys) == [None, None]
    plain.close()
    await c.put_many(items(await c.get_many(keys), keys))
    assert await values(c, keys) == [b"e1/now", b"e2/now"]
    await c.close()


def test_open_cache_follows_settings() -> None:
    assert open_cache(Settings(value_cache=False), INST) is None
    assert open_cache(Settings(value_cache=False, redis_url=REDIS_URL), INST) is None
    assert isinstance(open_cache(Settings(redis_url=None), INST), MemoryCache)
    c = open_cache(Settings(redis_url=REDIS_URL, redis_prefix="cgx:"), INST)
    assert isinstance(c, RedisCache) and c.prefix == "cgx:" and c.namespace == f"cgx:{INST}:"


# -- Redis down --


def cache_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "creditgate.cache" and r.levelno >= logging.WARNING]


async def test_redis_refused_gives_misses_and_logs_once(caplog: pytest.LogCaptureFixture, mono: Mono) -> None:
    caplog.set_level(logging.INFO, logger="creditgate.cache")
    c = RedisCache.from_url("redis://127.0.0.1:1/0", "cgtest:", installation=INST, clock=mono, heal_interval=3600.0)
    keys = [("e1", "now"), ("e2", "now")]
    for _ in range(3):
        hits = await c.get_many(keys)
        assert [h.value for h in hits] == [None, None]
        await c.put_many(items(hits, keys))
        await c.invalidate(["e1"])
        mono.advance(5)  # past the back-off: every call tries again
    assert len(cache_warnings(caplog)) == 1
    assert "unavailable" in cache_warnings(caplog)[0]
    assert c.dirty
    await c.close()


class Server(OwnRedis):
    """A private redis-server on a free loopback port (tests/live_helpers.py), started."""

    def __init__(self) -> None:
        if shutil.which("redis-server") is None:
            if REQUIRE:
                pytest.fail("redis-server not found and CREDITGATE_REQUIRE_SERVICES=1")
            pytest.skip("redis-server not found")
        super().__init__()
        self.start()

    def kill(self) -> None:
        self.stop()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    if s.proc is not None and s.proc.poll() is None:
        s.resume()
        s.kill()


async def test_redis_killed_and_restarted(server: Server, mono: Mono, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="creditgate.cache")
    c = RedisCache.from_url(server.url, "cg:", installation=INST, clock=mono, heal_interval=3600.0)
    keys = [("e1", "now"), ("e2", "now")]
    await c.put_many(items(await c.get_many(keys), keys))
    before = await c.get_many(keys)
    assert [h.value for h in before] == [b"e1/now", b"e2/now"]
    server.kill()
    await c.invalidate(["e1"])  # fails: the process is now dirty
    assert c.dirty
    assert await values(c, keys) == [None, None]
    await c.put_many(items(before, keys))
    server.start()  # --save "": the data is gone
    assert await values(c, keys) == [None, None]  # still backing off
    mono.advance(5)
    hits = await c.get_many(keys)  # bumps the epoch, then reads
    assert not c.dirty and [h.value for h in hits] == [None, None]
    await c.put_many(items(before, keys))  # a token from before the outage
    assert await values(c, keys) == [None, None]
    await c.put_many(items(hits, keys))
    assert await values(c, keys) == [b"e1/now", b"e2/now"]
    messages = [r.getMessage() for r in caplog.records if r.name == "creditgate.cache"]
    assert len(cache_warnings(caplog)) == 1
    assert sum("is back" in m for m in messages) == 1, messages
    await c.close()


async def test_redis_paused_invalidation_is_not_lost(server: Server, mono: Mono,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Redis keeps its data across the outage; an invalidate skipped while it was unreachable is
    made good by an epoch bump before this process serves anything again."""
    a = RedisCache.from_url(server.url, "cg:", installation=INST, clock=mono, heal_interval=3600.0)
    b = RedisCache.from_url(server.url, "cg:", installation=INST, clock=mono, heal_interval=3600.0)  # another worker
    keys = [("e1", "now"), ("e2", "now")]
    await a.put_many(items(await a.get_many(keys), keys))
    assert await values(b, keys) == [b"e1/now", b"e2/now"]
    server.pause()
    trips = Trips(monkeypatch)
    assert await values(a, keys) == [None, None]  # times out after 0.5 s ...
    assert trips.take() == 1  # ... and is not retried
    await a.invalidate(["e1"])  # backing off: not sent, remembered
    assert trips.take() == 0 and a.dirty
    server.resume()
    # The documented window: until the dirty process bumps, another worker still sees the entry.
    assert await values(b, keys) == [b"e1/now", b"e2/now"]
    assert await values(a, keys) == [None, None]  # still backing off: misses
    mono.advance(5)
    assert await values(a, keys) == [None, None]  # bumps the epoch first (same pipeline as the read)
    assert not a.dirty
    assert await values(b, keys) == [None, None]
    await a.close()
    await b.close()


async def test_redis_paused_during_invalidate(server: Server, mono: Mono, monkeypatch: pytest.MonkeyPatch) -> None:
    """An invalidate that times out (it may or may not have been applied) makes the process dirty."""
    a = RedisCache.from_url(server.url, "cg:", installation=INST, clock=mono, heal_interval=3600.0)
    b = RedisCache.from_url(server.url, "cg:", installation=INST, clock=mono, heal_interval=3600.0)
    keys = [("e1", "now"), ("e2", "now")]
    hits = await a.get_many(keys)
    await a.put_many(items(hits, keys))
    server.pause()
    trips = Trips(monkeypatch)
    await a.invalidate(["e1"])  # times out after 0.5 s ...
    assert trips.take() == 1 and a.dirty  # ... and is not retried
    server.resume()
    mono.advance(5)
    await a.put_many(items(hits, keys))  # dirty: bumps instead of storing
    assert not a.dirty
    assert await values(b, keys) == [None, None]
    await a.close()
    await b.close()


async def test_redis_paused_healed_in_background(server: Server) -> None:
    """The dirty process bumps the epoch by itself once Redis answers, without any request."""
    a = RedisCache.from_url(server.url, "cg:", installation=INST, heal_interval=0.01)
    b = RedisCache.from_url(server.url, "cg:", installation=INST)
    keys = [("e1", "now")]
    await a.put_many(items(await a.get_many(keys), keys))
    server.pause()
    await a.invalidate(["e1"])
    assert a.dirty
    server.resume()
    await a.wait_healed()
    assert not a.dirty
    assert await values(b, keys) == [None]
    await a.close()
    await b.close()


async def test_close_bumps_when_dirty(server: Server, mono: Mono) -> None:
    a = RedisCache.from_url(server.url, "cg:", installation=INST, clock=mono, heal_interval=3600.0)
    b = RedisCache.from_url(server.url, "cg:", installation=INST, clock=mono)
    keys = [("e1", "now")]
    await a.put_many(items(await a.get_many(keys), keys))
    server.pause()
    await a.invalidate(["e1"])
    server.resume()
    await a.close()
    assert await values(b, keys) == [None]
    await b.close()



def test_hiredis_packing_matches_redis_py() -> None:
    from creditgate.adapters.cache.redis_cache import HiredisConnection

    fast, plain = HiredisConnection(), Connection()
    for args in [("MGET", "a", b"b\x00\xff", "é"), ("CLIENT SETINFO", "LIB-NAME", "x"), (b"SCRIPT LOAD", "return 1"),
                 ("SET", "k", b"v", "PX", 1500), ("EVALSHA", "abc", 0)]:
        assert b"".join(fast.pack_command(*args)) == b"".join(plain.pack_command(*args))
