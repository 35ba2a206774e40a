"""Property tests over random grants, usage, voids and resets.

Time is compressed: usage periods and recurrences are mostly HOUR or DAY, so that a
span of about a day holds many periods, refills, expiries and voids, and the naive
minute-by-minute reference stays fast.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from creditgate.domain import (
    Grant,
    Interval,
    ManualReset,
    Metered,
    Recurrence,
    WindowSize,
    burndown,
    next_change,
    period_start,
    state_at,
    value_at,
    windowed_history,
)
from tests.domain.helpers import MIN, D, Usage, at
from tests.domain.reference import Reference

T0 = at("2024-02-28 00:00")
SPAN = 1500  # minutes
TINY = timedelta(microseconds=1)
SCALE = int(os.environ.get("CREDITGATE_PROPERTY_SCALE", "1"))  # more examples for a deeper hunt


def examples(n: int) -> settings:
    return settings(max_examples=n * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])


FAST = examples(250)


@dataclass
class Case:
    ent: Metered
    grants: list[Grant]
    events: dict[datetime, Decimal]
    base: datetime

    def usage(self) -> Usage:
        return Usage(self.events)

    def reference(self) -> Reference:
        return Reference(self.ent, self.grants, self.events, self.base + (SPAN + 2) * MIN)


@cache  # strategies are built once: building them inside draws is most of the run time
def minutes(base: datetime, lo: int, hi: int) -> st.SearchStrategy[datetime]:
    """Whole minutes in [base + lo, base + hi], often on a coarse grid so that
    instants coincide (an expiry on a recurrence, a void on a reset...)."""
    fine = st.integers(lo, hi).map(lambda k: base + k * MIN)
    coarse = [
        st.integers(-(-lo // step), hi // step).map(lambda k, step=step: base + k * step * MIN)  # type: ignore[misc]
        for step in (15, 30, 60)
    ]
    return st.one_of(fine, *coarse)


@cache
def tenths(lo: int, hi: int) -> st.SearchStrategy[Decimal]:
    return st.integers(lo, hi).map(lambda n: D(n) / 10)


_MIN_RO = st.sampled_from([D(0), D(0), D(1), D("2.5")])
_MAX_RO = st.sampled_from([D(0), D(1), D(5), D(100)])
_DURATIONS = st.integers(1, 2 * SPAN) | st.sampled_from([60, 120, 180, 1440])


@cache
def _recurrences(base: datetime) -> st.SearchStrategy[Recurrence | None]:
    hourly_or_daily = st.sampled_from([Interval.HOUR, Interval.HOUR, Interval.DAY])
    return st.none() | st.builds(Recurrence, hourly_or_daily, minutes(base, -3000, SPAN))


@st.composite
def grants(draw: st.DrawFn, base: datetime) -> list[Grant]:
    out: list[Grant] = []
    for gid in draw(st.lists(st.sampled_from("abcdefg"), max_size=5, unique=True)):
        eff = draw(minutes(base, -300, SPAN))
        expires = eff + draw(_DURATIONS) * MIN
        voided = draw(st.none() | minutes(base, -100, SPAN))
        recurrence = draw(_recurrences(base))
        min_ro = draw(_MIN_RO)
        max_ro = min_ro + draw(_MAX_RO)
        out.append(
            Grant(
                id=gid,
                amount=draw(tenths(1, 200)),
                priority=draw(st.integers(0, 2)),
                effective_at=eff,
                expires_at=expires,
                created_at=base + draw(st.integers(0, 2)) * MIN,
                voided_at=voided,
                recurrence=recurrence,
                min_rollover=min_ro,
                max_rollover=max_ro,
            )
        )
    return out


@st.composite
def cases(draw: st.DrawFn, base: datetime = T0, negative: bool = False) -> Case:
    start = base + draw(st.integers(0, 120)) * MIN
    interval = draw(st.sampled_from([Interval.HOUR, Interval.HOUR, Interval.DAY, Interval.MONTH]))
    back = 50000 if interval == Interval.MONTH else 3000
    anchor = draw(minutes(base, -back, SPAN))
    resets = draw(
        st.lists(
            st.builds(ManualReset, minutes(base, 0, SPAN), st.booleans()),
            max_size=3,
            unique_by=lambda r: r.at,  # the API cannot create two resets at one instant
        )
    )
    ent = Metered(start, Recurrence(interval, anchor), draw(st.booleans()), tuple(resets))
    amounts = tenths(-30 if negative else 0, 60)
    events = draw(st.dictionaries(minutes(base, -60, SPAN), amounts, max_size=40))
    return Case(ent, draw(grants(base)), events, base)


def instants(base: datetime = T0) -> st.SearchStrategy[datetime]:
    """Whole minutes or just before one (so that t' is often where something happens),
    before measure_usage_from or inside the span."""
    return st.builds(
        lambda m, s: m - timedelta(microseconds=s), minutes(base, -200, SPAN), st.sampled_from([0, 0, 1, 30_000_000])
    )


@examples(500)
@given(cases(), st.lists(instants(), min_size=1, max_size=6))
def test_agrees_with_the_naive_reference(case: Case, ts: list[datetime]) -> None:
    ref = case.reference()
    for t in ts:
        v = value_at(case.ent, case.grants, case.usage(), t)
        balances, overage, used, ps = ref.value(t)
        assert dict(v.balances) == balances, t
        assert (v.overage, v.usage, v.period_start) == (overage, used, ps), t
        assert v.balance == sum(balances.values(), D(0))
        assert v.has_access == (case.ent.is_soft_limit or v.balance > 0)
        assert all(b >= 0 for b in v.balances.values())


@FAST
@given(cases(negative=True), minutes(T0, -50, SPAN), minutes(T0, -50, SPAN), instants())
def test_snapshots_change_nothing(case: Case, s1: datetime, s2: datetime, t: datetime) -> None:
    # (negative usage allowed: the credit it leaves must survive a split too)
    s1, s2 = min(s1, s2), max(s1, s2)
    t = max(t, s2)
    direct = value_at(case.ent, case.grants, case.usage(), t)
    first = state_at(case.ent, case.grants, case.usage(), s1)
    assert value_at(case.ent, case.grants, case.usage(), t, start=first) == direct
    second = state_at(case.ent, case.grants, case.usage(), s2, start=first)
    assert second == state_at(case.ent, case.grants, case.usage(), s2)
    assert value_at(case.ent, case.grants, case.usage(), t, start=second) == direct
    # a snapshot at t' = ceil_m(t) > t (allowed; unusable when t' is a reset)
    ceil = t.replace(second=0, microsecond=0) + (MIN if t.second or t.microsecond else 0 * MIN)
    upper = state_at(case.ent, case.grants, case.usage(), ceil)
    assert value_at(case.ent, case.grants, case.usage(), t, start=upper) == direct
    assert all(b >= 0 for b in direct.balances.values())


@FAST
@given(cases(), instants())
def test_period_usage_is_burnt_or_overage(case: Case, t: datetime) -> None:
    ps = period_start(case.ent, t)
    if t < case.ent.measure_usage_from:
        return
    end = max(t.replace(second=0, microsecond=0) + (MIN if t.second or t.microsecond else 0 * MIN), ps)
    v = value_at(case.ent, case.grants, case.usage(), t)
    if end == ps:
        assert v.usage == 0
        return
    segs = burndown(case.ent, case.grants, case.usage(), ps, end)
    burnt = sum((x for s in segs for x in s.grant_usage.values()), D(0))
    assert burnt + segs[-1].overage == sum((s.usage for s in segs), D(0)) == v.usage
    for a, b in itertools.pairwise(segs):
        assert a.end == b.start
    for s in segs:
        assert s.balance_at_start == sum(s.balances_at_start.values(), D(0))
        assert s.balance_at_end == sum(s.balances_at_end.values(), D(0))
        assert all(s.balances_at_start[g] - s.balances_at_end[g] == u for g, u in s.grant_usage.items())
        assert all(u >= 0 for u in s.grant_usage.values())


@FAST
@given(cases(), instants(), minutes(T0, -60, SPAN), tenths(1, 50))
def test_more_usage_never_raises_a_balance(case: Case, t: datetime, m: datetime, extra: Decimal) -> None:
    before = value_at(case.ent, case.grants, case.usage(), t)
    after = value_at(case.ent, case.grants, case.usage().add(m, extra), t)
    assert all(after.balances[g] <= b for g, b in before.balances.items())
    assert after.overage >= before.overage


@FAST
@given(cases(), minutes(T0, 0, SPAN), st.data())
def test_a_void_changes_nothing_before_it(case: Case, v: datetime, data: st.DataObject) -> None:
    if not case.grants:
        return
    i = data.draw(st.integers(0, len(case.grants) - 1))
    g = case.grants[i]
    if g.voided_at is not None and g.voided_at <= v:
        return
    voided = [*case.grants[:i], replace(g, voided_at=v), *case.grants[i + 1 :]]
    # ceil_m(t) < v; a read before measure_usage_from reads at measure_usage_from
    t = data.draw(minutes(T0, -100, SPAN).filter(lambda x: max(x, case.ent.measure_usage_from) < v))
    assert value_at(case.ent, voided, case.usage(), t) == value_at(case.ent, case.grants, case.usage(), t)


@FAST
@given(cases(), instants(), instants())
def test_burndown_from_any_instant(case: Case, a: datetime, b: datetime) -> None:
    a, b = min(a, b), max(a, b)
    a = max(a, case.ent.measure_usage_from)
    if b <= a:
        return
    ps = period_start(case.ent, a)
    whole = burndown(case.ent, case.grants, case.usage(), ps, b)
    part = burndown(case.ent, case.grants, case.usage(), a, b)
    if not part:
        return
    start = part[0].start
    # the segments of the full replay that start at or after `start` are the same;
    # the one containing `start` ends like the first partial one
    later = [s for s in whole if s.start >= start]
    if part[0].start not in {s.start for s in whole}:
        cut = next(s for s in whole if s.start < start < s.end)
        head, *tail = part
        assert (head.end, head.balances_at_end, head.overage) == (cut.end, cut.balances_at_end, cut.overage)
        assert tail == later
    else:
        assert part == later


@FAST
@given(cases(), instants())
def test_next_change_bounds_a_constant_value(case: Case, t: datetime) -> None:
    # with no usage from t' on, the value stays the same on [t, next_change)
    ceil = t.replace(second=0, microsecond=0) + (MIN if t.second or t.microsecond else 0 * MIN)
    quiet = Usage({m: x for m, x in case.events.items() if m < ceil})
    c = next_change(case.ent, case.grants, t)
    assert c is not None and c > t
    now = value_at(case.ent, case.grants, quiet, t)
    for probe in (c - TINY, t + (c - t) / 2):
        later = value_at(case.ent, case.grants, quiet, probe)
        assert replace(later, at=t) == now


@FAST
@given(cases(negative=True), instants(), instants(), st.sampled_from(["UTC", "Asia/Kolkata"]))
def test_window_balances_are_values(case: Case, a: datetime, b: datetime, tz: str) -> None:
    # negative usage included: a window edge inside a phase must not cut its usage
    a, b = min(a, b), max(a, b)
    a = max(a, case.ent.measure_usage_from)
    if b <= a:
        return
    for w in windowed_history(case.ent, case.grants, case.usage(), a, b, WindowSize.HOUR, tz):
        assert w.balance_at_start == value_at(case.ent, case.grants, case.usage(), w.start).balance


@FAST
@given(cases(negative=True), minutes(T0, -50, SPAN), instants(), instants())
def test_history_from_a_snapshot(case: Case, s: datetime, a: datetime, b: datetime) -> None:
    # a snapshot at or before `from` (inside a phase or not) changes no history
    a, b = min(a, b), max(a, b)
    a = max(a, case.ent.measure_usage_from)
    if b <= a:
        return
    s = min(s, a.replace(second=0, microsecond=0))
    snap = state_at(case.ent, case.grants, case.usage(), s)
    want = burndown(case.ent, case.grants, case.usage(), a, b)
    assert burndown(case.ent, case.grants, case.usage(), a, b, start=snap) == want
    win = windowed_history(case.ent, case.grants, case.usage(), a, b, WindowSize.HOUR, "UTC")
    assert windowed_history(case.ent, case.grants, case.usage(), a, b, WindowSize.HOUR, "UTC", start=snap) == win


PARIS_SPRING = at("2024-03-30 12:00")
PARIS_AUTUMN = at("2024-10-26 12:00")


@examples(60)
@given(
    st.sampled_from([T0, PARIS_SPRING, PARIS_AUTUMN]).flatmap(
        lambda base: st.tuples(cases(base), minutes(base, 0, SPAN), minutes(base, 0, SPAN))
    ),
    st.sampled_from([WindowSize.HOUR, WindowSize.DAY, WindowSize.MINUTE]),
    st.sampled_from(["UTC", "Europe/Paris", "Asia/Kolkata", "America/St_Johns"]),
)
def test_windows_agree_with_the_reference(drawn: tuple[Case, datetime, datetime], size: WindowSize, tz: str) -> None:
    case, a, b = drawn
    a, b = min(a, b), max(a, b)
    a = max(a, case.ent.measure_usage_from)
    if b <= a:
        return
    u = case.usage()
    got = windowed_history(case.ent, case.grants, u, a, b, size, tz)
    want = case.reference().windows(a, b, size.value, tz)
    assert [(w.start, w.end, w.usage, w.balance_at_start) for w in got] == want
    assert len(u.calls) <= 1
