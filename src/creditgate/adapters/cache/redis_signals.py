"""The change signal between processes (services/changes.py: a SignalBus) over Redis pub/sub.

One channel per installation, `{ns}changes` in the value cache's namespace (redis_cache.namespace), so two
databases sharing a Redis never see each other's signals. Pub/sub is best effort; what may have been lost
becomes a gap:
- the listener's connection drops (Redis restarted, network): it reconnects every `retry` seconds, and once
  subscribed again reports a gap (subscriptions then re-send their values, cause RESYNC);
- a publish fails: once a publish works again (the next one, the listener's reconnect, or a retry every
  `retry` seconds) a gap message goes out first, so every process resyncs;
- a write's value-cache invalidation did not land: its signal went out, but another process may have read
  its old cached value for it; the writer's epoch bump that hides such entries is followed by a gap message
  (redis_cache.py).
The listener checks its connection every `health` seconds (a PING), so a silent loss is found too. Whatever
fails, the listener goes on retrying (redis-py's cluster errors are not RedisErrors: they count as a loss).

Topologies (redis_topology.py): on one Redis and on Sentinel, PUBLISH/SUBSCRIBE on the (current) master;
after a Sentinel failover the listener's connection drops (the old master died or was demoted) and it
subscribes again through the sentinels to the new master: a gap. On Redis Cluster, sharded pub/sub
(SPUBLISH/SSUBSCRIBE, Redis 7.0): the channel lives on the shard that owns its slot, and only that shard
carries its messages. The listener subscribes on that shard's master; when the slot moves (a failover,
a resharding) Redis ends the subscription (sunsubscribe) or the connection drops, and the listener
finds the new owner and subscribes again: a gap. Each attempt reads the slot map afresh, starting at the
URL's nodes and every node seen last time (a node listed in the URL may be the one that died). A cluster
older than 7.0 (the shard master's INFO says) has no sharded pub/sub: classic PUBLISH/SUBSCRIBE then,
which the cluster broadcasts to every node.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError, ResponseError

from creditgate.adapters.cache.redis_cache import namespace
from creditgate.adapters.cache.redis_topology import close, connect, parse_redis_url

GAP = b""  # the message that makes every process resync (services/changes.py)
# What a lost or refused connection raises. redis-py's cluster errors (no reachable startup node, nodes that
# disagree, a slot no node serves) are not RedisErrors: uncaught, one of them ended the listener for good.
FAILURES = (RedisError, RedisClusterException, OSError)
SHARDED_SINCE = (7, 0)  # the Redis version with SPUBLISH/SSUBSCRIBE

log = logging.getLogger("creditgate.changes")


class RedisSignals:
    def __init__(self, url: str, prefix: str, *, installation: str, retry: float = 0.5, health: float = 5.0,
                 timeout: float = 1.0) -> None:
        self.url = url
        self.target = parse_redis_url(url)
        self.sharded = self.target.kind == "cluster"  # until the listener saw the cluster's version
        self.channel = namespace(prefix, installation) + "changes"
        self.retry = retry
        self.health = health
        self.timeout = timeout
        self._known: tuple[tuple[str, int], ...] = ()  # a cluster's nodes, as the listener last saw them
        self._pub = self._client()
        self._owed = False  # a publish failed: a gap message is due
        self._task: asyncio.Task[None] | None = None
        self._repaying: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()  # the listener is subscribed (tests wait for it)

    def _client(self) -> Redis | RedisCluster:
        if self.target.kind == "single":
            return Redis.from_url(self.url, socket_connect_timeout=self.timeout, socket_timeout=self.timeout,
                                  retry=Retry(NoBackoff(), 0), socket_keepalive=True)
        target = self.target
        if self._known:  # discovery may start at any node seen last time, not only at the URL's (one may be dead)
            target = dataclasses.replace(target, nodes=tuple(dict.fromkeys((*target.nodes, *self._known))))
        return connect(target, connect_timeout=self.timeout, read_timeout=self.timeout, max_connections=4,
                       pool_timeout=self.timeout)

    async def ping(self) -> bool:
        """The publishing client answers (/readyz when the value cache is off)."""
        return bool(await self._pub.ping())

    async def _subscribe(self, client: Redis | RedisCluster) -> tuple[PubSub, Redis | None]:
        """A subscription to the channel, and the extra client it needs (a cluster's shard master)."""
        if isinstance(client, RedisCluster):
            await client.initialize()  # a fresh client: the slot map as the cluster has it now
            self._known = tuple((n.host, int(n.port)) for n in client.get_nodes())
            node = client.get_node_from_key(self.channel)
            if node is None:
                raise RedisConnectionError(f"no cluster node owns {self.channel}")
            shard = Redis(host=node.host, port=int(node.port), username=self.target.username,
                          password=self.target.password, ssl=self.target.ssl, socket_connect_timeout=self.timeout,
                          socket_timeout=self.timeout, retry=Retry(NoBackoff(), 0), socket_keepalive=True)
            self.sharded = await _has_sharded_pubsub(shard)
            pubsub = shard.pubsub()
            if self.sharded:
                await pubsub.ssubscribe(self.channel)
            else:  # any node would do: the cluster broadcasts classic messages
                await pubsub.subscribe(self.channel)
            return pubsub, shard
        pubsub = client.pubsub()
        await pubsub.subscribe(self.channel)
        return pubsub, None

    def start(self, deliver: Callable[[bytes], Awaitable[None]], gap: Callable[[], Awaitable[None]]) -> None:
        self._task = asyncio.create_task(self._listen(deliver, gap))

    async def publish(self, message: bytes) -> None:
        try:
            send = self._pub.spublish if self.sharded else self._pub.publish
            if self._owed and message != GAP:
                await send(self.channel, GAP)
            self._owed = False
            await send(self.channel, message)
        except FAILURES as exc:
            if not self._owed:
                log.warning("change signal not published (%s): every process resyncs once Redis answers", exc)
            self._owed = True
            if self._repaying is None or self._repaying.done():
                self._repaying = asyncio.create_task(self._repay())

    async def _repay(self) -> None:
        """After a failed publish, the gap message is sent as soon as Redis takes it, even when no other write
        comes and this process's listener never lost its own connection (it may already be on the new master)."""
        while self._owed:
            await asyncio.sleep(self.retry)
            await self.publish(GAP)

    async def _listen(self, deliver: Callable[[bytes], Awaitable[None]], gap: Callable[[], Awaitable[None]]) -> None:
        lost = False
        while True:
            client = self._client()
            pubsub: PubSub | None = None
            shard: Redis | None = None
            try:
                pubsub, shard = await self._subscribe(client)
                if lost:
                    log.info("change signals: listening again on %s", self.channel)
                    lost = False
                    await gap()
                if self._owed:
                    await self.publish(GAP)  # a gap message, then nothing more is owed
                self.connected.set()
                await self._read(pubsub, deliver)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the listener never ends: it retries, and reports a gap once back
                self.connected.clear()
                if not lost and isinstance(exc, FAILURES):
                    log.warning("change signals: lost the Redis connection (%s); retrying", exc)
                elif not lost:
                    log.exception("change signals: the listener failed; retrying")
                lost = True
                await asyncio.sleep(self.retry)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()  # type: ignore[no-untyped-call]
                for c in (shard, client):
                    if c is not None:
                        with contextlib.suppress(Exception):
                            await close(c)

    async def _read(self, pubsub: PubSub, deliver: Callable[[bytes], Awaitable[None]]) -> None:
        idle = 0.0
        while True:
            message = await pubsub.get_message(timeout=1.0)
            if message is None:
                idle += 1.0
                if idle >= self.health:  # a PING: a silent loss raises here (socket timeout)
                    idle = 0.0
                    await pubsub.ping()
                continue
            idle = 0.0
            kind = message.get("type")
            if kind in ("sunsubscribe", "unsubscribe"):  # the shard gave the slot away (failover, resharding)
                raise RedisConnectionError(f"subscription to {self.channel} ended by the server")
            if kind in ("message", "smessage"):
                data = message["data"]
                await deliver(data if isinstance(data, bytes) else str(data).encode())

    async def close(self) -> None:
        for task in (self._task, self._repaying):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        with contextlib.suppress(Exception):
            await close(self._pub)


async def _has_sharded_pubsub(node: Redis) -> bool:
    """The node's Redis has SPUBLISH/SSUBSCRIBE (7.0 or later); True when INFO is not allowed (ACLs)."""
    try:
        version = str((await node.info("server")).get("redis_version", ""))
    except ResponseError:
        return True
    try:
        return tuple(int(part) for part in version.split(".")[:2]) >= SHARDED_SINCE
    except ValueError:
        return True
