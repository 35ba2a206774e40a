"""The value cache: one interface (base.ValueCache), Redis and in-process implementations; the change
signal between processes (Redis pub/sub, redis_signals.py)."""

from creditgate.adapters.cache.base import Hit, PutItem, ValueCache, open_cache, open_signals

__all__ = ["Hit", "PutItem", "ValueCache", "open_cache", "open_signals"]
