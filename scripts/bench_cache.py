"""Value cache latency: get_many (all hits) of 1, 10, 100, 1000 keys on local Redis, one client
as in a worker; put_many and invalidate for reference; the in-process cache beside it.

    uv run python scripts/bench_cache.py [--redis redis://127.0.0.1:6379/0] [--rounds 2000]

Uses a random key prefix and deletes its keys at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

from creditgate.adapters.cache import ValueCache
from creditgate.adapters.cache.memory import MemoryCache
from creditgate.adapters.cache.redis_cache import RedisCache

SIZES = (1, 10, 100, 1000)
VALUE = b'{"balance":"123.456","usage":"0.1","overage":"0","hasAccess":true}'  # a typical small value


async def timed(rounds: int, call: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    """(median, p99) in milliseconds."""
    for _ in range(min(rounds // 10, 100)):
        await call()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


async def bench(name: str, cache: ValueCache, rounds: int) -> list[str]:
    rows = []
    for n in SIZES:
        keys = [(f"01HBENCH{i % 50:04d}", f"now{i}") for i in range(n)]
        hits = await cache.get_many(keys)
        await cache.put_many([(g, k, VALUE, h.token, 600.0) for (g, k), h in zip(keys, hits, strict=True)])
        assert all(h.value == VALUE for h in await cache.get_many(keys))
        r = max(rounds // max(n // 10, 1), 50)
        get_med, get_p99 = await timed(r, lambda keys=keys: cache.get_many(keys))  # type: ignore[misc]
        items = [(g, k, VALUE, h.token, 600.0) for (g, k), h in zip(keys, await cache.get_many(keys), strict=True)]
        put_med, _ = await timed(r, lambda items=items: cache.put_many(items))  # type: ignore[misc]
        rows.append(f"| {name} | {n} | {get_med:.3f} | {get_p99:.3f} | {n / get_med * 1000:,.0f} | {put_med:.3f} |")
    groups = [f"01HBENCH{i:04d}" for i in range(10)]
    inv_med, _ = await timed(rounds, lambda: cache.invalidate(groups))
    rows.append(f"| {name} | invalidate 10 groups | {inv_med:.3f} | | | |")
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    prefix = f"cgbench:{uuid.uuid4().hex[:12]}:"
    redis_cache = RedisCache.from_url(args.redis, prefix, installation="bench")
    await redis_cache.client.ping()
    memory = MemoryCache()
    try:
        rows = await bench("redis", redis_cache, args.rounds) + await bench("in-process", memory, args.rounds)
    finally:
        keys = [k async for k in redis_cache.client.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await redis_cache.client.delete(*keys)
        await redis_cache.close()
    print("| cache | keys per get_many | get median ms | get p99 ms | keys/s (median) | put_many median ms |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    asyncio.run(main())
