"""In-process value cache: one process only (it cannot see another worker's invalidations).

Each group has a generation number; a token is the generation read by get_many, and a put
stores only while its group's generation still equals the token. Generations come from one
process-wide counter, so a number is never reused. Bounded size (LRU), TTLs on a monotonic clock.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import count

from creditgate import metrics
from creditgate.adapters.cache.base import Hit, PutItem

Key = tuple[str, str]


@dataclass(slots=True)
class _Entry:
    value: bytes
    generation: int
    expires_at: float | None


class MemoryCache:
    def __init__(self, max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[Key, _Entry] = OrderedDict()
        self._by_group: dict[str, set[str]] = {}
        self._generations: dict[str, int] = {}  # absent = 0 (never invalidated)
        self._counter = count(1)

    def __len__(self) -> int:
        return len(self._entries)

    async def get_many(self, keys: Sequence[Key]) -> list[Hit]:
        now = self._clock()
        hits = []
        found = 0
        for group, key in keys:
            generation = self._generations.get(group, 0)
            entry = self._entries.get((group, key))
            value = None
            if entry is not None:
                if entry.generation == generation and (entry.expires_at is None or entry.expires_at > now):
                    self._entries.move_to_end((group, key))
                    value = entry.value
                    found += 1
                else:
                    self._drop((group, key))
            hits.append(Hit(value, generation))
        metrics.count_cache(found, len(hits) - found)
        return hits

    async def put_many(self, items: Sequence[PutItem]) -> None:
        now = self._clock()
        for group, key, value, token, ttl in items:
            if token != self._generations.get(group, 0) or (ttl is not None and ttl <= 0):
                continue
            self._entries[(group, key)] = _Entry(value, self._generations.get(group, 0),
                                                 None if ttl is None else now + ttl)
            self._entries.move_to_end((group, key))
            self._by_group.setdefault(group, set()).add(key)
        while len(self._entries) > self.max_entries:
            oldest = next(iter(self._entries))
            self._drop(oldest)

    async def invalidate(self, groups: Iterable[str]) -> None:
        for group in groups:
            self._generations[group] = next(self._counter)
            for key in self._by_group.pop(group, set()):
                self._entries.pop((group, key), None)

    async def close(self) -> None:
        self._entries.clear()
        self._by_group.clear()

    def _drop(self, k: Key) -> None:
        self._entries.pop(k, None)
        keys = self._by_group.get(k[0])
        if keys is not None:
            keys.discard(k[1])
            if not keys:
                del self._by_group[k[0]]
