"""Opening the value cache; its interface (ValueCache, Hit, PutItem) is services.cache, re-exported here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from creditgate.services.cache import Hit, PutItem, ValueCache

if TYPE_CHECKING:
    from creditgate.config import Settings

__all__ = ["Hit", "PutItem", "ValueCache", "open_cache"]


def open_cache(settings: Settings, installation: str) -> ValueCache | None:
    """Redis when `redis_url` is set, else in-process; None when the value cache is off.
    `installation` is the database's id (adapters/sql/installation.py): Redis keys live under it."""
    if not settings.value_cache:
        return None
    if settings.redis_url:
        from creditgate.adapters.cache.redis_cache import RedisCache

        return RedisCache.from_url(settings.redis_url, prefix=settings.redis_prefix, installation=installation)
    from creditgate.adapters.cache.memory import MemoryCache

    return MemoryCache()
