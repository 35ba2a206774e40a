"""Burn-down and windowed history (docs/semantics.md §7)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal, localcontext

from creditgate.domain.errors import BadInput
from creditgate.domain.ledger import CONTEXT, ZERO, Book, Replay, prepare_replay
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


def _replay(book: Book, a: datetime, b: datetime, usage: UsageFn, start: State | None,
            extra: Iterable[datetime]) -> Replay:
    return prepare_replay(book, b, b, usage, start, extra=[a, *extra], begin=a)


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
    before a). Segments split at every phase boundary and reset. A segment starting at
    a phase boundary starts after steps 1-4 there; one starting at `a` inside a phase
    starts at the value-like state there (the phase's usage up to `a` burnt). Its grant
    usage includes the carried overage it paid; its overage is what is carried at its
    end.
    """
    with localcontext(CONTEXT):
        book = Book(ent, grants)
        a, b = _range(book, a, b)
        if a == b:
            return []
        p = _replay(book, a, b, usage, start, ())
        ledger, bounds, phases = p.ledger, p.bounds, p.phases
        ids = book.ids
        out: list[Segment] = []
        pending = ZERO  # usage since the last phase start, not burnt yet
        opened: tuple[datetime, list[Decimal]] | None = None
        used = ZERO
        for i, u in enumerate(p.usage):
            lo, hi = bounds[i], bounds[i + 1]
            if lo in phases and (lo >= a):
                opened, used = (lo, list(ledger.bal)), ZERO  # after steps 1-4 at lo
            elif lo == a:
                opened, used = (lo, ledger.peek(pending)[0]), ZERO  # inside a phase
            pending += u
            used += u
            if hi not in phases and hi != b:
                continue
            ledger.burn(pending)
            pending = ZERO
            if opened is not None:
                at, before = opened
                after = ledger.bal
                out.append(
                    Segment(
                        start=at,
                        end=hi,
                        usage=used,
                        overage=ledger.carry if ledger.carry > 0 else ZERO,
                        balance_at_start=sum(before, ZERO),
                        balance_at_end=sum(after, ZERO),
                        balances_at_start=dict(zip(ids, before, strict=True)),
                        balances_at_end=dict(zip(ids, after, strict=True)),
                        grant_usage={g: x - y for g, x, y in zip(ids, before, after, strict=True)},
                    )
                )
            ledger.step(hi, hi in p.resets, p.changes.get(hi))
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
        p = _replay(book, a, b, usage, start, edges)
        ledger, bounds, phases = p.ledger, p.bounds, p.phases
        starts = [a, *edges]
        opens = set(starts)
        # the usage of each window first, so that only busy windows need a balance
        totals: dict[datetime, Decimal] = {}
        current: datetime | None = None
        for i, u in enumerate(p.usage):
            if bounds[i] in opens:
                current = bounds[i]
            if current is not None:
                totals[current] = totals.get(current, ZERO) + u
        balances: dict[datetime, Decimal] = {}
        if totals.get(a, ZERO) != 0:
            balances[a] = ledger.balance()  # when a is the origin
        pending = ZERO  # usage since the last phase start, not burnt yet
        for i, u in enumerate(p.usage):
            hi = bounds[i + 1]
            pending += u
            if hi in phases:
                ledger.burn(pending)
                pending = ZERO
                ledger.step(hi, hi in p.resets, p.changes.get(hi))
            if hi in opens and totals.get(hi, ZERO) != 0:
                balances[hi] = ledger.balance(pending)
        ends = [*edges, b]
        return [Window(w, end, totals[w], balances[w]) for w, end in zip(starts, ends, strict=True) if w in balances]
