"""The value cache on Redis Cluster and Sentinel (docs/operations.md, "Redis topologies"), on the real
setups of tests/redis_topologies.py: URL forms, hash tags, round trips per node, lost state, and a master
killed mid-run (answers from the database meanwhile, nothing stale afterwards, also when the promoted
replica missed the last invalidation). The behaviour tests of tests/test_cache.py run on both setups too."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest

from creditgate.adapters.cache import ValueCache, open_cache
from creditgate.adapters.cache.redis_replicated import ClusterCache, WatchedCache, open_redis
from creditgate.adapters.cache.redis_topology import RedisTarget, parse_redis_url
from creditgate.adapters.http.rate_limit import Limiter
from creditgate.app import create_app
from creditgate.services.runtime import Runtime
from tests.conftest import GQL, Backend
from tests.ent_helpers import events, value
from tests.redis_topologies import Cluster, SentinelSetup, unique_prefix, wait_for
from tests.test_cache import INST, Mono, Trips, items, values
from tests.test_cache_outage import setup as seed


@pytest.fixture
def mono() -> Mono:
    return Mono()


# -- URL forms --


def test_url_forms() -> None:
    assert parse_redis_url("redis://127.0.0.1:6379/2") == RedisTarget("single", "redis://127.0.0.1:6379/2")
    assert parse_redis_url("unix:///run/redis.sock").kind == "single"
    c = parse_redis_url("redis+cluster://u%40x:p%3Aw@10.0.0.1:7000,[::1]:7001,redis-2:7002")
    assert (c.kind, c.nodes, c.username, c.password, c.ssl) == (
        "cluster", (("10.0.0.1", 7000), ("::1", 7001), ("redis-2", 7002)), "u@x", "p:w", False)
    assert c.display == "10.0.0.1:7000,[::1]:7001,redis-2:7002"
    assert parse_redis_url("rediss+cluster://h:1/").ssl
    s = parse_redis_url("rediss+sentinel://:secret@s1:26379,s2:26379/main/3?sentinel_password=sp")
    assert (s.kind, s.nodes, s.service, s.db, s.password, s.sentinel_password, s.ssl) == (
        "sentinel", (("s1", 26379), ("s2", 26379)), "main", 3, "secret", "sp", True)
    assert parse_redis_url("redis+sentinel://s1:26379/main").db == 0


@pytest.mark.parametrize(("url", "says"), [
    ("redis+cluster://h:1/0", "no database number"),
    ("redis+cluster://h", "bad node 'h'"),
    ("redis+cluster://h:1,:2", "bad node ':2'"),
    ("redis+cluster://h:99999", "bad node"),
    ("redis+cluster://h:1?sentinel_password=x", "unknown option"),
    ("redis+sentinel://s:1", "service name is missing"),
    ("redis+sentinel://s:1/main/x", "'x' is not a number"),
    ("redis+sentinel://s:1/main?db=2", "unknown option"),
])
def test_bad_urls_say_the_expected_form(url: str, says: str) -> None:
    with pytest.raises(ValueError, match=r"expected redis\+(cluster|sentinel)://") as info:
        parse_redis_url(url)
    assert says in str(info.value)


def test_cluster_prefix_without_braces(redis_cluster: Cluster) -> None:
    with pytest.raises(ValueError, match="no braces"):
        open_redis(redis_cluster.url, "cg{x}:", installation=INST)


# -- cluster: layout, round trips, lost state --


@pytest.fixture
def on_cluster(redis_cluster: Cluster) -> Iterator[tuple[Cluster, str]]:
    prefix = unique_prefix()
    yield redis_cluster, prefix
    redis_cluster.cleanup(prefix)


def cluster_cache(cluster: Cluster, prefix: str, **options: Any) -> ClusterCache:
    c = open_redis(cluster.url, prefix, installation=INST, **options)
    assert isinstance(c, ClusterCache)
    return c


async def test_cluster_keys_of_a_group_share_a_slot(on_cluster: tuple[Cluster, str]) -> None:
    cluster, prefix = on_cluster
    c = cluster_cache(cluster, prefix)
    groups = [f"s:subject-{i}" for i in range(40)] + ["s:a}b", "s:}", "s:{x}"]
    keys = [(g, k) for g in groups for k in ("now", "2024-01-01T00:00:00Z")]
    await c.put_many(items(await c.get_many(keys), keys))
    assert await values(c, keys) == [f"{g}/{k}".encode() for g, k in keys]
    with contextlib.closing(cluster.client()) as plain:
        slots = {g: {plain.keyslot(c._gen_key(g))} | {plain.keyslot(c._entry_key(g, k)) for k in ("now", "x")}
                 for g in groups}
        assert all(len(s) == 1 for s in slots.values()), slots
        assert len({next(iter(s)) for s in slots.values()}) > 3  # spread over the cluster
        assert plain.exists(c._gen_key("s:a}b")) == 1 and "#" in c._gen_key("s:a}b")
        assert len(list(plain.scan_iter(match=prefix + "*"))) == len(groups) * 3 + 1  # + the epoch
    await c.close()


async def test_cluster_one_round_trip_per_node(on_cluster: tuple[Cluster, str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    cluster, prefix = on_cluster
    c = cluster_cache(cluster, prefix)
    keys = [(f"s:{i}", f"k{i % 3}") for i in range(300)]  # 300 subjects: every master holds some
    await c.put_many(items(await c.get_many(keys), keys))  # connects, loads the script
    assert await values(c, keys) == [f"{g}/{k}".encode() for g, k in keys]
    trips = Trips(monkeypatch)
    hits = await c.get_many(keys)
    assert trips.take() == 3
    await c.put_many(items(hits, keys))
    assert trips.take() == 3
    await c.invalidate([f"s:{i}" for i in range(300)])
    assert trips.take() == 3
    assert await values(c, keys) == [None] * len(keys)
    await c.close()


async def test_cluster_ttls_and_lost_state(on_cluster: tuple[Cluster, str]) -> None:
    cluster, prefix = on_cluster
    c = cluster_cache(cluster, prefix, max_ttl=3600.0)
    keys = [("e1", "now"), ("e2", "now")]
    hits = await c.get_many(keys)
    await c.put_many([("e1", "now", b"v", hits[0].token, 0.25), ("e2", "now", b"p", hits[1].token, None)])
    before = await c.get_many(keys)
    with contextlib.closing(cluster.client()) as plain:
        assert 0 < plain.pttl(c._entry_key("e1", "now")) <= 250
        assert 3_500_000 < plain.pttl(c._entry_key("e2", "now")) <= 3_600_000
        plain.delete(c._gen_key("e2"))  # the generation is evicted
        assert await values(c, keys[1:]) == [None]
        plain.delete(c._epoch_key)  # the epoch is lost (its shard restarted empty)
    assert await values(c, keys) == [None, None]
    await c.put_many(items(before, keys))  # tokens from before the loss are refused
    assert await values(c, keys) == [None, None]
    await c.put_many(items(await c.get_many(keys), keys))  # this put creates the epoch again
    assert await values(c, keys) == [b"e1/now", b"e2/now"]
    await c.close()


async def test_cluster_put_after_a_bump_is_never_served(on_cluster: tuple[Cluster, str]) -> None:
    """The put script checks the generation only; the epoch it embeds is the token's, so a bump between
    the token and the put hides the entry anyway."""
    cluster, prefix = on_cluster
    a, b = cluster_cache(cluster, prefix), cluster_cache(cluster, prefix)
    keys = [("e1", "now")]
    await a.put_many(items(await a.get_many(keys), keys))
    stale = await a.get_many(keys)
    assert await b._bump()
    await a.put_many([("e1", "now", b"old", stale[0].token, 60.0)])
    assert await values(a, keys) == [None]
    await a.close()
    await b.close()


async def test_cluster_script_loaded_again_after_a_flush(on_cluster: tuple[Cluster, str]) -> None:
    cluster, prefix = on_cluster
    c = cluster_cache(cluster, prefix)
    keys = [(f"s:{i}", "now") for i in range(30)]
    await c.put_many(items(await c.get_many(keys), keys))
    with contextlib.closing(cluster.client()) as plain:
        for node in plain.get_primaries():  # like restarted or promoted nodes
            plain.execute_command("SCRIPT", "FLUSH", target_nodes=node)
    await c.invalidate([g for g, _ in keys])
    await c.put_many(items(await c.get_many(keys), keys))
    assert await values(c, keys) == [f"{g}/{k}".encode() for g, k in keys]
    await c.close()


async def test_cluster_flush_covers_every_shard(on_cluster: tuple[Cluster, str]) -> None:
    cluster, prefix = on_cluster
    a, b = cluster_cache(cluster, prefix), cluster_cache(cluster, prefix)
    keys = [(f"s:{i}", "now") for i in range(50)]
    await a.put_many(items(await a.get_many(keys), keys))
    assert await a.flush(batch=7) == 100  # 50 entries and 50 generations; the epoch stays, replaced
    assert await values(b, keys) == [None] * 50
    await a.close()
    await b.close()


# -- a master dies: answers from the database, nothing stale afterwards --


async def settle(cache: ValueCache, keys: list[tuple[str, str]], mono: Mono) -> None:
    """Reads until `cache` answers from Redis again (tokens, not dirty); the first key's entry, made
    stale by an invalidation, is never served meanwhile."""
    deadline = time.monotonic() + 30
    while True:
        hits = await cache.get_many(keys)
        assert hits[0].value is None
        if hits[0].token is not None and not getattr(cache, "dirty", False):
            return
        assert time.monotonic() < deadline, "the cache did not come back"
        mono.advance(5)  # past the back-off
        await asyncio.sleep(0.05)


async def test_cluster_failover_that_lost_an_invalidation_serves_nothing_stale(
        on_cluster: tuple[Cluster, str], mono: Mono) -> None:
    """A replica promoted after its master died may miss the last invalidation (replication is
    asynchronous). Simulated exactly: the generation the write replaced is put back on the new master.
    Every process sees the new primaries and drops every entry before serving again."""
    cluster, prefix = on_cluster
    a = cluster_cache(cluster, prefix, clock=mono, heal_interval=3600.0)
    b = cluster_cache(cluster, prefix, clock=mono, heal_interval=3600.0)  # another worker
    keys = [("s:acme", "now"), ("s:other", "now")]
    await a.put_many(items(await a.get_many(keys), keys))
    assert await values(b, keys) == [b"s:acme/now", b"s:other/now"]
    gen_key = a._gen_key("s:acme")
    with contextlib.closing(cluster.client()) as plain:
        old_generation = plain.get(gen_key)
    await a.invalidate(["s:acme"])  # acknowledged by the master ...
    node = cluster.master_of(gen_key)
    cluster.failover(node)  # ... which dies
    with contextlib.closing(cluster.client()) as plain:
        plain.set(gen_key, old_generation)  # ... before its replica got the invalidation
    try:
        for cache in (a, b):  # a refused connection and a back-off, then the new primaries
            await settle(cache, keys, mono)
        assert await values(b, keys) == [None, None]  # everything was dropped, nothing stale
        await b.put_many(items(await b.get_many(keys), keys))
        assert await values(a, keys) == [b"s:acme/now", b"s:other/now"]  # and caching again
    finally:
        cluster.restart(node)
    await a.close()
    await b.close()


async def test_sentinel_failover_that_lost_an_invalidation_serves_nothing_stale(
        redis_sentinel: SentinelSetup, mono: Mono) -> None:
    prefix = unique_prefix()
    a = open_redis(redis_sentinel.url, prefix, installation=INST, clock=mono, heal_interval=3600.0)
    b = open_redis(redis_sentinel.url, prefix, installation=INST, clock=mono, heal_interval=3600.0)
    assert isinstance(a, WatchedCache) and not isinstance(a, ClusterCache)
    keys = [("s:acme", "now"), ("s:other", "now")]
    await a.put_many(items(await a.get_many(keys), keys))
    assert await values(b, keys) == [b"s:acme/now", b"s:other/now"]
    gen_key = a._gen_key("s:acme")
    with contextlib.closing(redis_sentinel.master().client()) as plain:
        old_generation = plain.get(gen_key)
    await a.invalidate(["s:acme"])
    node = redis_sentinel.failover()
    with contextlib.closing(redis_sentinel.master().client()) as plain:
        plain.set(gen_key, old_generation)  # the promoted replica missed the invalidation
    try:
        for cache in (a, b):
            await settle(cache, keys, mono)
        assert await values(b, keys) == [None, None]
        await b.put_many(items(await b.get_many(keys), keys))
        assert await values(a, keys) == [b"s:acme/now", b"s:other/now"]
    finally:
        redis_sentinel.restart(node)
        redis_sentinel.cleanup(prefix)
    await a.close()
    await b.close()


@pytest.fixture
async def gql_topology(rt: Runtime, backend: Backend) -> AsyncIterator[Callable[[str], GQL]]:
    """GraphQL clients whose runtime caches on the Redis at the given URL (any form)."""
    opened: list[tuple[Runtime, httpx.AsyncClient]] = []

    def make(url: str) -> GQL:
        settings = rt.settings.model_copy(update={"redis_url": url})
        runtime = replace(rt, settings=settings, cache=open_cache(settings, backend.installation))
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(runtime=runtime)),
                                   base_url="http://test")
        opened.append((runtime, client))
        return GQL(client)

    yield make
    for runtime, client in opened:
        await client.aclose()
        if runtime.cache is not None:
            await runtime.cache.close()


@pytest.mark.parametrize("topology", ["cluster", "sentinel"])
async def test_master_killed_mid_run(topology: str, request: pytest.FixtureRequest, backend: Backend,
                                     gql_topology: Callable[[str], GQL]) -> None:
    """Through the API, two workers on one cluster or Sentinel setup: the master holding the subject's
    keys dies between a cached read and a write. Every answer is right: from the database while the
    master is gone, from the cache again after the failover, never the value from before the write."""
    setup: Cluster | SentinelSetup = request.getfixturevalue(f"redis_{topology}")
    writer, reader = gql_topology(setup.url), gql_topology(setup.url)
    await seed(writer)
    await events(writer, "c", ("2024-01-15T11:59:00Z", 3))
    for gql in (writer, reader, reader):
        assert (await value(gql, "c", "ai"))["balance"] == 7.0  # cached in Redis
    if isinstance(setup, Cluster):
        cache = open_redis(setup.url, backend.redis_prefix, installation=backend.installation)
        assert isinstance(cache, ClusterCache)
        node = setup.master_of(cache._gen_key("s:c"))
        await cache.close()
        node.kill()
    else:
        node = setup.master()
        node.kill()
    try:
        await events(writer, "c", ("2024-01-15T11:59:00Z", 2))  # the invalidation cannot reach Redis
        for gql in (writer, reader):
            assert (await value(gql, "c", "ai"))["balance"] == 5.0  # from the database

        def promoted() -> bool:
            if isinstance(setup, SentinelSetup):
                return setup.master() is not node
            return node.port not in setup.primaries()
        wait_for(promoted, "the failover")
        for _ in range(20):  # the new master holds the entry from before the write: never served
            for gql in (writer, reader):
                assert (await value(gql, "c", "ai"))["balance"] == 5.0
        await events(writer, "c", ("2024-01-15T11:59:30Z", 1))
        for gql in (reader, writer, reader):
            assert (await value(gql, "c", "ai"))["balance"] == 4.0
    finally:
        setup.restart(node)
        setup.cleanup(backend.redis_prefix)


@pytest.mark.parametrize("topology", ["cluster", "sentinel"])
async def test_rate_limit_buckets_on_the_topology(topology: str, request: pytest.FixtureRequest) -> None:
    """The per-token buckets (adapters/http/rate_limit.py) run their one-key script on the value cache's
    client: shared by two processes on a cluster or Sentinel, with keys under the namespace."""
    setup: Cluster | SentinelSetup = request.getfixturevalue(f"redis_{topology}")
    prefix = unique_prefix()
    a, b = open_redis(setup.url, prefix, installation=INST), open_redis(setup.url, prefix, installation=INST)
    try:
        la, lb = (Limiter(1.0, 3, cache.client, cache.namespace) for cache in (a, b))
        assert [await la.take("tok"), await lb.take("tok"), await la.take("tok")] == [0, 0, 0]
        assert await lb.take("tok") > 0  # the fourth request, on the other process: the burst is shared
        assert await la.take("other") == 0
        with contextlib.closing(setup.client() if isinstance(setup, Cluster) else setup.master().client()) as plain:
            assert plain.exists(a.namespace + "rl:tok") == 1
    finally:
        await a.close()
        await b.close()
        setup.cleanup(prefix)
