"""What every use case needs: the database, the value cache, the clock and the settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from creditgate.adapters.sql.db import Database
from creditgate.config import Settings
from creditgate.services.cache import ValueCache

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    settings: Settings
    db: Database
    cache: ValueCache | None = None  # implemented by adapters/cache; None disables caching
    clock: Clock = system_clock
    extras: dict[str, Any] = field(default_factory=dict)

    def now(self) -> datetime:
        return self.clock()
