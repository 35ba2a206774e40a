"""Opening the value cache; its interface (ValueCache, Hit, PutItem) is services.cache, re-exported here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from creditgate.services.cache import Hit, PutItem, ValueCache

if TYPE_CHECKING:
    from creditgate.adapters.cache.redis_signals import RedisSignals
    from creditgate.config import Settings

__all__ = ["Hit", "PutItem", "ValueCache", "open_cache", "open_signals"]


def open_cache(settings: Settings, installation: str) -> ValueCache | None:
    """Redis when `redis_url` is set (one Redis, a cluster or Sentinel: redis_topology.py), else
    in-process; None when the value cache is off.
    `installation` is the database's id (adapters/sql/installation.py): Redis keys live under it."""
    if not settings.value_cache:
        return None
    if settings.redis_url:
        from creditgate.adapters.cache.redis_replicated import open_redis

        return open_redis(settings.redis_url, settings.redis_prefix, installation=installation)
    from creditgate.adapters.cache.memory import MemoryCache

    return MemoryCache()


def open_signals(settings: Settings, installation: str) -> RedisSignals | None:
    """The change signal between processes: Redis pub/sub when `redis_url` is set (also with the value
    cache off), else None (one process: changes stay in it)."""
    if not settings.redis_url:
        return None
    from creditgate.adapters.cache.redis_signals import RedisSignals

    return RedisSignals(settings.redis_url, settings.redis_prefix, installation=installation)
