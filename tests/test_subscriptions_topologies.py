"""Live updates (docs/semantics.md §10) with the change signal on Redis Cluster and on Sentinel
(docs/operations.md, "Redis topologies"), on the real setups of tests/redis_topologies.py.

Two live servers share the topology (value cache and change signal) and a clock: writes go to one, sockets
listen on the other, so every update crossed the topology's pub/sub (sharded on a cluster). Tests of
tests/test_subscriptions.py run here as they are, then a failover mid-subscription: the master carrying
the signal dies, the socket gets RESYNC with the value as it stands, then updates flow again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio

from creditgate.adapters.cache import redis_signals
from creditgate.services.runtime import Runtime
from tests.conftest import GQL, Backend, Clock
from tests.ent_helpers import CREATE_ENT, events, grant, value
from tests.live_helpers import START, WAIT, LiveServer, Socket, api, live_server, socket_to, unit_writer, until_live
from tests.redis_topologies import Cluster, Node, SentinelSetup, wait_for

# Collected here too, with this module's `srv` (the listening server) and `gq` (the writing one):
# subscriptions to every entitlement and a burst of writes, over the topology's pub/sub. (test_every_cause
# moves the clock right after a write, whose signal may then arrive late: its causes are checked below.)
from tests.test_subscriptions import (  # noqa: F401
    NO_VALUE,
    metered_value,
    seed,
    test_a_burst_is_coalesced_never_lost,
    test_every_entitlement_of_the_subject,
)

Setup = Cluster | SentinelSetup


@pytest.fixture(scope="module", params=["cluster", "sentinel"])
def pair(request: pytest.FixtureRequest, backend: Backend) -> Iterator[tuple[Setup, LiveServer, LiveServer]]:
    """The topology, a writing server and a listening server on it (one clock)."""
    setup: Setup = request.getfixturevalue(f"redis_{request.param}")
    clock = Clock(START)
    with (live_server(backend, clock=clock, signals_redis=setup.url, ws_ping_interval=0.5) as writer,
          live_server(backend, clock=clock, signals_redis=setup.url, ws_ping_interval=0.5) as listener):
        yield setup, writer, listener


@pytest.fixture
def srv(pair: tuple[Setup, LiveServer, LiveServer], rt: Runtime, backend: Backend) -> Iterator[LiveServer]:
    """The listening server on an empty database (emptied by `rt`) and no entries on the topology, clock at START."""
    setup, _, listener = pair
    listener.clock.set(START)
    yield listener
    setup.cleanup(backend.redis_prefix)


@pytest_asyncio.fixture(loop_scope="session")
async def gq(pair: tuple[Setup, LiveServer, LiveServer], srv: LiveServer) -> AsyncIterator[GQL]:
    """GraphQL on the writing server."""
    async with api(pair[1].url) as client:
        yield GQL(client)


def subscribers(setup: Setup, channel: str) -> dict[int, int]:
    """Subscribers of `channel` per master port: sharded ones on a cluster, plain ones on Sentinel."""
    if isinstance(setup, Cluster):
        masters = [n for n in setup.nodes if n.port in setup.primaries()]
        command = ("PUBSUB", "SHARDNUMSUB", channel)
    else:
        masters = [setup.master()]
        command = ("PUBSUB", "NUMSUB", channel)
    out = {}
    for node in masters:
        with contextlib.closing(node.client()) as c:
            out[node.port] = int(c.execute_command(*command)[1])
    return out


async def test_the_signal_rides_the_topology(pair: tuple[Setup, LiveServer, LiveServer], srv: LiveServer,
                                             gq: GQL) -> None:
    """Both servers listen on the master that carries the channel (on a cluster: only the shard owning its
    slot, sharded pub/sub), and a write on one reaches a socket on the other."""
    setup, writer, _ = pair
    channel: str = srv.bus.channel
    assert writer.bus.channel == channel
    owner = setup.master_of(channel).port if isinstance(setup, Cluster) else setup.master().port

    def both_listen() -> bool:
        counts = subscribers(setup, channel)
        return counts == {port: 2 if port == owner else 0 for port in counts}
    await asyncio.to_thread(wait_for, both_listen, "both servers subscribed on the channel's master")
    await seed(gq)
    async with socket_to(srv.ws_url) as sock:
        op = await sock.subscribe("acme", ["ai"])
        assert (await sock.update(op))["value"]["usage"] == 30
        await events(gq, "acme", ("2024-01-15T12:00:00Z", 5))
        u = await sock.update(op)
        assert (u["cause"], u["value"]["usage"]) == ("INGEST", 35)


async def test_every_write_cause_crosses(srv: LiveServer, gq: GQL) -> None:
    """Each kind of write on one server reaches the socket on the other with its cause."""
    ent = await seed(gq)
    async with socket_to(srv.ws_url) as sock:
        op = await sock.subscribe("acme", ["ai", "sso"])
        first = await sock.updates(op, 2)
        assert {k: (v["cause"], v["value"]) for k, v in first.items()} == {
            "ai": ("CURRENT", metered_value(70, 30)), "sso": ("CURRENT", NO_VALUE)}

        async def next_update(feature: str, cause: str) -> dict[str, Any]:
            u = await sock.update(op)
            assert (u["featureKey"], u["cause"]) == (feature, cause), u
            return u

        await events(gq, "acme", ("2024-01-15T12:00:00Z", 5))
        assert (await next_update("ai", "INGEST"))["value"] == metered_value(65, 35)
        extra = await grant(gq, "acme", "ai", 10, "2024-01-15T12:00:00Z")
        assert (await next_update("ai", "GRANT"))["value"] == metered_value(75, 35)
        await gq.ok("mutation($id: ID!) { voidGrant(id: $id) { id } }", id=extra["id"])
        assert (await next_update("ai", "VOID"))["value"] == metered_value(65, 35)
        await gq.ok("mutation($s: String!, $e: ID!) { resetEntitlement(subjectKey: $s, entitlementId: $e) { id } }",
                    s="acme", e=ent["id"])
        assert (await next_update("ai", "RESET"))["value"]["usage"] == 5
        sso = (await gq.ok(CREATE_ENT, s="acme", input={"type": "BOOLEAN", "featureKey": "sso"}))["createEntitlement"]
        u = await next_update("sso", "ENTITLEMENT")
        assert (u["entitlementId"], u["value"]["hasAccess"]) == (sso["id"], True)
        await gq.ok("mutation($s: String!, $e: ID!) { deleteEntitlement(subjectKey: $s, entitlementId: $e) }",
                    s="acme", e=sso["id"])
        assert (await next_update("sso", "ENTITLEMENT"))["value"] == NO_VALUE
        assert sock.pending(op) == 0


# After a failover: the cluster's gossip and the listeners' retries take several seconds on a loaded 2-core
# machine (CI saw more than WAIT); still a bound, never a timing assertion.
FAILOVER_WAIT = 60.0


async def until_cause(sock: Socket, op: str, cause: str, skip: frozenset[str] = frozenset(),
                      wait: float = WAIT) -> dict[str, Any]:
    """The next update of `cause`, skipping updates of the causes in `skip` (any other is a failure)."""
    while True:
        u = await sock.update(op, wait)
        if u["cause"] == cause:
            return u
        assert u["cause"] in skip, u


async def test_failover_mid_subscription(pair: tuple[Setup, LiveServer, LiveServer], srv: LiveServer,
                                         gq: GQL) -> None:
    """The master carrying the change signal dies mid-subscription. Meanwhile answers are right (from the
    database); a write's signal is lost. Once the replica took over, the listening server subscribes again
    there: RESYNC with the value as it stands; then writes reach the socket as before, and both servers
    answer the latest value (nothing stale from the cache)."""
    setup, _, listener = pair
    channel: str = srv.bus.channel
    await seed(gq)
    async with socket_to(srv.ws_url) as sock:
        op = await sock.subscribe("acme", ["ai"])
        assert (await sock.update(op))["value"]["usage"] == 30
        await events(gq, "acme", ("2024-01-15T12:00:00Z", 5))
        assert (await until_cause(sock, op, "INGEST"))["value"]["usage"] == 35
        assert (await value(gq, "acme", "ai"))["usage"] == 35  # cached on the topology

        node: Node = setup.master_of(channel) if isinstance(setup, Cluster) else setup.master()
        node.kill()
        try:
            await events(gq, "acme", ("2024-01-15T12:00:00Z", 7))  # its signal cannot be published
            async with api(listener.url) as other:
                for g in (gq, GQL(other)):
                    assert (await value(g, "acme", "ai"))["usage"] == 42

            def promoted() -> bool:
                if isinstance(setup, SentinelSetup):
                    return setup.master() is not node
                return node.port not in setup.primaries()
            await asyncio.to_thread(wait_for, promoted, "the failover")
            resync = await until_cause(sock, op, "RESYNC", wait=FAILOVER_WAIT)  # subscribed again, on the new master
            assert resync["value"]["usage"] == 42

            # Other gaps of the failover may still be on their way (the writing server's failed publish, its
            # epoch bump after an invalidation that did not reach the new master, redis_cache.py): more RESYNCs,
            # which absorb a change that arrives while they are pending (docs/semantics.md §10.3). Every write's
            # value arrives; then live again.
            write = unit_writer(gq, 42.0)
            usage = (await until_live(sock, op, write, resync, FAILOVER_WAIT))["value"]["usage"]
            async with api(listener.url) as other:
                for g in (gq, GQL(other), gq):
                    assert (await value(g, "acme", "ai"))["usage"] == usage
        finally:
            await asyncio.to_thread(setup.restart, node)

    def both_listen() -> bool:  # the writing server subscribed again too
        owner = setup.master_of(channel) if isinstance(setup, Cluster) else setup.master()
        return owner is not node and subscribers(setup, channel).get(owner.port) == 2
    await asyncio.to_thread(wait_for, both_listen, "both servers subscribed on the new master")


async def test_classic_pub_sub_on_a_cluster_without_sharded(redis_cluster: Cluster, backend: Backend, rt: Runtime,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A cluster older than Redis 7.0 has no sharded pub/sub: the signal then rides classic PUBLISH/SUBSCRIBE
    (simulated: the version that has it is set beyond this cluster's)."""
    monkeypatch.setattr(redis_signals, "SHARDED_SINCE", (99, 0))
    clock = Clock(START)
    try:
        with (live_server(backend, clock=clock, signals_redis=redis_cluster.url) as writer,
              live_server(backend, clock=clock, signals_redis=redis_cluster.url) as listener):
            channel: str = listener.bus.channel
            owner = redis_cluster.master_of(channel)

            def both_listen() -> bool:
                with contextlib.closing(owner.client()) as c:
                    classic = int(c.execute_command("PUBSUB", "NUMSUB", channel)[1])
                return classic == 2  # (servers of the other tests may hold sharded subscriptions)
            await asyncio.to_thread(wait_for, both_listen, "both servers subscribed, not sharded")
            assert not writer.bus.sharded and not listener.bus.sharded
            async with api(writer.url) as client:
                gq = GQL(client)
                await seed(gq)
                async with socket_to(listener.ws_url) as sock:
                    op = await sock.subscribe("acme", ["ai"])
                    assert (await sock.update(op))["value"]["usage"] == 30
                    await events(gq, "acme", ("2024-01-15T12:00:00Z", 5))
                    u = await sock.update(op)
                    assert (u["cause"], u["value"]["usage"]) == ("INGEST", 35)
    finally:
        redis_cluster.cleanup(backend.redis_prefix)
