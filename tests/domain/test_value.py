"""value_at, rule by rule, with hand-worked numbers (docs/semantics.md §6)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from creditgate.domain import Interval, ManualReset, Metered, Recurrence, value_at
from creditgate.domain.errors import BadInput
from tests.domain.helpers import MIN, D, Usage, at, grant, monthly

START = at("2024-01-01 00:00")
ENT = monthly(START)


def test_usage_burns_and_ceil_to_the_minute() -> None:
    # 3 at 10:00 and 4 at 10:01 against a grant of 10
    u = Usage({at("2024-01-01 10:00"): 3, at("2024-01-01 10:01"): 4})
    g = [grant("a", 10, START)]
    assert value_at(ENT, g, u, at("2024-01-01 10:00")).balance == 10  # minute 10:00 not complete
    # t = 10:00:30 reads at t' = 10:01: the minute 10:00 counts
    v = value_at(ENT, g, u, at("2024-01-01 10:00:30"))
    assert (v.balance, v.usage, v.has_access) == (7, 3, True)
    v = value_at(ENT, g, u, at("2024-01-01 12:00"))
    assert (v.balance, v.usage, v.overage, v.period_start) == (3, 7, 0, START)


def test_lower_priority_burns_first() -> None:
    # 15 against p1=10 and p2=10: p1 empties, p2 keeps 5
    u = Usage({at("2024-01-01 10:00"): 15})
    g = [grant("late", 10, START, priority=2), grant("first", 10, START, priority=1)]
    v = value_at(ENT, g, u, at("2024-01-02 00:00"))
    assert v.balances == {"first": 0, "late": 5}
    assert v.balance == 5


def test_ties_expiry_then_created_then_id() -> None:
    # same priority: earlier expiry first; then earlier creation; then smaller id
    u = Usage({at("2024-01-01 10:00"): 5})
    soon = grant("z", 5, START, expires=at("2024-01-20 00:00"))
    later = grant("a", 5, START, expires=at("2024-01-25 00:00"))
    assert value_at(ENT, [later, soon], u, at("2024-01-02 00:00")).balances == {"z": 0, "a": 5}
    old = grant("z", 5, START, created=at("2023-12-01 00:00"))
    new = grant("a", 5, START, created=at("2023-12-02 00:00"))
    assert value_at(ENT, [new, old], u, at("2024-01-02 00:00")).balances == {"z": 0, "a": 5}
    b = grant("b", 5, START)
    a = grant("a", 5, START)
    assert value_at(ENT, [b, a], u, at("2024-01-02 00:00")).balances == {"a": 0, "b": 5}


def test_expiry_at_a_boundary() -> None:
    # A (10, expires 12:00) burns first; 4 used 11:00-12:00 leaves 6 that vanish at 12:00;
    # 5 used at 12:00 falls on B (10 -> 5).
    u = Usage({at("2024-01-01 11:00"): 4, at("2024-01-01 12:00"): 5})
    g = [grant("a", 10, START, priority=0, expires=at("2024-01-01 12:00")), grant("b", 10, START)]
    assert value_at(ENT, g, u, at("2024-01-01 11:59")).balances == {"a": 6, "b": 10}
    # 11:59:01 reads at t' = 12:00 where A is no longer active
    assert value_at(ENT, g, u, at("2024-01-01 11:59:01")).balances == {"a": 0, "b": 10}
    v = value_at(ENT, g, u, at("2024-01-01 12:01"))
    assert v.balances == {"a": 0, "b": 5}
    assert (v.balance, v.usage) == (5, 9)


def test_void_at_a_boundary_is_not_retroactive() -> None:
    # 3 burnt from A before the void at 12:00 stay burnt; from 12:00 A holds 0 and the
    # 2 used at 12:30 fall on B.
    u = Usage({at("2024-01-01 10:00"): 3, at("2024-01-01 12:30"): 2})
    a = grant("a", 10, START, priority=0, voided=at("2024-01-01 12:00"))
    g = [a, grant("b", 10, START)]
    assert value_at(ENT, g, u, at("2024-01-01 11:59")).balances == {"a": 7, "b": 10}
    assert value_at(ENT, g, u, at("2024-01-01 11:59:30")).balances == {"a": 0, "b": 10}
    assert value_at(ENT, g, u, at("2024-01-01 13:00")).balances == {"a": 0, "b": 8}
    # a void at v changes nothing before v
    unvoided = [grant("a", 10, START, priority=0), grant("b", 10, START)]
    assert value_at(ENT, g, u, at("2024-01-01 11:59")) == value_at(ENT, unvoided, u, at("2024-01-01 11:59"))


def test_recurrence_sets_not_adds() -> None:
    # daily 10, 3 used on day 1 -> 7; at the day-2 instant it is set to 10, not 17
    u = Usage({at("2024-01-01 10:00"): 3, at("2024-01-02 10:00"): 1})
    g = [grant("d", 10, START, every=Interval.DAY)]
    assert value_at(ENT, g, u, at("2024-01-01 23:59")).balance == 7
    assert value_at(ENT, g, u, at("2024-01-02 00:00")).balance == 10
    assert value_at(ENT, g, u, at("2024-01-02 12:00")).balance == 9


def test_recurrence_at_effective_at_is_applied_once() -> None:
    # effective and recurring at 06:00: 10 once, not 20
    eff = at("2024-01-01 06:00")
    g = [grant("d", 10, eff, every=Interval.DAY)]
    assert value_at(ENT, g, Usage(), eff).balance == 10
    assert value_at(ENT, g, Usage(), at("2024-01-03 06:00")).balance == 10


def test_recurrence_before_effective_at_is_ignored() -> None:
    # hourly anchor 10:00, effective 10:30: 4 used at 10:40, no refill until 11:00
    g = [grant("h", 5, at("2024-01-01 10:30"), every=Interval.HOUR, anchor=at("2024-01-01 10:00"))]
    u = Usage({at("2024-01-01 10:40"): 4})
    assert value_at(ENT, g, u, at("2024-01-01 10:59")).balance == 1
    assert value_at(ENT, g, u, at("2024-01-01 11:00")).balance == 5


def test_no_recurrence_after_expiry() -> None:
    # daily grant expiring Jan 3 00:00: the Jan 3 instant is not applied
    g = [grant("d", 10, START, every=Interval.DAY, expires=at("2024-01-03 00:00"))]
    assert value_at(ENT, g, Usage(), at("2024-01-03 00:00")).balance == 0


def test_back_dated_grant_pays_the_carried_overage() -> None:
    # A=5, 8 used at 10:00 -> overage 3. B=10 effective at 11:00 pays 3 first -> 7.
    u = Usage({at("2024-01-01 10:00"): 8})
    a = grant("a", 5, START)
    b = grant("b", 10, at("2024-01-01 11:00"), created=at("2024-01-01 12:00"))
    v = value_at(ENT, [a, b], u, at("2024-01-01 10:30"))
    assert (v.balance, v.overage, v.has_access) == (0, 3, False)
    v = value_at(ENT, [a, b], u, at("2024-01-01 12:00"))
    assert (v.balance, v.overage, v.usage) == (7, 0, 8)
    assert v.balances == {"a": 0, "b": 7}


def test_grant_effective_exactly_at_t_prime_counts_and_pays() -> None:
    # overage 3 carried; B effective 12:00 counts for t in (11:59, 12:00] and pays at once
    u = Usage({at("2024-01-01 10:00"): 8})
    g = [grant("a", 5, START), grant("b", 10, at("2024-01-01 12:00"))]
    assert value_at(ENT, g, u, at("2024-01-01 11:59")).overage == 3
    v = value_at(ENT, g, u, at("2024-01-01 11:59:00.000001"))
    assert (v.balance, v.overage) == (7, 0)


def test_recurring_grant_pays_overage_later_in_the_period() -> None:
    # daily 10, 15 used on day 1 -> overage 5; the day-2 refill pays it: 10 - 5 = 5
    u = Usage({at("2024-01-01 10:00"): 15})
    g = [grant("d", 10, START, every=Interval.DAY)]
    v = value_at(ENT, g, u, at("2024-01-01 23:00"))
    assert (v.balance, v.overage) == (0, 5)
    v = value_at(ENT, g, u, at("2024-01-02 00:00"))
    assert (v.balance, v.overage) == (5, 0)


def test_reset_forgives_overage() -> None:
    # January: A=5, 8 used -> overage 3. Feb 1 reset forgives it; B effective Feb 2 keeps 10.
    u = Usage({at("2024-01-10 00:00"): 8})
    g = [grant("a", 5, START), grant("b", 10, at("2024-02-02 00:00"))]
    assert value_at(ENT, g, u, at("2024-01-31 00:00")).overage == 3
    v = value_at(ENT, g, u, at("2024-02-01 00:00"))
    assert (v.overage, v.usage, v.period_start) == (0, 0, at("2024-02-01 00:00"))
    assert value_at(ENT, g, u, at("2024-02-03 00:00")).balances == {"a": 0, "b": 10}


@pytest.mark.parametrize(
    ("used", "min_ro", "max_ro", "after"),
    [
        (18, 5, 10, 5),  # balance 2 < min 5: raised to 5
        (5, 5, 10, 10),  # balance 15 > max 10: capped at 10
        (13, 5, 10, 7),  # 7 in [5, 10]: kept
        (0, 0, 0, 0),  # no rollover: dropped to 0
        (20, 3, 3, 3),  # min = max: always 3 (issueAfterReset style)
    ],
)
def test_rollover_clamp(used: int, min_ro: int, max_ro: int, after: int) -> None:
    u = Usage({at("2024-01-10 00:00"): used})
    g = [grant("a", 20, START, min_rollover=min_ro, max_rollover=max_ro)]
    assert value_at(ENT, g, u, at("2024-02-01 00:00")).balance == after
    # still that amount through February with no usage, and clamped again on Mar 1
    assert value_at(ENT, g, u, at("2024-03-01 00:00")).balance == min(max_ro, max(min_ro, after))


def test_reset_drops_grants_expiring_or_voided_at_the_reset() -> None:
    # both have rollover allowance 10, but neither is active at Feb 1 00:00
    feb = at("2024-02-01 00:00")
    g = [
        grant("exp", 10, START, expires=feb, max_rollover=10, min_rollover=10),
        grant("void", 10, START, voided=feb, max_rollover=10, min_rollover=10),
        grant("keep", 10, START, max_rollover=10, min_rollover=10),
    ]
    assert value_at(ENT, g, Usage(), feb).balances == {"exp": 0, "void": 0, "keep": 10}


def test_reset_then_grant_effective_or_recurring_at_the_reset_gets_amount() -> None:
    # at the reset: rollover clamps to 0, then step 3 and step 4 set the full amount
    feb = at("2024-02-01 00:00")
    u = Usage({at("2024-01-10 00:00"): 4})
    g = [grant("new", 7, feb), grant("rec", 6, START, every=Interval.MONTH)]
    # January: 4 burnt from "rec" (6 -> 2, "new" not yet effective)
    assert value_at(ENT, g, u, at("2024-01-31 00:00")).balances == {"rec": 2, "new": 0}
    assert value_at(ENT, g, u, feb).balances == {"rec": 6, "new": 7}


def test_soft_limit_and_no_grants() -> None:
    u = Usage({at("2024-01-01 10:00"): 5})
    assert value_at(ENT, [], u, at("2024-01-02 00:00")).has_access is False
    soft = monthly(START, is_soft_limit=True)
    v = value_at(soft, [], u, at("2024-01-02 00:00"))
    assert (v.has_access, v.balance, v.overage, v.usage) == (True, 0, 5, 5)
    v = value_at(soft, [grant("a", 2, START)], u, at("2024-01-02 00:00"))
    assert (v.has_access, v.balance, v.overage) == (True, 0, 3)


def test_manual_reset_with_and_without_retain_anchor() -> None:
    # 6 used on Jan 10 from a grant of 10 (rollover up to 10 -> 4 left);
    # reset at Jan 15 keeps min(10, max(0, 4)) = 4
    u = Usage({at("2024-01-10 00:00"): 6, at("2024-01-20 00:00"): 1})
    g = [grant("a", 10, START, max_rollover=10)]
    moved = monthly(START, resets=(ManualReset(at("2024-01-15 00:00"), retain_anchor=False),))
    v = value_at(moved, g, u, at("2024-01-31 00:00"))
    assert (v.balance, v.usage, v.period_start) == (3, 1, at("2024-01-15 00:00"))
    # no reset on Feb 1 with the moved anchor; the next is Feb 15
    assert value_at(moved, g, u, at("2024-02-01 00:00")).period_start == at("2024-01-15 00:00")
    assert value_at(moved, g, u, at("2024-02-15 00:00")).period_start == at("2024-02-15 00:00")
    kept = monthly(START, resets=(ManualReset(at("2024-01-15 00:00"), retain_anchor=True),))
    assert value_at(kept, g, u, at("2024-02-01 00:00")).period_start == at("2024-02-01 00:00")
    assert value_at(kept, g, u, at("2024-02-01 00:00")).balance == 3


def test_value_before_measure_usage_from() -> None:
    # state at measure_usage_from: grants active then, with their amount; usage 0
    ent = monthly(at("2024-01-10 00:00"))
    u = Usage({at("2024-01-05 00:00"): 4, at("2024-01-10 00:00"): 1})
    g = [grant("a", 10, START), grant("later", 3, at("2024-01-11 00:00"))]
    v = value_at(ent, g, u, at("2024-01-05 12:00"))
    assert (v.balance, v.usage, v.period_start, v.at) == (10, 0, at("2024-01-10 00:00"), at("2024-01-05 12:00"))
    assert v.balances == {"a": 10, "later": 0}
    assert u.calls == []
    # events before measure_usage_from never count
    assert value_at(ent, g, u, at("2024-01-10 00:01")).usage == 1


def test_ten_times_a_tenth_is_exactly_zero() -> None:
    u = Usage({START + i * MIN: "0.1" for i in range(10)})
    v = value_at(ENT, [grant("a", 1, START)], u, at("2024-01-01 01:00"))
    assert v.balance == Decimal(0)
    assert v.overage == Decimal(0)
    assert v.usage == Decimal(1)
    assert v.has_access is False


def test_usage_called_once_with_phase_boundaries_only() -> None:
    u = Usage({at("2024-03-10 00:00"): 1})
    g = [grant("a", 10, START), grant("b", 5, at("2024-03-05 00:00"), expires=at("2024-03-12 00:00"))]
    value_at(ENT, g, u, at("2024-03-20 10:00:30"))
    # without rollover the replay starts at the period start (Mar 1)
    assert u.calls == [[at("2024-03-01 00:00"), at("2024-03-05 00:00"), at("2024-03-12 00:00"), at("2024-03-20 10:01")]]


def test_rollover_replays_earlier_periods() -> None:
    u = Usage({at("2024-01-10 00:00"): 3})
    g = [grant("a", 10, START, max_rollover=10)]
    v = value_at(ENT, g, u, at("2024-03-20 00:00"))
    assert v.balance == 7
    assert len(u.calls) == 1
    assert u.calls[0][0] == START


def test_aware_non_utc_input_and_naive_refused() -> None:
    from datetime import datetime, timezone

    t = datetime(2024, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))  # 10:00 UTC
    u = Usage({at("2024-01-01 10:00"): 1})
    assert value_at(ENT, [grant("a", 5, START)], u, t).balance == 5
    with pytest.raises(BadInput):
        value_at(ENT, [], u, datetime(2024, 1, 1))  # noqa: DTZ001


def test_duplicate_grant_ids_are_bad_input() -> None:
    with pytest.raises(BadInput):
        value_at(ENT, [grant("a", 1, START), grant("a", 2, START)], Usage(), START)


def test_negative_usage_is_a_credit_within_the_period() -> None:
    # -3 then +5: net 2 burnt, whatever the split
    u = Usage({at("2024-01-01 10:00"): -3, at("2024-01-01 11:00"): 5})
    g = [grant("a", 10, START)]
    assert value_at(ENT, g, u, at("2024-01-01 10:30")).balance == 10
    v = value_at(ENT, g, u, at("2024-01-01 12:00"))
    assert (v.balance, v.usage, v.overage) == (8, 2, 0)


def test_weekly_usage_period() -> None:
    ent = Metered(START, Recurrence(Interval.WEEK, at("2024-01-03 00:00")))
    u = Usage({at("2024-01-02 00:00"): 4, at("2024-01-04 00:00"): 1})
    g = [grant("a", 10, START, max_rollover=100)]
    v = value_at(ent, g, u, at("2024-01-05 00:00"))
    assert (v.balance, v.usage, v.period_start) == (5, 1, at("2024-01-03 00:00"))


def test_inputs_off_the_minute_are_rounded_up() -> None:
    # effective 10:00:20 behaves as 10:01: a read at 10:00:30 (t' = 10:01) sees it
    g = [grant("a", 4, at("2024-01-01 10:00:20"))]
    assert value_at(ENT, g, Usage(), at("2024-01-01 10:00")).balance == 0
    assert value_at(ENT, g, Usage(), at("2024-01-01 10:00:30")).balance == 4
    assert D(4) == value_at(ENT, g, Usage(), at("2024-01-01 10:01")).balance
