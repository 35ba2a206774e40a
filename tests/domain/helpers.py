"""Small builders for the engine tests."""

from __future__ import annotations

import itertools
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from creditgate.domain import Grant, Interval, Metered, Recurrence

D = Decimal
MIN = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
FAR = datetime(2100, 1, 1, tzinfo=UTC)


def at(text: str) -> datetime:
    """'2024-01-31 10:00' (or with seconds) as a UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def grant(
    gid: str,
    amount: str | int,
    effective: datetime,
    *,
    priority: int = 1,
    expires: datetime = FAR,
    created: datetime | None = None,
    voided: datetime | None = None,
    every: Interval | None = None,
    anchor: datetime | None = None,
    min_rollover: str | int = 0,
    max_rollover: str | int = 0,
) -> Grant:
    return Grant(
        id=gid,
        amount=D(amount),
        priority=priority,
        effective_at=effective,
        expires_at=expires,
        created_at=created or effective,
        voided_at=voided,
        recurrence=None if every is None else Recurrence(every, anchor or effective),
        min_rollover=D(min_rollover),
        max_rollover=D(max_rollover),
    )


def monthly(start: datetime, **kw: object) -> Metered:
    return Metered(start, Recurrence(Interval.MONTH, start), **kw)  # type: ignore[arg-type]


class Usage:
    """A usage function over per-minute amounts that records its calls."""

    def __init__(self, events: Mapping[datetime, Decimal | str | int] | None = None) -> None:
        self.events: dict[datetime, Decimal] = {}
        self.calls: list[list[datetime]] = []
        for m, v in (events or {}).items():
            self.add(m, v)

    def add(self, minute: datetime, value: Decimal | str | int) -> Usage:
        assert minute.second == 0 and minute.microsecond == 0
        self.events[minute] = self.events.get(minute, D(0)) + D(value)
        return self

    def __call__(self, bounds: Sequence[datetime]) -> list[Decimal]:
        self.calls.append(list(bounds))
        assert len(bounds) >= 2
        assert all(a < b for a, b in itertools.pairwise(bounds))
        assert all(b.second == 0 and b.microsecond == 0 for b in bounds)
        keys = sorted(self.events)
        sums = [D(0)]
        for k in keys:
            sums.append(sums[-1] + self.events[k])

        def upto(t: datetime) -> Decimal:  # usage of the minutes m with m + 1min <= t
            return sums[bisect_left(keys, t)]

        return [upto(b) - upto(a) for a, b in itertools.pairwise(bounds)]
