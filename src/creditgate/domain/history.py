"""Burn-down and windowed history (SEMANTICS.md section 7)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import localcontext

from creditgate.domain.errors import BadInput
from creditgate.domain.ledger import CONTEXT, ZERO, Book, Plan, plan
from creditgate.domain.model import Grant, Metered, Segment, State, UsageFn, Window, WindowSize
from creditgate.domain.recurrence import ceil_m, utc
from creditgate.domain.windows import window_edges, zone


def _range(book: Book, a: datetime, b: datetime) -> tuple[datetime, datetime]:
    a, b = utc(a), utc(b)
    if b <= a:
        raise BadInput("`to` must be after `from`")
    if a < book.sched.start:
        raise BadInput("`from` is before measureUsageFrom")
    return ceil_m(a), ceil_m(b)


def _plan(
    book: Book, a: datetime, b: datetime, usage: UsageFn, start: State | None, extra: Iterable[datetime]
) -> Plan:
    return plan(book, b, b, usage, start, extra=[a, *extra], begin=a)


def burndown(
    ent: Metered,
    grants: Iterable[Grant],
    usage: UsageFn,
    a: datetime,
    b: datetime,
    start: State | None = None,
) -> list[Segment]:
    """The burn-down segments over [a, b), a and b rounded up to whole minutes.

    The state at a is replayed from its period start (or an earlier reset when
    rollovers tie periods together, or from `start`, a `state_at` snapshot at or
    before a). Segments split at every phase boundary and reset; each starts after
    steps 1-4 at its start, its grant usage includes the carried overage it paid, its
    overage is what is carried at its end.
    """
    with localcontext(CONTEXT):
        book = Book(ent, grants)
        a, b = _range(book, a, b)
        if a == b:
            return []
        p = _plan(book, a, b, usage, start, ())
        ledger, bounds, resets, changes = p.ledger, p.bounds, p.resets, p.changes
        ids = book.ids
        out: list[Segment] = []
        for i, u in enumerate(p.usage):
            lo, hi = bounds[i], bounds[i + 1]
            if lo >= a:
                before = list(ledger.bal)
                ledger.burn(u)
                after = ledger.bal
                out.append(
                    Segment(
                        start=lo,
                        end=hi,
                        usage=u,
                        overage=ledger.carry if ledger.carry > 0 else ZERO,
                        balance_at_start=sum(before, ZERO),
                        balance_at_end=sum(after, ZERO),
                        balances_at_start=dict(zip(ids, before, strict=True)),
                        balances_at_end=dict(zip(ids, after, strict=True)),
                        grant_usage={g: x - y for g, x, y in zip(ids, before, after, strict=True)},
                    )
                )
            else:
                ledger.burn(u)
            ledger.step(hi, hi in resets, changes.get(hi))
        return out


def windowed_history(
    ent: Metered,
    grants: Iterable[Grant],
    usage: UsageFn,
    a: datetime,
    b: datetime,
    window: WindowSize,
    tz: str,
    start: State | None = None,
) -> list[Window]:
    """Usage windows aligned in the zone `tz`, clipped to [a, b) (rounded up to whole
    minutes), only those with usage != 0, each with the entitlement balance at its
    (clipped) start, i.e. `value_at(start).balance`."""
    tzinfo = zone(tz)
    with localcontext(CONTEXT):
        book = Book(ent, grants)
        a, b = _range(book, a, b)
        if a == b:
            return []
        edges = window_edges(a, b, WindowSize(window), tzinfo)
        p = _plan(book, a, b, usage, start, edges)
        ledger, bounds, resets, changes = p.ledger, p.bounds, p.resets, p.changes
        opens = {a, *edges}
        out: list[Window] = []
        w_start, w_usage, w_balance = a, ZERO, ledger.balance()
        for i, u in enumerate(p.usage):
            lo, hi = bounds[i], bounds[i + 1]
            ledger.burn(u)
            ledger.step(hi, hi in resets, changes.get(hi))
            if lo >= a:
                w_usage += u
            if hi in opens or hi == b:
                if hi > a and w_usage != 0:
                    out.append(Window(w_start, hi, w_usage, w_balance))
                w_start, w_usage, w_balance = hi, ZERO, ledger.balance()
        return out
