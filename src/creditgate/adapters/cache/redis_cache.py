"""Redis value cache (redis-py asyncio + hiredis), shared by every worker.

Every key lives in the installation's namespace {ns} = {prefix}{installation id}: (`namespace()`);
the id is the database's (adapters/sql/installation.py), so two databases sharing a Redis db and
prefix never see each other's entries, and `flush()` drops one installation's keys:
  {ns}epoch          a random nonce; replacing it (a "bump") invalidates every entry at once
  {ns}g:{group}      the group's generation, a random nonce; invalidate replaces it
  {ns}v:{group}:{key} entry = generation (16 bytes) + epoch (16 bytes) + value
An entry is a hit only when its generation and epoch equal the current ones; get_many reads
the epoch, the generations and the entries in one MGET. Nonces are random (never counters), so
a generation or epoch lost to a Redis restart or to eviction is never reused: an old entry can
then only become unreachable, never valid again. A put is one EVALSHA for all items that stores
an item only if the epoch and its group's generation still equal its token.

Failures (down, refused, timeout, pool exhausted): log once, serve misses, skip puts, never
raise; after `backoff` seconds the next call tries again. No command is retried. An invalidate
that fails (or is skipped while Redis is down) makes the process "dirty": until an epoch bump
succeeds it serves misses, and it retries the bump on every call and in a background task
every `heal_interval` seconds. Remaining window: once Redis is reachable again, another worker
can serve an entry that the failed invalidation should have hidden until this process's bump
lands (at most about `heal_interval` plus a timeout). If the dirty process dies before the
bump, that invalidation is lost and such entries live until their TTL (capped by `max_ttl`).

A live subscription in another process may read such an entry in that window, woken by the very
write whose invalidation did not land (its change signal went out), and would then stay on the old
value with nothing left to wake it. So when an invalidation was skipped, or failed in a way that may
have kept it from reaching Redis, the bump that ends the dirty spell also publishes the change signal's
gap message (redis_signals.py: every process resyncs its subscriptions, cause RESYNC, docs/semantics.md
§10.3) after the new epoch is in place; the process is clean only once both went out. A read timeout
needs no gap: the command went out whole, and Redis applies it before the change signal sent after it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections.abc import Callable, Iterable, Sequence

import hiredis
from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import DataError, RedisClusterException, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT

from creditgate import metrics
from creditgate.adapters.cache.base import Hit, PutItem
from creditgate.adapters.cache.resp import RespClient

log = logging.getLogger("creditgate.cache")

NONCE = 16  # bytes of a hex nonce
GAP = b""  # the change signal's "resync everything" message (redis_signals.py)
Token = tuple[bytes, bytes]  # (generation, epoch) as read; b"" = absent

# KEYS: epoch, then per item: generation key, entry key.
# ARGV: fresh epoch, then per item: token generation, token epoch, fresh generation, value, ttl ms.
# current(): the key's value if it still equals the token (or was absent and is created now
# with the fresh nonce, possibly by an earlier item of this same call), else false; each key is
# read once per call.
PUT_SCRIPT = """
local known = {}
local function current(key, token, fresh)
  local v = known[key]
  if v == nil then
    v = redis.call('GET', key)
    known[key] = v
  end
  if not v then
    if token ~= '' then return false end
    redis.call('SET', key, fresh)
    known[key] = fresh
    return fresh
  end
  if v == token or (token == '' and v == fresh) then return v end
  return false
end
local stored = 0
for i = 0, (#KEYS - 1) / 2 - 1 do
  local b = 2 + 5 * i
  local e = current(KEYS[1], ARGV[b + 1], ARGV[1])
  local g = e and current(KEYS[2 + 2 * i], ARGV[b], ARGV[b + 2])
  if g then
    local ms = tonumber(ARGV[b + 4])
    if ms > 0 then
      redis.call('SET', KEYS[3 + 2 * i], g .. e .. ARGV[b + 3], 'PX', ms)
    else
      redis.call('SET', KEYS[3 + 2 * i], g .. e .. ARGV[b + 3])
    end
    stored = stored + 1
  end
end
return stored
"""

ERRORS = (RedisError, RedisClusterException, OSError)  # cluster errors are not RedisErrors (redis_replicated.py)


class HiredisConnection(Connection):
    """Packs commands with hiredis (C) instead of redis-py's Python packer: an MGET of 1000 keys
    spends most of its client time packing. (URL schemes rediss:// and unix:// keep their class.)"""

    def pack_command(self, *args: EncodableT) -> list[bytes]:
        first = args[0]
        if isinstance(first, str):
            args = (*first.encode().split(), *args[1:])
        elif isinstance(first, bytes) and b" " in first:
            args = (*first.split(), *args[1:])
        try:  # str, bytes, int, float, memoryview
            return [hiredis.pack_command(args)]  # type: ignore[arg-type]  # the stub wants a 1-tuple
        except TypeError as exc:
            raise DataError(str(exc)) from exc


def nonce() -> bytes:
    return secrets.token_hex(NONCE // 2).encode()


def namespace(prefix: str, installation: str) -> str:
    """The key namespace of one installation (database): `{prefix}{installation}:`. Every Redis key
    the value cache writes starts with it; pub/sub change signals must use it too (channel names
    under it), so that deployments sharing a Redis never see each other's entries or signals."""
    if not installation or any(c in installation for c in ":*?[]\\ "):
        raise ValueError(f"bad installation id {installation!r}")
    return f"{prefix}{installation}:"


def glob_escape(text: str) -> str:
    """`text` as a literal in a SCAN MATCH pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class RedisCache:
    """The value cache of one installation: `installation` is the database's id, read at start-up."""

    def __init__(self, client: Redis, prefix: str, *, installation: str, clock: Callable[[], float] = time.monotonic,
                 backoff: float = 1.0, heal_interval: float = 1.0, max_ttl: float | None = 86_400.0) -> None:
        self.client = client
        self.prefix = prefix
        self.installation = installation
        self.namespace = namespace(prefix, installation)  # every key, and every future pub/sub channel
        self.backoff = backoff
        self.heal_interval = heal_interval
        self.max_ttl = max_ttl  # entries without a TTL get this one, so invalidated ones do not pile up
        self._clock = clock
        self._epoch_key = self.namespace + "epoch"
        self._changes = self.namespace + "changes"  # the change signal's channel (redis_signals.py)
        self._put = client.register_script(PUT_SCRIPT)
        self._lean: RespClient | None = None  # get_many's MGET on a lean pipelined connection (resp.py)
        self._down = False
        self._retry_at = 0.0
        self._dirty = False
        self._failures = 0  # invalidations that failed; a bump clears `dirty` only if none came meanwhile
        self._unsent = False  # the last failure may have kept its command from reaching Redis
        self._gap_due = False  # an invalidation of this dirty spell may not have landed: the bump sends a gap
        self._healer: asyncio.Task[None] | None = None

    @classmethod
    def from_url(cls, url: str, prefix: str, *, installation: str, connect_timeout: float = 0.25,
                 read_timeout: float = 0.5,
                 max_connections: int = 32, pool_timeout: float = 0.5, clock: Callable[[], float] = time.monotonic,
                 backoff: float = 1.0, heal_interval: float = 1.0, max_ttl: float | None = 86_400.0) -> RedisCache:
        """One client per process: a bounded blocking pool, short timeouts, no retries.

        The read timeout counts event-loop delays too: on a saturated worker a healthy Redis can
        look slow, and each false timeout sends traffic to the database for `backoff` seconds."""
        pool = BlockingConnectionPool.from_url(
            url, connection_class=HiredisConnection, max_connections=max_connections, timeout=pool_timeout,
            socket_connect_timeout=connect_timeout, socket_timeout=read_timeout, retry=Retry(NoBackoff(), 0))
        cache = cls(Redis.from_pool(pool), prefix, installation=installation, clock=clock, backoff=backoff,
                    heal_interval=heal_interval, max_ttl=max_ttl)
        cache._lean = RespClient.from_url(url, connect_timeout=connect_timeout, read_timeout=read_timeout)
        return cache

    @property
    def dirty(self) -> bool:
        return self._dirty

    async def get_many(self, keys: Sequence[tuple[str, str]]) -> list[Hit]:
        if not keys:
            return []
        if not self._reachable():
            metrics.count_cache(0, len(keys))
            return [Hit(None, None) for _ in keys]
        groups = list(dict.fromkeys(group for group, _ in keys))
        entry = self.namespace + "v:"
        names = [self._epoch_key, *(self._gen_key(g) for g in groups), *(f"{entry}{g}:{k}" for g, k in keys)]
        try:
            if self._dirty:  # bump first, in the same round trip: nothing older is served
                seen = self._failures
                gap = self._gap_due
                pipe = self.client.pipeline(transaction=False)
                pipe.set(self._epoch_key, nonce())
                if gap:  # after the bump: see the module docstring
                    pipe.publish(self._changes, GAP)
                pipe.mget(names)
                values = (await pipe.execute())[-1]
                self._healed(seen, gap)
            elif self._lean is not None:
                values = await self._lean.mget(names)
            else:
                values = await self.client.mget(names)
        except ERRORS as exc:
            self._failed(exc)
            metrics.count_cache(0, len(keys))
            return [Hit(None, None) for _ in keys]
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
        fresh: dict[str, bytes] = {}
        keys: list[str] = [self._epoch_key]
        args: list[bytes | int] = [nonce()]
        for group, key, value, token, ttl in items:
            ms = self._ttl_ms(ttl)
            if not isinstance(token, tuple) or ms is None:
                continue
            keys += [self._gen_key(group), self._entry_key(group, key)]
            args += [token[0], token[1], fresh.setdefault(group, nonce()), value, ms]
        if len(keys) == 1:
            return
        try:
            await self._put(keys=keys, args=args)
        except ERRORS as exc:
            self._failed(exc)
            return
        self._up()

    async def invalidate(self, groups: Iterable[str]) -> None:
        names = {self._gen_key(g): nonce() for g in groups}
        if not names:
            return
        if not self._reachable():
            self._gap_due = True  # skipped: other processes may serve the old entries for this write's signal
            self._mark_dirty()
            return
        if self._dirty:  # a bump hides every group
            await self._bump()
            return
        try:
            await self.client.mset(names)
        except ERRORS as exc:
            self._failed(exc)
            self._mark_dirty()
            return
        self._up()

    async def close(self) -> None:
        if self._healer is not None:
            self._healer.cancel()
            self._healer = None
        if self._dirty:  # last chance to hide what a failed invalidation should have hidden
            await self._bump()
        if self._lean is not None:
            await self._lean.aclose()
        await self.client.aclose()

    async def flush(self, batch: int = 1000) -> int:
        """Drops every entry of this installation (`creditgate cache flush`, e.g. after a restore).

        First a bump, so every worker stops serving old entries at once; then SCAN + UNLINK over
        the namespace in batches, keeping the new epoch so that no put whose token was read before
        the flush can store. Returns the number of keys removed. Raises on Redis errors."""
        await self.client.set(self._epoch_key, nonce())
        keep = self._epoch_key.encode()
        removed = 0
        pending: list[bytes] = []
        async for key in self.client.scan_iter(match=glob_escape(self.namespace) + "*", count=batch):
            if key != keep:
                pending.append(key)
            if len(pending) >= batch:
                removed += await self.client.unlink(*pending)
                pending = []
        if pending:
            removed += await self.client.unlink(*pending)
        return removed

    async def wait_healed(self) -> None:
        """Returns once no failed invalidation is pending (tests)."""
        while self._dirty and self._healer is not None:
            await asyncio.shield(self._healer)

    # -- keys --

    def _gen_key(self, group: str) -> str:
        return f"{self.namespace}g:{group}"

    def _entry_key(self, group: str, key: str) -> str:
        return f"{self.namespace}v:{group}:{key}"

    def _ttl_ms(self, ttl: float | None) -> int | None:
        """Milliseconds for PX (0 = no expiry); None when the item expires at once."""
        if ttl is None:
            return 0 if self.max_ttl is None else math.ceil(self.max_ttl * 1000)
        if ttl <= 0:
            return None
        if self.max_ttl is not None:
            ttl = min(ttl, self.max_ttl)
        return math.ceil(ttl * 1000)

    # -- failure handling --

    def _reachable(self) -> bool:
        """False while backing off after a failure."""
        return not self._down or self._clock() >= self._retry_at

    def _failed(self, exc: BaseException) -> None:
        metrics.cache_errors.inc()
        self._unsent = not _read_timeout(exc)
        if self._dirty and self._unsent:  # perhaps a bump that should have hidden a write's old entries
            self._gap_due = True
        if not self._down:
            log.warning("value cache: Redis unavailable (%s: %s); answers come from the database",
                        type(exc).__name__, exc)
        self._down = True
        self._retry_at = self._clock() + self.backoff

    def _up(self) -> None:
        if self._down:
            log.info("value cache: Redis is back")
            self._down = False

    def _mark_dirty(self) -> None:
        self._failures += 1
        if self._unsent:
            self._gap_due = True
        if not self._dirty:
            log.info("value cache: an invalidation failed; every entry is dropped when Redis answers again")
        self._dirty = True
        if self._healer is None or self._healer.done():
            self._healer = asyncio.get_running_loop().create_task(self._heal())

    def _healed(self, seen: int, gap: bool) -> None:
        """A bump landed (with the gap message when `gap`): clean, unless something failed meanwhile."""
        if self._failures == seen and (gap or not self._gap_due):
            self._dirty = self._gap_due = False

    async def _bump(self) -> bool:
        """Replaces the epoch: every entry stops being served; then, when due, every process resyncs its
        live subscriptions (the gap message). True when all went out."""
        seen = self._failures
        gap = self._gap_due
        try:
            if isinstance(self.client, RedisCluster):  # the epoch and the channel may be on two shards
                await self.client.set(self._epoch_key, nonce())
                if gap:
                    await self._publish_gap(self.client)
            elif gap:  # one round trip, in this order
                pipe = self.client.pipeline(transaction=False)
                pipe.set(self._epoch_key, nonce())
                pipe.publish(self._changes, GAP)
                await pipe.execute()
            else:
                await self.client.set(self._epoch_key, nonce())
        except ERRORS as exc:
            self._failed(exc)
            return False
        self._up()
        self._healed(seen, gap)
        return True

    async def _publish_gap(self, cluster: RedisCluster) -> None:
        """The gap message on a cluster: sharded from Redis 7.0 on, classic on an older cluster (it refuses
        SPUBLISH), as the listeners subscribe (redis_signals.py)."""
        try:
            await cluster.spublish(self._changes, GAP)
        except ResponseError:
            await cluster.publish(self._changes, GAP)

    async def _heal(self) -> None:
        while self._dirty:
            await asyncio.sleep(self.heal_interval)
            if self._dirty:
                await self._bump()


def _read_timeout(exc: BaseException) -> bool:
    """Redis did not answer in time, but the command went out whole (not a connect or write timeout)."""
    return isinstance(exc, RedisTimeoutError) and "Timeout reading" in str(exc)
