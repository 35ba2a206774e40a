"""state_at snapshots and next_change (docs/semantics.md §6.4, §8)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from creditgate.domain import Interval, ManualReset, State, next_change, state_at, value_at
from creditgate.domain.errors import BadInput
from tests.domain.helpers import MIN, D, Usage, at, grant, monthly

START = at("2024-01-01 00:00")
ENT = monthly(START)
TINY = timedelta(microseconds=1)


def test_state_at_a_reset_is_the_period_start() -> None:
    # Jan: 6 of 10 used, rollover up to 10 -> Feb 1 starts with 4, usage 0, no overage
    u = Usage({at("2024-01-10 00:00"): 6, at("2024-02-10 00:00"): 1})
    g = [grant("a", 10, START, max_rollover=10)]
    s = state_at(ENT, g, u, at("2024-02-01 00:00"))
    assert s == State(at("2024-02-01 00:00"), {"a": D(4)}, D(0), D(0))
    u.calls.clear()
    v = value_at(ENT, g, u, at("2024-02-20 00:00"), start=s)
    assert v == value_at(ENT, g, Usage(u.events), at("2024-02-20 00:00"))
    assert v.balance == 3
    # the read started at the snapshot: no boundary before Feb 1
    assert u.calls[0][0] == at("2024-02-01 00:00")


def test_state_at_keeps_the_carried_overage_unburnt() -> None:
    # overage 3 carried into 11:00 where B becomes effective: the state at 11:00 is
    # after steps 1-4 (B full) with the overage still carried; value_at burns it.
    u = Usage({at("2024-01-01 10:00"): 8})
    g = [grant("a", 5, START), grant("b", 10, at("2024-01-01 11:00"))]
    s = state_at(ENT, g, u, at("2024-01-01 11:00"))
    assert (dict(s.balances), s.overage, s.period_usage) == ({"a": 0, "b": 10}, 3, 8)
    assert value_at(ENT, g, u, at("2024-01-01 11:00"), start=s).balances == {"a": 0, "b": 7}


def test_snapshot_at_a_recurrence_applies_it_once() -> None:
    # daily 10, 3 used on day 1; snapshot at the day-2 instant holds 10 (set, once)
    u = Usage({at("2024-01-01 10:00"): 3, at("2024-01-02 05:00"): 2})
    g = [grant("d", 10, START, every=Interval.DAY)]
    s = state_at(ENT, g, u, at("2024-01-02 00:00"))
    assert s.balances == {"d": 10}
    assert value_at(ENT, g, u, at("2024-01-02 06:00"), start=s).balance == 8


def test_state_inside_a_phase_keeps_its_usage_unburnt() -> None:
    # B effective Jan 5 starts a phase that lasts past Jan 10. The state at Jan 10 holds
    # the balances at Jan 5 (A: 10 - 2 = 8, B: 4) and the 1 used since as a debt.
    u = Usage({at("2024-01-02 00:00"): 2, at("2024-01-07 00:00"): 1})
    g = [grant("a", 10, START), grant("b", 4, at("2024-01-05 00:00"))]
    s = state_at(ENT, g, u, at("2024-01-10 00:00"))
    assert s == State(at("2024-01-10 00:00"), {"a": D(8), "b": D(4)}, D(1), D(3))
    assert value_at(ENT, g, u, at("2024-01-10 00:00"), start=s).balances == {"a": D(7), "b": D(4)}


def test_snapshots_with_negative_usage() -> None:
    # one phase [00:00, 00:02): +0.1 then -0.1 nets 0, nothing burnt. Burning the phase in
    # two pieces at 00:01 would burn 0.1 first and never give it back.
    t0 = START
    u = Usage({t0: "0.1", t0 + MIN: "-0.1"})
    g = [grant("a", "0.1", t0)]
    s = state_at(ENT, g, u, t0 + MIN)
    assert s == State(t0 + MIN, {"a": D("0.1")}, D("0.1"), D("0.1"))
    assert value_at(ENT, g, u, t0 + 2 * MIN, start=s).balance == D("0.1")
    assert value_at(ENT, g, u, t0 + 2 * MIN).balance == D("0.1")
    # a read at 00:01 itself sees the phase so far: 0.1 used
    assert value_at(ENT, g, u, t0 + MIN).balance == 0
    assert value_at(ENT, g, u, t0 + MIN, start=s).balance == 0


def test_snapshot_without_period_usage_fetches_it_in_the_same_call() -> None:
    u = Usage({at("2024-01-05 00:00"): 2, at("2024-01-12 00:00"): 1})
    g = [grant("a", 10, START), grant("b", 1, at("2024-01-10 00:00"), priority=5)]
    s = state_at(ENT, g, u, at("2024-01-10 00:00"))
    bare = State(s.at, s.balances, s.overage)
    u.calls.clear()
    v = value_at(ENT, g, u, at("2024-01-15 00:00"), start=bare)
    assert (v.usage, v.balance) == (3, 8)
    assert u.calls == [[START, at("2024-01-10 00:00"), at("2024-01-15 00:00")]]


def test_unusable_snapshots_are_ignored() -> None:
    u = Usage({at("2024-01-05 00:00"): 2})
    g = [grant("a", 10, START)]
    right = value_at(ENT, g, u, at("2024-01-20 00:00"))
    # stale: misses a grant effective before its instant
    stale = State(at("2024-01-10 00:00"), {}, D(0))
    assert value_at(ENT, g, u, at("2024-01-20 00:00"), start=stale) == right
    # from the future of t'
    future = state_at(ENT, g, u, at("2024-01-25 00:00"))
    assert value_at(ENT, g, u, at("2024-01-20 00:00"), start=future) == right
    # taken at the reset Feb 1, read at 23:59:30 on Jan 31 (t' = Feb 1, still January)
    feb = state_at(ENT, g, u, at("2024-02-01 00:00"))
    jan = value_at(ENT, g, u, at("2024-01-31 23:59:30"), start=feb)
    assert (jan.balance, jan.period_start) == (8, START)


def test_snapshot_from_an_earlier_period_replays_through_resets() -> None:
    u = Usage({at("2024-01-05 00:00"): 2, at("2024-02-05 00:00"): 1, at("2024-03-05 00:00"): 4})
    g = [grant("a", 10, START, max_rollover=9)]
    s = state_at(ENT, g, u, at("2024-01-10 00:00"))
    t = at("2024-03-10 00:00")
    # Jan: 10-2 = 8 -> Feb 8 -> 7 -> Mar 7 -> 3
    assert value_at(ENT, g, u, t, start=s) == value_at(ENT, g, u, t)
    assert value_at(ENT, g, u, t).balance == 3


def test_state_at_needs_a_whole_minute_and_clamps_to_measure_usage_from() -> None:
    with pytest.raises(BadInput):
        state_at(ENT, [], Usage(), at("2024-01-10 00:00:30"))
    s = state_at(ENT, [grant("a", 1, START)], Usage(), at("2023-06-01 00:00"))
    assert s.at == START and s.balances == {"a": 1}


def test_next_change_grant_events() -> None:
    eff = at("2024-01-10 00:00")
    g = [grant("a", 10, eff, expires=at("2024-01-12 00:00"))]
    # seen by reads from 23:59:00.000001 on Jan 9 (t' = Jan 10)
    assert next_change(ENT, g, at("2024-01-05 00:00")) == eff - MIN + TINY
    assert next_change(ENT, g, at("2024-01-09 23:59:30")) == at("2024-01-12 00:00") - MIN + TINY
    # after the expiry only the Feb 1 reset is left
    assert next_change(ENT, g, at("2024-01-20 00:00")) == at("2024-02-01 00:00")


def test_next_change_recurrence_void_and_manual_reset() -> None:
    g = [grant("d", 10, START, every=Interval.DAY, voided=at("2024-01-05 12:00"))]
    assert next_change(ENT, g, at("2024-01-03 10:00")) == at("2024-01-04 00:00") - MIN + TINY
    assert next_change(ENT, g, at("2024-01-04 12:00")) == at("2024-01-05 00:00") - MIN + TINY
    assert next_change(ENT, g, at("2024-01-05 06:00")) == at("2024-01-05 12:00") - MIN + TINY
    ent = monthly(START, resets=(ManualReset(at("2024-01-20 00:00"), retain_anchor=False),))
    assert next_change(ent, [], at("2024-01-10 00:00")) == at("2024-01-20 00:00")
    assert next_change(ent, [], at("2024-01-20 00:00")) == at("2024-02-20 00:00")


def test_next_change_is_when_the_value_changes() -> None:
    g = [grant("a", 5, START), grant("b", 10, at("2024-01-01 12:00"))]
    t = at("2024-01-01 09:00")
    c = next_change(ENT, g, t)
    assert c is not None
    assert value_at(ENT, g, Usage(), c - TINY).balance == value_at(ENT, g, Usage(), t).balance == 5
    assert value_at(ENT, g, Usage(), c).balance == 15
