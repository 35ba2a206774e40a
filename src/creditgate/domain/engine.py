"""The balance engine: value and state of a metered entitlement (docs/semantics.md §6).

Pure: plain data in, plain data out; time is an argument and usage arrives through
the `UsageFn` it is given, called at most once per operation. Instants of grants and
resets are rounded up to whole minutes, which is exact for reads at whole minutes (and
every read happens at `ceil_m(t)`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import localcontext

from creditgate.domain.errors import BadInput
from creditgate.domain.ledger import CONTEXT, ZERO, Book, Ledger, prepare_replay
from creditgate.domain.model import Grant, Metered, State, UsageFn, Value
from creditgate.domain.recurrence import MINUTE, ceil_m, on_minute, recurrence_after, utc

_TINY = timedelta(microseconds=1)


def _run(book: Book, target: datetime, limit: datetime, usage: UsageFn, start: State | None) -> Ledger:
    """The ledger at `target` after steps 1-4 there (step 1 only if target <= limit)."""
    p = prepare_replay(book, target, limit, usage, start, begin=target)
    p.ledger.run(p, target)
    return p.ledger


def value_at(ent: Metered, grants: Iterable[Grant], usage: UsageFn, t: datetime, start: State | None = None) -> Value:
    """The entitlement value at t (docs/semantics.md §6.3).

    Replays the phases from the period start of t to t' = ceil_m(t), then applies steps
    2-5 at t' (a reset at t' > t belongs to the next period). Before measure_usage_from:
    the state there, with no usage. `start` (from `state_at`) only saves work: a snapshot
    that cannot be used (later than t', from before measure_usage_from, missing a grant
    effective by its instant, or taken at a reset in (t, t']) is ignored. The result is
    the same with or without it.
    """
    t = utc(t)
    with localcontext(CONTEXT):
        book = Book(ent, grants)
        first = book.sched.start
        if t < first:
            ledger = _run(book, first, first, usage, None)
            period = first
        else:
            ledger = _run(book, ceil_m(t), t, usage, start)
            period = book.sched.period_start(t)
        ledger.burn(ZERO)  # step 5 at t'
        balance = sum(ledger.bal, ZERO)
        return Value(
            at=t,
            period_start=period,
            balance=balance,
            overage=ledger.carry if ledger.carry > 0 else ZERO,
            usage=ledger.used if t >= first else ZERO,
            has_access=book.soft or balance > 0,
            balances=book.mapping(ledger.bal),
        )


def state_at(ent: Metered, grants: Iterable[Grant], usage: UsageFn, t: datetime, start: State | None = None) -> State:
    """The state at the whole minute t, as a snapshot for later reads.

    Usage is burnt per whole phase (with negative usage, a phase burnt in two pieces is
    not the same as burnt at once), so the state keeps the usage of t's phase so far
    unburnt: `balances` are those at the start of the phase containing t, after steps
    1-4 there (a reset included), and `overage` is the debt still to burn, i.e. the
    overage carried into that phase plus its usage up to t (negative: a credit).
    Burning it gives the value at t. When a phase starts at t itself (a reset, a grant
    becoming effective, ending or recurring, measure_usage_from), the balances are
    those after steps 1-4 at t and the overage is the one carried into t, not burnt
    yet: a snapshot at a reset R is the start of the period beginning at R.
    `period_usage` is U(period_start(t), t).

    `value_at(ent, grants, usage, t2, start=state_at(..., t))` equals
    `value_at(ent, grants, usage, t2)` for every t2 >= t, in this period or a later one
    (the replay carries on through the resets). Before measure_usage_from the state at
    measure_usage_from is returned.
    """
    t = utc(t)
    if not on_minute(t):
        raise BadInput(f"state_at needs a whole minute, got {t.isoformat()}")
    with localcontext(CONTEXT):
        book = Book(ent, grants)
        t = max(t, book.sched.start)
        p = prepare_replay(book, t, t, usage, start)
        bounds = p.bounds
        last = max((x for x in bounds if x in p.phases), default=bounds[0])
        ledger = p.ledger
        ledger.run(p, last)
        rest = sum(p.usage[bounds.index(last) :], ZERO)  # the phase so far, unburnt
        ledger.carry += rest
        ledger.used += rest
        return ledger.state(t)


def next_change(ent: Metered, grants: Iterable[Grant], t: datetime) -> datetime | None:
    """The first instant c > t at which `value_at` may differ from `value_at(t)` with no
    new write: value_at is constant on [t, c) except for usage (events already stored
    at future minutes are the caller's to watch).

    A grant event (effective, expiring, voided, recurring) at instant e is seen by reads
    at every t2 with ceil_m(t2) >= e, so it changes the value from e - 1min + 1us on; a
    reset at R changes it from R itself. None when nothing is scheduled.
    """
    t = utc(t)
    book = Book(ent, grants)
    sched = book.sched
    try:
        reset: datetime | None = sched.next_reset(t)
    except BadInput:  # beyond year 9999
        reset = None
    seen = max(ceil_m(t), sched.start)  # grant events at or before this are in value_at(t)
    best: datetime | None = None
    for e in book.entries:
        if not e.live or e.end <= seen:
            continue
        nxt = e.eff if e.eff > seen else e.end
        if e.rec is not None and e.eff <= seen:
            nxt = min(nxt, recurrence_after(e.rec, seen))
        if best is None or nxt < best:
            best = nxt
    grant_change = None if best is None else best - MINUTE + _TINY
    if grant_change is None or (reset is not None and reset < grant_change):
        return reset
    return grant_change
