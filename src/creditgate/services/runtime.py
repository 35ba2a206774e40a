"""What every use case needs: the database, the value cache, the change signal, the clock and the settings."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from creditgate.adapters.sql.db import Database
from creditgate.config import Settings
from creditgate.services.cache import ValueCache, subject_group
from creditgate.services.changes import Change, Changes

Clock = Callable[[], datetime]
log = logging.getLogger("creditgate.cache")


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    settings: Settings
    db: Database
    cache: ValueCache | None = None  # implemented by adapters/cache; None disables caching
    clock: Clock = system_clock
    extras: dict[str, Any] = field(default_factory=dict)
    changes: Changes = field(init=False, repr=False)  # services/changes.py

    def __post_init__(self) -> None:
        self.changes = Changes(self.now)
        self.changes.listen(self._drop_cached, remote=False)  # first: before the write returns

    def now(self) -> datetime:
        return self.clock()

    async def _drop_cached(self, change: Change) -> None:
        """After a commit: every cached value of the changed subjects' entitlements stops being served."""
        cache = self.cache
        if cache is None or not change.subjects:
            return
        try:
            await cache.invalidate(sorted(subject_group(s) for s in change.subjects))
        except Exception:  # the cache adapter keeps its own guard for entries it could not drop
            log.warning("cache invalidation failed", exc_info=True)
