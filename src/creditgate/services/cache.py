"""The value cache as services use it (docs/semantics.md §8): bytes per (group, key), guarded puts,
group invalidation. adapters/cache implements it (Redis, in-process); services never import those."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple, Protocol


class Hit(NamedTuple):
    """One answer of get_many: `value` None is a miss; `token` is what a later put of this key needs.
    A NamedTuple: one is built per key read, and that is cheaper than a frozen dataclass."""

    value: bytes | None
    token: object


# (group, key, value, token from get_many, ttl in seconds or None = no expiry)
PutItem = tuple[str, str, bytes, object, float | None]


class ValueCache(Protocol):
    async def get_many(self, keys: Sequence[tuple[str, str]]) -> list[Hit]:
        """Values of (group, key) pairs, in order, in one round trip. Never raises."""
        ...

    async def put_many(self, items: Sequence[PutItem]) -> None:
        """Stores each item unless its group was invalidated after its token was read. Never raises."""
        ...

    async def invalidate(self, groups: Iterable[str]) -> None:
        """Every entry of these groups stops being served, at once (call after the write's commit)."""
        ...

    async def close(self) -> None: ...


def subject_group(subject_key: str) -> str:
    """The cache group of a subject's values: every write that can change one invalidates it."""
    return "s:" + subject_key
