"""Usage periods and resets (docs/semantics.md §4).

Resets are automatic (every usage-period instant after measure_usage_from) or manual.
A manual reset with retain_anchor=False re-anchors the later automatic resets at its
own instant. Manual resets at or before measure_usage_from cannot be created through
the API; they are ignored here. Instants are rounded up to whole minutes.
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import datetime, timedelta

from creditgate.domain.model import Metered, Recurrence
from creditgate.domain.recurrence import ceil_m, index_at_or_before, instants_between, recurrence_instant, utc

_TINY = timedelta(microseconds=1)


class Schedule:
    """The reset instants of one entitlement, precomputed for fast lookups."""

    __slots__ = ("_eras", "_manual", "start")

    def __init__(self, ent: Metered) -> None:
        self.start = ceil_m(utc(ent.measure_usage_from))
        interval = ent.usage_period.interval
        anchor = Recurrence(interval, ceil_m(utc(ent.usage_period.anchor)))
        by_at: dict[datetime, bool] = {}
        for reset in ent.resets:
            at = ceil_m(utc(reset.at))
            if at > self.start:
                # two resets at one instant: re-anchor if either asks to
                by_at[at] = by_at.get(at, True) and reset.retain_anchor
        self._manual = sorted(by_at)
        # era i starts at manual reset i-1 (era 0 at the beginning of time)
        self._eras: list[Recurrence] = [anchor]
        for at in self._manual:
            if not by_at[at]:
                anchor = Recurrence(interval, at)
            self._eras.append(anchor)

    def _era(self, t: datetime) -> int:
        return bisect_right(self._manual, t)

    def _floor(self, era: int) -> datetime:
        """Automatic resets of an era are strictly after this instant."""
        return self._manual[era - 1] if era else self.start

    def period_start(self, t: datetime) -> datetime:
        """The latest reset <= t, else the start (measure_usage_from)."""
        if t <= self.start:
            return self.start
        era = self._era(t)
        floor = self._floor(era)
        rec = self._eras[era]
        auto = recurrence_instant(rec, index_at_or_before(rec, t))
        return auto if auto > floor else floor

    def reset_before(self, t: datetime) -> datetime:
        """The latest reset strictly before t, else the start."""
        return self.period_start(t - _TINY)

    def next_reset(self, t: datetime) -> datetime:
        """The first reset strictly after t."""
        era = self._era(t)
        rec = self._eras[era]
        auto = recurrence_instant(rec, index_at_or_before(rec, max(t, self._floor(era))) + 1)
        if era < len(self._manual):
            return min(auto, self._manual[era])
        return auto

    def resets(self, lo: datetime, hi: datetime) -> list[datetime]:
        """All resets in the half-open range (lo, hi], sorted."""
        lo = max(lo, self.start)
        if hi <= lo:
            return []
        out: list[datetime] = []
        era = self._era(lo)
        while True:
            floor = max(lo, self._floor(era))
            if floor >= hi:
                break
            end = self._manual[era] if era < len(self._manual) else None
            top = hi if end is None or end > hi else end - _TINY
            out.extend(instants_between(self._eras[era], floor, top))
            if end is None or end > hi:
                break
            out.append(end)
            era += 1
        return out

    def is_reset(self, t: datetime) -> bool:
        if t <= self.start:
            return False
        return self.period_start(t) == t


def period_start(ent: Metered, t: datetime) -> datetime:
    """The latest reset (automatic or manual) <= t, else measure_usage_from."""
    return Schedule(ent).period_start(utc(t))


def current_usage_period(ent: Metered, now: datetime) -> tuple[datetime, datetime]:
    """`[period_start(now), next reset after now)`.

    The end is the next automatic reset; for a past `now` followed by a manual reset,
    that manual reset ends the period instead. Before measure_usage_from the period is
    the first one, starting at measure_usage_from.
    """
    sched = Schedule(ent)
    now = utc(now)
    start = sched.period_start(now)
    return start, sched.next_reset(max(now, start))


def reset_instants(ent: Metered, a: datetime, b: datetime) -> list[datetime]:
    """All resets of either kind in (a, b], sorted."""
    return Schedule(ent).resets(utc(a), utc(b))


def period_starts(ent: Metered, a: datetime, b: datetime) -> list[datetime]:
    """The period starts in [a, b): measure_usage_from and every reset. These are the
    natural instants at which to persist snapshots (see `state_at`)."""
    sched = Schedule(ent)
    a, b = utc(a), utc(b)
    out = [sched.start] if a <= sched.start < b else []
    return out + [r for r in sched.resets(a - _TINY, b) if r < b]
