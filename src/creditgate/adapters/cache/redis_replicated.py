"""The value cache on Redis Cluster and on Sentinel (docs/operations.md, "Redis topologies").

Same entries, tokens and failure handling as redis_cache.RedisCache; what differs:

Cluster. A group's keys share a hash tag, so its generation and its entries sit in one slot:
  {ns}epoch                 the epoch, one key on one shard
  {ns}{<group>}g            the group's generation
  {ns}{<group>}v:{key}      an entry = generation + epoch + value
(a group containing "}" is tagged by its SHA-256 instead). A read is redis-py's mget_nonatomic: the
keys grouped by slot, one MGET per slot, all MGETs of one node in one pipeline, so one round trip per
node. A put is one pipeline of EVALSHAs, one per group (its generation and entries: a legal one-slot
script) and checks the generation only; the epoch a put embeds is the one its token read, and a read
serves an entry only when that equals the current epoch, so a bump between token and put still hides
it. A token read with no epoch at all (a cold or lost epoch) first creates it (SET NX GET): only the
caller that creates it embeds it, others skip their put. An invalidation is mset_nonatomic.

Failover (both). Replication is asynchronous: a replica promoted after its master died may miss the
latest generation or epoch, and entries it holds could look valid again. So whenever the topology
changes (another set of cluster primaries, another Sentinel master; redis_topology.topology) the
process discards what that call read and becomes dirty: it bumps the epoch before it serves anything
again (RedisCache: a dirty process serves misses until a bump lands). Every process notices on its own
first call after the change, since its old connections or slot map fail or are redirected. While a
master is down, calls that touch it fail like a single Redis going down: misses, answers from the
database, failed invalidations make the process dirty. An invalidation is tried even while the process
backs off after a failure (reads are not): the master may be back, or promoted, for other processes
already, and an invalidation skipped there would let them serve the old entry to a subscription woken
by the same write.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from redis.asyncio import RedisCluster
from redis.exceptions import NoScriptError

from creditgate import metrics
from creditgate.adapters.cache.base import Hit, PutItem
from creditgate.adapters.cache.redis_cache import ERRORS, NONCE, RedisCache, Token, nonce
from creditgate.adapters.cache.redis_topology import close, connect, parse_redis_url, topology

log = logging.getLogger("creditgate.cache")

# One group: KEYS generation, then its entries. ARGV fresh generation, then per entry: token generation,
# epoch to embed, value, ttl ms (0: none). The generation is read once; created when absent and the
# token saw it absent (possibly by an earlier entry of this call).
GROUP_PUT_SCRIPT = """
local v = redis.call('GET', KEYS[1])
local stored = 0
for i = 2, #KEYS do
  local b = 2 + 4 * (i - 2)
  local token = ARGV[b]
  local g = false
  if not v then
    if token == '' then
      redis.call('SET', KEYS[1], ARGV[1])
      v = ARGV[1]
      g = v
    end
  elseif v == token or (token == '' and v == ARGV[1]) then
    g = v
  end
  if g then
    local ms = tonumber(ARGV[b + 3])
    if ms > 0 then
      redis.call('SET', KEYS[i], g .. ARGV[b + 1] .. ARGV[b + 2], 'PX', ms)
    else
      redis.call('SET', KEYS[i], g .. ARGV[b + 1] .. ARGV[b + 2])
    end
    stored = stored + 1
  end
end
return stored
"""
GROUP_PUT_SHA = hashlib.sha1(GROUP_PUT_SCRIPT.encode()).hexdigest()


class WatchedCache(RedisCache):
    """A RedisCache that drops every entry (an epoch bump) when the Redis topology changes (failover)."""

    def __init__(self, client: Any, prefix: str, **options: Any) -> None:
        super().__init__(client, prefix, **options)
        self._topology: object = topology(client)

    def _moved(self) -> bool:
        """True (and the process is dirty) when the primaries changed since the last call."""
        now = topology(self.client)
        if now == self._topology:
            return False
        before, self._topology = self._topology, now
        if not before:  # the first connection
            return False
        log.warning("value cache: Redis failover seen (%s -> %s); every entry is dropped", before, now)
        metrics.cache_errors.inc()
        self._mark_dirty()
        return True

    async def close(self) -> None:
        await super().close()
        await close(self.client)  # the sentinels' connections (closing the client twice is harmless)

    async def get_many(self, keys: Sequence[tuple[str, str]]) -> list[Hit]:
        hits = await super().get_many(keys)
        if self._moved():  # what this call read may come from a promoted replica that missed writes
            return [Hit(None, None) for _ in keys]
        return hits

    async def put_many(self, items: Sequence[PutItem]) -> None:
        await super().put_many(items)
        self._moved()

    async def invalidate(self, groups: Iterable[str]) -> None:
        groups = list(groups)
        if groups:
            self._try_now()
        await super().invalidate(groups)
        self._moved()

    def _try_now(self) -> None:
        """An invalidation is attempted even while backing off. Skipped, it would leave other processes,
        which may already talk to the promoted master, an old entry to serve until this process's bump
        lands; a subscription woken by the write's change signal would read it and stay on the old value
        (docs/semantics.md §8.4, §10.3). A failed attempt backs off again (reads keep going to the
        database) and leaves the process dirty, as before."""
        self._retry_at = min(self._retry_at, self._clock())


class ClusterCache(WatchedCache):
    """The value cache on Redis Cluster: keys hash-tagged by group (see the module docstring)."""

    def __init__(self, client: RedisCluster, prefix: str, **options: Any) -> None:
        if "{" in prefix or "}" in prefix:
            raise ValueError(f"CREDITGATE_REDIS_PREFIX {prefix!r}: no braces with Redis Cluster (they are hash tags)")
        super().__init__(client, prefix, **options)
        self.cluster = client

    def _failed(self, exc: BaseException) -> None:
        super()._failed(exc)
        # Pipelines (every multi-slot call) do not refresh the slot map after a connection error when
        # retries are off; the next call must ask the cluster again, as a single command would.
        self.cluster._initialize = True

    def _tag(self, group: str) -> str:
        return group if "}" not in group else "#" + hashlib.sha256(group.encode()).hexdigest()

    def _gen_key(self, group: str) -> str:
        return f"{self.namespace}{{{self._tag(group)}}}g"

    def _entry_key(self, group: str, key: str) -> str:
        return f"{self.namespace}{{{self._tag(group)}}}v:{key}"

    async def get_many(self, keys: Sequence[tuple[str, str]]) -> list[Hit]:
        if not keys:
            return []
        misses = [Hit(None, None) for _ in keys]
        if not self._reachable():
            metrics.count_cache(0, len(keys))
            return misses
        groups = list(dict.fromkeys(group for group, _ in keys))
        names = [self._epoch_key, *(self._gen_key(g) for g in groups), *(self._entry_key(g, k) for g, k in keys)]
        try:
            if self._dirty and not await self._bump():  # nothing older is served
                metrics.count_cache(0, len(keys))
                return misses
            values: list[Any] = await self.cluster.mget_nonatomic(names)
        except ERRORS as exc:
            self._failed(exc)
            metrics.count_cache(0, len(keys))
            return misses
        if self._moved():
            metrics.count_cache(0, len(keys))
            return misses
        self._up()
        epoch: bytes = values[0] or b""
        tokens: dict[str, Token] = {}
        heads: dict[str, bytes | None] = {}  # what a valid entry of the group starts with
        for group, gen in zip(groups, values[1:1 + len(groups)], strict=True):
            tokens[group] = (gen or b"", epoch)
            heads[group] = gen + epoch if gen and epoch else None
        hits = []
        found = 0
        for (group, _), raw in zip(keys, values[1 + len(groups):], strict=True):
            head = heads[group]
            ok = raw is not None and head is not None and raw.startswith(head)
            found += ok
            hits.append(Hit(raw[2 * NONCE:] if ok else None, tokens[group]))
        metrics.count_cache(found, len(hits) - found)
        return hits

    async def put_many(self, items: Sequence[PutItem]) -> None:
        if not items or not self._reachable():
            return
        if self._dirty:  # tokens read before the bump are stale anyway
            await self._bump()
            return
        try:
            created = await self._missing_epoch(items)
            scripts: dict[str, tuple[list[str], list[bytes | int]]] = {}
            for group, key, value, token, ttl in items:
                ms = self._ttl_ms(ttl)
                if not isinstance(token, tuple) or ms is None:
                    continue
                epoch = token[1] or created
                if not epoch:
                    continue
                keys, args = scripts.setdefault(group, ([self._gen_key(group)], [nonce()]))
                keys.append(self._entry_key(group, key))
                args += [token[0], epoch, value, ms]
            if scripts:
                await self._run_puts(list(scripts.values()))
        except ERRORS as exc:
            self._failed(exc)
            return
        if not self._moved():
            self._up()

    async def _missing_epoch(self, items: Sequence[PutItem]) -> bytes:
        """When a token saw no epoch: the epoch this call created, or b"" when it exists already."""
        if not any(isinstance(t, tuple) and not t[1] for _, _, _, t, _ in items):
            return b""
        fresh = nonce()
        old = await self.cluster.set(self._epoch_key, fresh, nx=True, get=True)
        return fresh if old is None else b""

    async def _run_puts(self, scripts: list[tuple[list[str], list[bytes | int]]]) -> None:
        """One pipeline of EVALSHAs (one round trip per node); the script is loaded on every primary
        once when a node does not know it (new, restarted or promoted)."""
        for attempt in range(2):
            pipe = self.cluster.pipeline(transaction=False)
            for keys, args in scripts:
                pipe.execute_command("EVALSHA", GROUP_PUT_SHA, len(keys), *keys, *args)  # .evalsha is blocked
            results = await pipe.execute(raise_on_error=False)
            errors = [r for r in results if isinstance(r, Exception)]
            if not errors:
                return
            if attempt == 0 and all(isinstance(e, NoScriptError) for e in errors):
                await self.cluster.script_load(GROUP_PUT_SCRIPT)  # every primary
                scripts = [s for s, r in zip(scripts, results, strict=True) if isinstance(r, NoScriptError)]
                continue
            raise errors[0]

    async def invalidate(self, groups: Iterable[str]) -> None:
        names = {self._gen_key(g): nonce() for g in groups}
        if not names:
            return
        self._try_now()
        if self._dirty:  # a bump hides every group
            await self._bump()
            self._moved()
            return
        try:
            await self.cluster.mset_nonatomic(names)
        except ERRORS as exc:
            self._failed(exc)
            self._mark_dirty()
            return
        if not self._moved():
            self._up()


def open_redis(url: str, prefix: str, *, installation: str, connect_timeout: float = 0.25, read_timeout: float = 0.5,
               max_connections: int = 32, pool_timeout: float = 0.5, clock: Callable[[], float] = time.monotonic,
               backoff: float = 1.0, heal_interval: float = 1.0, max_ttl: float | None = 86_400.0) -> RedisCache:
    """The Redis value cache for any CREDITGATE_REDIS_URL form (redis_topology): one Redis as before
    (RedisCache.from_url), a cluster (ClusterCache; `max_connections` per node, at least 128: a cluster
    pool does not wait for a free connection) or Sentinel (WatchedCache on the current master)."""
    target = parse_redis_url(url)
    options: dict[str, Any] = {"installation": installation, "clock": clock, "backoff": backoff,
                               "heal_interval": heal_interval, "max_ttl": max_ttl}
    if target.kind == "single":
        return RedisCache.from_url(url, prefix, connect_timeout=connect_timeout, read_timeout=read_timeout,
                                   max_connections=max_connections, pool_timeout=pool_timeout, **options)
    if target.kind == "cluster":
        max_connections = max(max_connections, 128)
    client = connect(target, connect_timeout=connect_timeout, read_timeout=read_timeout,
                     max_connections=max_connections, pool_timeout=pool_timeout)
    if isinstance(client, RedisCluster):
        return ClusterCache(client, prefix, **options)
    return WatchedCache(client, prefix, **options)
