"""Which Redis `CREDITGATE_REDIS_URL` names, and clients for it (docs/operations.md, "Redis topologies").

Three forms:
  redis://[user:pass@]host:port[/db]                 one Redis (also rediss://, unix://): redis-py's own URL
  redis+cluster://[user:pass@]host:port[,host:port...][?options]
                                                     Redis Cluster; the nodes listed are where discovery
                                                     starts (one is enough, more survive one being down)
  redis+sentinel://[user:pass@]host:port[,host:port...]/service[/db][?options]
                                                     Sentinel: the sentinels, then the master's name
`rediss+cluster://` and `rediss+sentinel://` speak TLS (to the sentinels too). The user and password are
the data nodes'; sentinels that need a password take `?sentinel_password=...`.

`topology(client)` is what failover detection compares: the set of cluster primaries, or the master
address a Sentinel-managed pool last resolved. When it changes, state written to the old master may be
missing on the new one (replication is asynchronous), so the value cache drops every entry (an epoch bump).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs, unquote

from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff

Kind = Literal["single", "cluster", "sentinel"]
SCHEMES: dict[str, tuple[Kind, bool]] = {
    "redis+cluster": ("cluster", False), "rediss+cluster": ("cluster", True),
    "redis+sentinel": ("sentinel", False), "rediss+sentinel": ("sentinel", True),
}


@dataclass(frozen=True)
class RedisTarget:
    kind: Kind
    url: str  # as configured
    nodes: tuple[tuple[str, int], ...] = ()  # cluster startup nodes, or the sentinels
    service: str = ""  # the Sentinel master name
    db: int = 0
    username: str | None = None
    password: str | None = None
    ssl: bool = False
    sentinel_password: str | None = None

    @property
    def display(self) -> str:
        """The URL without credentials (logs, `cache flush`)."""
        return self.url.split("@")[-1] if "@" in self.url else self.url


def parse_redis_url(url: str) -> RedisTarget:
    """Raises ValueError with the expected form when a cluster or sentinel URL is malformed."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        return RedisTarget("single", url)
    kind, ssl = SCHEMES[scheme.lower()]
    form = ("redis+cluster://[user:pass@]host:port[,host:port...]" if kind == "cluster"
            else "redis+sentinel://[user:pass@]host:port[,host:port...]/service_name[/db]")
    rest, _, query = rest.partition("?")
    options = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    unknown = set(options) - {"sentinel_password"}
    if unknown or (kind == "cluster" and options):
        raise ValueError(f"CREDITGATE_REDIS_URL: unknown option(s) {sorted(set(options))}; expected {form}")
    netloc, _, path = rest.partition("/")
    username = password = None
    if "@" in netloc:
        userinfo, _, netloc = netloc.rpartition("@")
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    nodes = tuple(_node(part, form) for part in netloc.split(","))
    parts = [p for p in path.split("/") if p]
    service, db = "", 0
    if kind == "cluster" and parts:
        raise ValueError(f"CREDITGATE_REDIS_URL: a cluster has no database number or path; expected {form}")
    if kind == "sentinel":
        if not parts or len(parts) > 2:
            raise ValueError(f"CREDITGATE_REDIS_URL: the master's service name is missing; expected {form}")
        service = unquote(parts[0])
        if len(parts) == 2:
            if not parts[1].isdigit():
                raise ValueError(f"CREDITGATE_REDIS_URL: database {parts[1]!r} is not a number; expected {form}")
            db = int(parts[1])
    return RedisTarget(kind, url, nodes, service, db, username, password, ssl, options.get("sentinel_password"))


def _node(text: str, form: str) -> tuple[str, int]:
    host, colon, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"CREDITGATE_REDIS_URL: bad node {text!r} (host:port); expected {form}")
    return host, int(port)


class BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """The master's pool, bounded like the single-Redis one: a caller waits up to `timeout` for a connection."""


def connect(target: RedisTarget, *, connect_timeout: float, read_timeout: float, max_connections: int,
            pool_timeout: float, **single: Any) -> Redis | RedisCluster:
    """A client with short timeouts and no retries of its own (the caller decides what a failure means).
    `single` goes to the single-Redis pool only (its connection class)."""
    if target.kind == "cluster":
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in target.nodes], username=target.username,
            password=target.password, ssl=target.ssl, socket_connect_timeout=connect_timeout,
            socket_timeout=read_timeout, max_connections=max_connections, require_full_coverage=False,
            retry=Retry(NoBackoff(), 0))  # no retries, no topology refresh loop inside a call
    if target.kind == "sentinel":
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(target.nodes), socket_connect_timeout=connect_timeout, socket_timeout=read_timeout,
            sentinel_kwargs={"socket_connect_timeout": connect_timeout, "socket_timeout": read_timeout,
                             "password": target.sentinel_password, "ssl": target.ssl, "retry": Retry(NoBackoff(), 0)})
        client: Redis = sentinel.master_for(
            target.service, connection_pool_class=BlockingSentinelPool, db=target.db, username=target.username,
            password=target.password, ssl=target.ssl, max_connections=max_connections, timeout=pool_timeout,
            retry=Retry(NoBackoff(), 0))
        return client
    pool = BlockingConnectionPool.from_url(
        target.url, max_connections=max_connections, timeout=pool_timeout, socket_connect_timeout=connect_timeout,
        socket_timeout=read_timeout, retry=Retry(NoBackoff(), 0), **single)
    return Redis.from_pool(pool)


async def close(client: Redis | RedisCluster) -> None:
    """Closes the client, and for Sentinel the connections to the sentinels too."""
    await client.aclose()
    manager = getattr(getattr(client, "connection_pool", None), "sentinel_manager", None)
    if manager is not None:
        await manager.aclose()


def topology(client: Redis | RedisCluster) -> object:
    """What a failover changes: the cluster's primaries, or the master a Sentinel pool last connected to
    (None or empty until the first connection)."""
    if isinstance(client, RedisCluster):
        return frozenset(node.name for node in client.get_primaries())
    return getattr(client.connection_pool, "master_address", None)
