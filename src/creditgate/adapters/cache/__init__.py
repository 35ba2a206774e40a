"""The value cache: one interface (base.ValueCache), Redis and in-process implementations."""

from creditgate.adapters.cache.base import Hit, PutItem, ValueCache, open_cache

__all__ = ["Hit", "PutItem", "ValueCache", "open_cache"]
