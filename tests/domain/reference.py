"""A deliberately naive reference for the balance engine, written from docs/semantics.md
alone: it walks time minute by minute and applies the start-of-phase steps at every
minute (a minute where nothing changes is a no-op), so it needs no notion of phases.

It only handles non-negative usage and inputs on whole minutes. Slow on purpose:
keep the simulated span to a few thousand minutes.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from creditgate.domain import Grant, Interval, Metered

ONE = timedelta(minutes=1)
NOTHING = Decimal(0)


def shift(anchor: datetime, interval: Interval, n: int) -> datetime:
    """anchor + n*interval with the day clamped to the month's length."""
    if interval == Interval.HOUR:
        return anchor + timedelta(hours=n)
    if interval == Interval.DAY:
        return anchor + timedelta(days=n)
    if interval == Interval.WEEK:
        return anchor + timedelta(weeks=n)
    months = n if interval == Interval.MONTH else 12 * n
    index = anchor.year * 12 + (anchor.month - 1) + months
    year, month0 = divmod(index, 12)
    last = calendar.monthrange(year, month0 + 1)[1]
    return anchor.replace(year=year, month=month0 + 1, day=min(anchor.day, last))


def instants(interval: Interval, anchor: datetime, lo: datetime, hi: datetime) -> set[datetime]:
    """Every anchor + n*interval within [lo, hi], found by trying n = 0, 1, -1, 2, ..."""
    found: set[datetime] = set()
    n = 0
    while shift(anchor, interval, n) <= hi:
        if shift(anchor, interval, n) >= lo:
            found.add(shift(anchor, interval, n))
        n += 1
    n = -1
    while shift(anchor, interval, n) >= lo:
        if shift(anchor, interval, n) <= hi:
            found.add(shift(anchor, interval, n))
        n -= 1
    return found


@dataclass
class Snap:
    balances: dict[str, Decimal]
    overage: Decimal
    period_start: datetime


class Reference:
    """Simulates from measure_usage_from to `horizon` (a whole minute).

    `events` maps a minute to the usage of that minute.
    """

    def __init__(
        self, ent: Metered, grants: Sequence[Grant], events: Mapping[datetime, Decimal], horizon: datetime
    ) -> None:
        self.ent = ent
        self.grants = sorted(grants, key=lambda g: (g.priority, g.expires_at, g.created_at, g.id))
        self.events = events
        self.start = ent.measure_usage_from
        self.horizon = max(horizon, self.start)
        self.pre: dict[datetime, Snap] = {}  # after the usage up to m, before the steps at m
        self.post: dict[datetime, Snap] = {}  # after steps 1-5 at m
        self.is_reset: set[datetime] = set()
        self.recurring = {  # each grant's recurrence instants over the simulated span
            g.id: instants(g.recurrence.interval, g.recurrence.anchor, self.start, self.horizon)
            for g in grants
            if g.recurrence is not None
        }
        self._simulate()

    # -- rules, as written in the semantics -------------------------------------
    def active(self, g: Grant, t: datetime) -> bool:
        voided = g.voided_at is not None and g.voided_at <= t
        return g.effective_at <= t < g.expires_at and not voided

    def recurs(self, g: Grant, t: datetime) -> bool:
        return t in self.recurring.get(g.id, ())

    def burn(self, bal: dict[str, Decimal], need: Decimal, t: datetime) -> Decimal:
        for g in self.grants:
            if need == 0:
                break
            if self.active(g, t):
                take = min(bal[g.id], need)
                bal[g.id] -= take
                need -= take
        return need

    def steps(self, snap: Snap, t: datetime, reset: bool) -> Snap:
        bal = dict(snap.balances)
        overage = snap.overage
        ps = snap.period_start
        if reset:  # step 1
            for g in self.grants:
                if self.active(g, t):
                    bal[g.id] = min(g.max_rollover, max(g.min_rollover, bal[g.id]))
                else:
                    bal[g.id] = NOTHING
            overage = NOTHING
            ps = t
        for g in self.grants:  # step 2
            if not self.active(g, t):
                bal[g.id] = NOTHING
        for g in self.grants:  # step 3
            if g.effective_at == t and self.active(g, t):
                bal[g.id] = g.amount
        for g in self.grants:  # step 4
            if g.effective_at <= t and self.active(g, t) and self.recurs(g, t):
                bal[g.id] = g.amount
        overage = self.burn(bal, overage, t)  # step 5
        return Snap(bal, overage, ps)

    # -- the walk ---------------------------------------------------------------
    def _simulate(self) -> None:
        ent = self.ent
        manual = {r.at: r.retain_anchor for r in ent.resets if r.at > self.start}
        anchor = ent.usage_period.anchor
        autos = instants(ent.usage_period.interval, anchor, self.start, self.horizon)
        first = Snap(
            {g.id: (g.amount if self.active(g, self.start) else NOTHING) for g in self.grants}, NOTHING, self.start
        )
        first = self.steps(first, self.start, reset=False)
        self.post[self.start] = first
        m = self.start
        snap = first
        while m < self.horizon:
            bal = dict(snap.balances)
            need = snap.overage + self.events.get(m, NOTHING)
            m += ONE
            overage = self.burn(bal, need, m - ONE)
            pre = Snap(bal, overage, snap.period_start)
            self.pre[m] = pre
            reset = m in autos or m in manual
            if reset:
                self.is_reset.add(m)
            if m in manual and not manual[m]:
                autos = instants(ent.usage_period.interval, m, m + ONE, self.horizon)
            snap = self.steps(pre, m, reset)
            self.post[m] = snap

    # -- reads ------------------------------------------------------------------
    def usage(self, a: datetime, b: datetime) -> Decimal:
        return sum((v for k, v in self.events.items() if a <= k and k + ONE <= b), NOTHING)

    def value(self, t: datetime) -> tuple[dict[str, Decimal], Decimal, Decimal, datetime]:
        """(balances, overage, usage, period start) of the value at t."""
        if t < self.start:
            s = self.post[self.start]
            return s.balances, s.overage, NOTHING, self.start
        ceil = t if t.second == 0 and t.microsecond == 0 else t.replace(second=0, microsecond=0) + ONE
        s = self.post[ceil]
        if ceil != t and ceil in self.is_reset:  # the reset at t' belongs to the next period
            s = self.steps(self.pre[ceil], ceil, reset=False)
        return s.balances, s.overage, self.usage(s.period_start, ceil), s.period_start

    def windows(
        self, a: datetime, b: datetime, size: str, tz: str
    ) -> list[tuple[datetime, datetime, Decimal, Decimal]]:
        """(start, end, usage, balance at start) of the windows with usage, found by
        grouping the minutes of [a, b) by their local day or local hour."""
        zone = ZoneInfo(tz)

        def key(m: datetime) -> tuple[date, int, int, object]:
            loc = m.astimezone(zone)
            if size == "DAY":
                return (loc.date(), 0, 0, None)
            if size == "HOUR":
                return (loc.date(), loc.hour, 0, loc.utcoffset())
            return (loc.date(), loc.hour, loc.minute, loc.utcoffset())

        out = []
        m = a
        while m < b:
            start, k, used = m, key(m), NOTHING
            while m < b and key(m) == k:
                used += self.events.get(m, NOTHING)
                m += ONE
            if used != 0:
                bal = self.value(start)[0]
                out.append((start, m, used, sum(bal.values(), NOTHING)))
        return out
