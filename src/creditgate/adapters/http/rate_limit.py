"""Per-subject-token request rate: a token bucket per token id (`token_rate` per second, `token_burst`).

With Redis as the value cache the buckets live there, shared by every worker and instance: one
EVALSHA per request, keys `{cache namespace}rl:{token id}` expiring once full again; the clock is
Redis's own (TIME), so workers agree. Without Redis (or while it is down: logged once, retried
after `backoff` seconds) each process keeps its own buckets. API keys and open mode are never
limited; requests with a bad token pass through to the API, which refuses them.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError
from starlette.types import ASGIApp, Receive, Scope, Send

from creditgate import metrics
from creditgate.adapters.http.answers import refuse
from creditgate.domain.errors import DomainError
from creditgate.services.auth import TOKEN_PREFIX, authenticate
from creditgate.services.runtime import Runtime

log = logging.getLogger("creditgate.http")

CODE = "RATE_LIMITED"
LIMITER_KEY = "rate_limiter"
_TOKEN_MARK = TOKEN_PREFIX.encode()

# KEYS[1]: the bucket (hash n = tokens, t = ms of the last update). ARGV: rate per second, burst.
# Returns 0 when a token was taken, else the milliseconds until one is available.
BUCKET_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'n', 't')
local n = tonumber(state[1])
local at = tonumber(state[2])
if n == nil or at == nil then
  n = burst
  at = now
end
n = math.min(burst, n + math.max(0, now - at) * rate / 1000)
local wait = 0
if n >= 1 then
  n = n - 1
else
  wait = math.ceil((1 - n) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'n', string.format('%.6f', n), 't', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return wait
"""


class LocalBuckets:
    """This process's buckets (monotonic clock). Full buckets are dropped when many pile up."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 100_000) -> None:
        self.rate, self.burst, self.clock, self.max_keys = rate, burst, clock, max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, key: str) -> float:
        """0.0 when a token was taken, else the seconds until one is available."""
        now = self.clock()
        tokens, at = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + max(0.0, now - at) * self.rate)
        if tokens >= 1:
            self._store(key, tokens - 1, now)
            return 0.0
        self._store(key, tokens, now)
        return (1 - tokens) / self.rate

    def _store(self, key: str, tokens: float, now: float) -> None:
        if len(self._buckets) >= self.max_keys and key not in self._buckets:
            full = self.burst / self.rate
            self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < full}
        self._buckets[key] = (tokens, now)


class Limiter:
    """Redis buckets when a Redis client is given, falling back to local ones while it fails."""

    def __init__(self, rate: float, burst: int, client: Any = None, namespace: str = "",
                 backoff: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst = rate, burst
        self.local = LocalBuckets(rate, burst, clock)
        self.namespace = namespace + "rl:"
        self.backoff, self.clock = backoff, clock
        self._script = client.register_script(BUCKET_SCRIPT) if client is not None else None
        self._down_until: float | None = None  # set while Redis is failing

    @property
    def shared(self) -> bool:
        return self._script is not None

    async def take(self, key: str) -> float:
        if self._script is None:
            return self.local.take(key)
        if self._down_until is not None and self.clock() < self._down_until:
            return self.local.take(key)
        try:
            wait_ms = await self._script(keys=[self.namespace + key], args=[repr(self.rate), self.burst])
        except (RedisError, OSError) as exc:
            if self._down_until is None:
                log.warning("rate limit: Redis unavailable (%s: %s); limiting per process until it is back",
                            type(exc).__name__, exc)
            self._down_until = self.clock() + self.backoff
            return self.local.take(key)
        if self._down_until is not None:
            log.info("rate limit: Redis is back; buckets are shared again")
            self._down_until = None
        return int(wait_ms) / 1000


def limiter_for(rt: Runtime, rate: float, burst: int) -> Limiter:
    """The runtime's limiter, made on first use: on the value cache's Redis client and namespace when
    the cache is Redis, else in-process."""
    name = f"{LIMITER_KEY}:{rate}:{burst}"  # apps on one runtime with other limits get their own
    limiter: Limiter | None = rt.extras.get(name)
    if limiter is None:
        client = getattr(rt.cache, "client", None)
        namespace = str(getattr(rt.cache, "namespace", None) or getattr(rt.cache, "prefix", ""))
        if client is None and rt.settings.redis_url:
            log.info("rate limit: the value cache is off, so buckets are per process")
        limiter = rt.extras[name] = Limiter(rate, burst, client, namespace)
    return limiter


class RateLimit:
    def __init__(self, app: ASGIApp, rate: float, burst: int) -> None:
        self.app = app
        self.rate, self.burst = rate, burst

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.rate <= 0 or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        authorization = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
                break
        if _TOKEN_MARK not in authorization:  # API keys, open mode, no credentials
            await self.app(scope, receive, send)
            return
        rt: Runtime = scope["app"].state.runtime
        try:
            principal = authenticate(rt, authorization.decode("latin-1"))
        except DomainError:  # the API answers 401
            await self.app(scope, receive, send)
            return
        if principal.admin or principal.token_id is None:
            await self.app(scope, receive, send)
            return
        wait = await limiter_for(rt, self.rate, self.burst).take(principal.token_id)
        if wait > 0:
            metrics.rate_limited.inc()
            retry = max(1, math.ceil(wait))
            await refuse(scope, send, 429, f"too many requests for this token: retry in {retry} s", CODE,
                         [(b"retry-after", str(retry).encode())])
            return
        await self.app(scope, receive, send)
