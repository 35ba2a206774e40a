"""Live updates across processes (docs/semantics.md §10): the change signal rides Redis pub/sub, so a write on
one server reaches a socket on another; a Redis outage ends in RESYNC, then updates flow again."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from creditgate.adapters.cache.redis_cache import RedisCache
from creditgate.services.runtime import Runtime
from tests.conftest import GQL, REDIS_URL, Backend, _redis_cleanup
from tests.ent_helpers import events, feature, meter, metered
from tests.live_helpers import (
    API_KEY,
    WAIT,
    OwnRedis,
    Socket,
    api,
    free_port,
    live_server,
    socket_to,
    unit_writer,
    until_live,
    until_usage,
)
from tests.test_subscriptions import seed

TOKENS = "query { entitlementValue(subjectKey: \"acme\", entitlementIdOrFeatureKey: \"ai\") { balance usage } }"


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    r = OwnRedis()
    r.start()
    try:
        yield r
    finally:
        r.stop()


async def until_cause(sock: Socket, op: str, cause: str, skip: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The next update of `cause`, skipping updates of the causes in `skip` (any other is a failure)."""
    while True:
        u = await sock.update(op)
        if u["cause"] == cause:
            return u
        assert u["cause"] in skip, u


async def test_redis_outage_resyncs_then_goes_live_again(backend: Backend, rt: Runtime, own_redis: OwnRedis) -> None:
    with live_server(backend, signals_redis=own_redis.url) as a, live_server(backend, signals_redis=own_redis.url) as b:
        async with api(a.url) as client:
            gq = GQL(client)
            await seed(gq)
            async with socket_to(b.ws_url) as sock:
                op = await sock.subscribe("acme", ["ai"])
                assert (await sock.update(op))["value"]["usage"] == 30
                await events(gq, "acme", ("2024-01-15T12:00:00Z", 5))  # written on a, seen on b
                assert (await until_cause(sock, op, "INGEST"))["value"]["usage"] == 35

                own_redis.stop()
                await events(gq, "acme", ("2024-01-15T12:00:00Z", 7))  # signal lost: Redis is down
                own_redis.start()
                resync = await until_cause(sock, op, "RESYNC")  # b reconnects: the value as it stands
                assert resync["value"]["usage"] == 42

                # The next write's value arrives, perhaps as RESYNC: a's cache may still back off after a
                # failure and skip this write's invalidation, so b reads its old entry for the write's signal
                # until a's epoch bump lands, which then resyncs every process (redis_cache.py). Then live again.
                write = unit_writer(gq, 42.0)
                await until_live(sock, op, write, await until_usage(sock, op, await write()))


class Mono:
    """A fake monotonic clock for the value cache's back-off."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


async def test_an_invalidation_that_did_not_land_ends_in_a_gap(own_redis: OwnRedis) -> None:
    """The writer's value cache could not hide a write's old entries while its change signal went out (the
    invalidation skipped during a back-off): the epoch bump that ends it is followed by the gap message, so
    every process resyncs (redis_cache.py, docs/semantics.md §10.3). An invalidation that only timed out
    reading its answer went out whole: its bump sends no gap."""
    clock = Mono()
    cache = RedisCache.from_url(own_redis.url, "cgtest:", installation="inst1", clock=clock, heal_interval=3600.0)
    listener = Redis.from_url(own_redis.url)
    pubsub = listener.pubsub()
    channel = cache.namespace + "changes"
    await pubsub.subscribe(channel)

    async def next_message() -> bytes:
        while True:
            m = await asyncio.wait_for(pubsub.get_message(ignore_subscribe_messages=True, timeout=WAIT), WAIT)
            if m is not None:
                return bytes(m["data"])
    try:
        keys = [("s:acme", "now")]
        own_redis.pause()
        await cache.get_many(keys)  # times out: backing off
        own_redis.resume()
        await cache.invalidate(["s:acme"])  # skipped (backing off): dirty, a gap is due
        assert cache.dirty
        clock.t += 5
        await cache.get_many(keys)  # the bump, then the gap
        assert not cache.dirty
        assert await next_message() == b""

        own_redis.pause()
        await cache.invalidate(["s:acme"])  # sent; no answer in time: dirty
        own_redis.resume()
        assert cache.dirty
        clock.t += 5
        await cache.get_many(keys)  # the bump alone
        assert not cache.dirty
        await listener.publish(channel, b"marker")
        assert await next_message() == b"marker"
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await listener.aclose()
        await cache.close()


def _serve(backend: Backend, tmp_path: Path, name: str) -> tuple[subprocess.Popen[bytes], str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CREDITGATE_DATABASE_URL": backend.database_url,
           "CREDITGATE_REDIS_URL": backend.redis_url or REDIS_URL, "CREDITGATE_REDIS_PREFIX": backend.redis_prefix,
           "CREDITGATE_API_KEYS": API_KEY, "CREDITGATE_TOKEN_SECRET": "serve-secret",
           "CREDITGATE_ACCESS_LOG": "false"}
    port = free_port()
    log = tmp_path / f"{name}.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "creditgate.cli", "serve", "--port", str(port)],
                                env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=sink)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, log.read_text()
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"{name} did not start: " + log.read_text())


async def test_two_serve_processes(backend: Backend, rt: Runtime, tmp_path: Path) -> None:
    procs = []
    try:
        writer, writer_url = _serve(backend, tmp_path, "writer")
        procs.append(writer)
        reader, reader_url = _serve(backend, tmp_path, "reader")
        procs.append(reader)
        async with api(writer_url) as client:
            gq = GQL(client)
            await meter(gq)
            await feature(gq, "ai")
            await metered(gq, "acme", "ai", interval="DAY")
            token = str((await gq.ok('mutation { createSubjectToken(subjectKey: "acme") { token } }'))
                        ["createSubjectToken"]["token"])
            now = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
            async with socket_to(reader_url.replace("http", "ws", 1) + "/graphql", token) as sock:
                op = await sock.subscribe("acme", ["ai"])
                assert (await sock.update(op))["value"]["usage"] == 0
                total = 0
                for amount in (3, 4, 1):  # each write on the writer process, each update from the reader
                    total += amount
                    await events(gq, "acme", (now, amount))
                    u = await until_cause(sock, op, "INGEST")
                    assert u["value"]["usage"] == total
                    assert (await gq.ok(TOKENS))["entitlementValue"]["usage"] == total
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        if backend.redis_url is None:
            _redis_cleanup(REDIS_URL, backend.redis_prefix)
