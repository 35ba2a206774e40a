"""The replay machinery shared by the engine and the history (docs/semantics.md §6).

A `Book` holds the grants in burn order and the reset schedule. A `Ledger` holds
per-grant balances (a list in burn order) and the carried overage, and applies the
start-of-phase steps and the burn-down. `prepare_replay` finds where a replay starts (a
snapshot, a reset whose outcome does not depend on the past, or measure_usage_from)
and every phase boundary up to its target.

Invariant kept by every step: a grant that is not active holds 0, so the burn-down can
walk all grants and skip the empty ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Context, Decimal

from creditgate.domain.errors import BadInput
from creditgate.domain.model import Grant, Metered, Recurrence, State, UsageFn
from creditgate.domain.periods import Schedule
from creditgate.domain.recurrence import (
    ceil_m,
    index_at_or_before,
    instants_between,
    on_minute,
    recurrence_instant,
    utc,
)

ZERO = Decimal(0)
CONTEXT = Context(prec=34)
_TINY = timedelta(microseconds=1)

Changes = dict[datetime, list[tuple[int, Decimal]]]


class Entry:
    """One grant, compiled: instants on whole minutes, `end` = min(expiry, void)."""

    __slots__ = ("amount", "eff", "end", "id", "live", "max_ro", "min_ro", "pos", "rec")

    def __init__(self, grant: Grant, pos: int) -> None:
        self.id = grant.id
        self.pos = pos
        self.amount = grant.amount
        self.min_ro = grant.min_rollover
        self.max_ro = grant.max_rollover
        self.eff = ceil_m(utc(grant.effective_at))
        end = ceil_m(utc(grant.expires_at))
        if grant.voided_at is not None:
            end = min(end, ceil_m(utc(grant.voided_at)))
        self.end = end
        self.live = end > self.eff  # active at some instant
        rec = grant.recurrence
        self.rec = None if rec is None else Recurrence(rec.interval, ceil_m(utc(rec.anchor)))

    def active(self, t: datetime) -> bool:
        return self.eff <= t < self.end

    def recurs_at(self, t: datetime) -> bool:
        rec = self.rec
        return rec is not None and recurrence_instant(rec, index_at_or_before(rec, t)) == t


def _burn_key(g: Grant) -> tuple[int, datetime, datetime, str]:
    return (g.priority, utc(g.expires_at), utc(g.created_at), g.id)


class Book:
    """The grants of one entitlement in burn order, and its reset schedule."""

    __slots__ = ("entries", "ids", "memoryful", "sched", "soft")

    def __init__(self, ent: Metered, grants: Iterable[Grant]) -> None:
        ordered = sorted(grants, key=_burn_key)
        self.entries = [Entry(g, i) for i, g in enumerate(ordered)]
        self.ids = [e.id for e in self.entries]
        if len(set(self.ids)) != len(self.ids):
            raise BadInput("duplicate grant id")
        # grants whose balance after a reset depends on their balance before it
        self.memoryful = [e for e in self.entries if e.live and e.min_ro != e.max_ro]
        self.sched = Schedule(ent)
        self.soft = ent.is_soft_limit

    def mapping(self, bal: Sequence[Decimal]) -> dict[str, Decimal]:
        return dict(zip(self.ids, bal, strict=True))

    def fresh(self, at: datetime) -> list[Decimal]:
        """Balances after steps 1-4 at `at`, which is measure_usage_from or a reset
        the past does not matter to (see `forgets`)."""
        bal = [ZERO] * len(self.entries)
        first = at == self.sched.start
        for e in self.entries:
            if e.active(at):
                full = first or e.eff == at or e.recurs_at(at)
                bal[e.pos] = e.amount if full else e.min_ro
        return bal

    def forgets(self, reset: datetime) -> bool:
        """True when the state after this reset does not depend on the state before:
        every active grant is clamped to a fixed amount or refilled at the reset."""
        return not any(e.active(reset) and e.eff != reset and not e.recurs_at(reset) for e in self.memoryful)

    def changes(self, lo: datetime, hi: datetime) -> Changes:
        """Steps 2-4 at every instant in (lo, hi]: (position, new balance) pairs."""
        out: Changes = {}
        for e in self.entries:
            if not e.live or e.eff > hi or e.end <= lo:
                continue
            if e.eff > lo:
                out.setdefault(e.eff, []).append((e.pos, e.amount))
            if e.end <= hi:
                out.setdefault(e.end, []).append((e.pos, ZERO))
            if e.rec is not None:
                top = min(hi, e.end - _TINY)
                for r in instants_between(e.rec, max(lo, e.eff), top):
                    out.setdefault(r, []).append((e.pos, e.amount))
        return out

    def snapshot_ok(self, start: State, limit: datetime) -> bool:
        s = start.at
        if not on_minute(s) or s < self.sched.start:
            return False
        if s > limit and self.sched.is_reset(s):
            return False  # it includes a reset that the read does not apply
        known = start.balances
        return all(e.id in known for e in self.entries if e.live and e.eff <= s)

    def starts_phase(self, t: datetime) -> bool:
        """True when a phase starts at t: measure_usage_from, a reset, or a grant
        becoming effective, ending or recurring."""
        if t == self.sched.start or self.sched.is_reset(t):
            return True
        return any(
            e.live and (e.eff == t or e.end == t or (e.eff < t < e.end and e.recurs_at(t))) for e in self.entries
        )

    def load(self, start: State) -> list[Decimal]:
        s = start.at
        known = start.balances
        return [known.get(e.id, ZERO) if e.active(s) else ZERO for e in self.entries]


def _greedy(bal: list[Decimal], need: Decimal) -> Decimal:
    """Take `need` from the balances in order; return what is left (the overage, or a
    credit when `need` is negative)."""
    if need > 0:
        for i, b in enumerate(bal):
            if b > 0:
                if b >= need:
                    bal[i] = b - need
                    return ZERO
                bal[i] = ZERO
                need -= b
    return need


class Ledger:
    """Per-grant balances in burn order, the carried overage (negative: a credit from
    negative usage) and the usage since the last reset."""

    __slots__ = ("bal", "book", "carry", "used")

    def __init__(self, book: Book, bal: list[Decimal], carry: Decimal, used: Decimal) -> None:
        self.book = book
        self.bal = bal
        self.carry = carry
        self.used = used

    def burn(self, usage: Decimal) -> None:
        """Step 5 then the phase's usage: burn the carried overage plus `usage`.

        `usage` must be the usage of the whole phase (or of its start up to a read):
        with negative usage, burning a phase in pieces is not the same as at once.
        """
        self.used += usage
        self.carry = _greedy(self.bal, self.carry + usage)

    def peek(self, usage: Decimal) -> tuple[list[Decimal], Decimal]:
        """Balances and carry if `usage` were burnt now, leaving the ledger as is."""
        bal = list(self.bal)
        return bal, _greedy(bal, self.carry + usage)

    def run(self, replay: Replay, stop: datetime) -> None:
        """Burn and step through `replay` up to the bound `stop`, every bound being a
        phase start or the end of the replay. The hot loop of every read: `burn` and
        `step` inlined, and the exhausted grants at the head of the burn order skipped."""
        bal, carry, used = self.bal, self.carry, self.used
        bounds, resets, changes = replay.bounds, replay.resets, replay.changes
        size = len(bal)
        first = 0  # every balance before this index is 0
        for i, u in enumerate(replay.usage):
            at = bounds[i + 1]
            if at > stop:
                break
            used += u
            need = carry + u
            if need > 0:
                j = first
                while j < size:
                    b = bal[j]
                    if b > 0:
                        if b >= need:
                            bal[j] = b - need
                            need = ZERO
                            break
                        bal[j] = ZERO
                        need -= b
                    j += 1
                first = j
            carry = need
            if at in resets:
                self.step(at, True, None)
                carry = used = ZERO
                first = 0
            change = changes.get(at)
            if change:
                for pos, value in change:
                    bal[pos] = value
                    if pos < first:
                        first = pos
        self.carry, self.used = carry, used

    def step(self, at: datetime, reset: bool, changes: list[tuple[int, Decimal]] | None) -> None:
        """Steps 1-4 at `at`."""
        bal = self.bal
        if reset:
            for e in self.book.entries:
                if e.active(at):
                    b = bal[e.pos]
                    bal[e.pos] = min(e.max_ro, max(e.min_ro, b))
                else:
                    bal[e.pos] = ZERO
            self.carry = ZERO
            self.used = ZERO
        if changes:
            for pos, value in changes:
                bal[pos] = value

    def balance(self, usage: Decimal = ZERO) -> Decimal:
        """The entitlement balance once `usage` and the carried overage are burnt."""
        total = sum(self.bal, ZERO)
        debt = self.carry + usage
        if debt <= 0:
            return total
        return total - debt if total > debt else ZERO

    def state(self, at: datetime) -> State:
        return State(at, self.book.mapping(self.bal), self.carry, self.used)


@dataclass(slots=True)
class Replay:
    """A replay from `bounds[0]` to `bounds[-1]`: `usage[i]` is U(bounds[i], bounds[i+1]).

    `phases` holds the bounds where a phase starts (something changes there, or the
    origin is measure_usage_from or a reset); the other bounds only split the usage
    (window edges, the target, a snapshot taken inside a phase).
    """

    ledger: Ledger
    bounds: list[datetime]
    resets: set[datetime]
    changes: Changes
    usage: Sequence[Decimal]
    phases: set[datetime]


def prepare_replay(
    book: Book,
    target: datetime,
    limit: datetime,
    usage: UsageFn,
    start: State | None = None,
    extra: Iterable[datetime] = (),
    begin: datetime | None = None,
) -> Replay:
    """Prepare a replay up to `target` applying the resets <= `limit` (limit <= target).

    The replay starts at or before `begin` (default: limit), from a snapshot at or
    before `begin` if one is usable. `extra` adds boundaries
    (in (origin, target)) where nothing changes, e.g. window edges. The usage function
    is called once, with every boundary; when the replay starts inside the period of
    `limit` from a snapshot without its period usage, that period's start is prepended
    so that the period usage can be reported.
    """
    sched = book.sched
    begin = limit if begin is None else begin
    period = sched.period_start(limit)
    snap = start if start is not None and start.at <= begin and book.snapshot_ok(start, limit) else None
    origin = sched.period_start(min(begin, limit))
    whole = True  # a phase starts at the origin
    while True:
        if snap is not None and snap.at >= origin:
            origin = snap.at
            whole = book.starts_phase(origin)
            used = snap.period_usage if sched.period_start(origin) == period else ZERO
            ledger = Ledger(book, book.load(snap), snap.overage, used or ZERO)
            break
        if origin == sched.start or book.forgets(origin):
            used = ZERO
            ledger = Ledger(book, book.fresh(origin), ZERO, ZERO)
            break
        origin = sched.reset_before(origin)
    changes = book.changes(origin, target)
    resets = {r for r in sched.resets(origin, target) if r <= limit}
    points = {target, *changes, *resets}
    points.update(x for x in extra if origin < x < target)
    bounds = sorted(points)
    if bounds[0] != origin:
        bounds.insert(0, origin)
    head = used is None and period < origin
    calls = [period, *bounds] if head else bounds
    values: Sequence[Decimal] = usage(calls) if len(calls) > 1 else ()
    if len(values) != len(calls) - 1:
        raise ValueError(f"usage function returned {len(values)} values for {len(calls)} boundaries")
    if head:
        ledger.used = values[0]
        values = values[1:]
    phases = {*changes, *resets, origin} if whole else {*changes, *resets}
    return Replay(ledger, bounds, resets, changes, values, phases)
