"""Usage periods, automatic and manual resets (docs/semantics.md §4)."""

from __future__ import annotations

from datetime import timedelta

from creditgate.domain import (
    Interval,
    ManualReset,
    Metered,
    Recurrence,
    current_usage_period,
    period_start,
    period_starts,
    reset_instants,
)
from tests.domain.helpers import at, monthly

START = at("2024-01-01 00:00")


def test_period_start_monthly() -> None:
    ent = monthly(START)
    assert period_start(ent, at("2023-12-01 00:00")) == START  # before measure_usage_from
    assert period_start(ent, START) == START
    assert period_start(ent, at("2024-01-31 23:59:59")) == START
    assert period_start(ent, at("2024-02-01 00:00")) == at("2024-02-01 00:00")
    assert period_start(ent, at("2024-03-15 00:00")) == at("2024-03-01 00:00")


def test_automatic_resets_only_after_measure_usage_from() -> None:
    # anchor Jan 1 but usage measured from Jan 20: the first period is [Jan 20, Feb 1)
    ent = Metered(at("2024-01-20 10:00"), Recurrence(Interval.MONTH, START))
    assert period_start(ent, at("2024-01-25 00:00")) == at("2024-01-20 10:00")
    assert current_usage_period(ent, at("2024-01-25 00:00")) == (at("2024-01-20 10:00"), at("2024-02-01 00:00"))
    assert current_usage_period(ent, at("2023-06-01 00:00")) == (at("2024-01-20 10:00"), at("2024-02-01 00:00"))
    assert reset_instants(ent, at("2023-01-01 00:00"), at("2024-03-01 00:00")) == [
        at("2024-02-01 00:00"),
        at("2024-03-01 00:00"),
    ]


def test_month_end_anchor() -> None:
    ent = monthly(at("2024-01-31 00:00"))
    assert reset_instants(ent, START, at("2024-05-01 00:00")) == [
        at("2024-02-29 00:00"),
        at("2024-03-31 00:00"),
        at("2024-04-30 00:00"),
    ]


def test_manual_reset_without_retain_anchor_moves_later_resets() -> None:
    # a reset on Jan 15 10:00 that does not keep the anchor: next ones Feb 15 10:00, ...
    ent = monthly(START, resets=(ManualReset(at("2024-01-15 10:00"), retain_anchor=False),))
    assert reset_instants(ent, START, at("2024-04-01 00:00")) == [
        at("2024-01-15 10:00"),
        at("2024-02-15 10:00"),
        at("2024-03-15 10:00"),
    ]
    assert period_start(ent, at("2024-02-01 00:00")) == at("2024-01-15 10:00")
    assert current_usage_period(ent, at("2024-02-01 00:00")) == (at("2024-01-15 10:00"), at("2024-02-15 10:00"))


def test_manual_reset_with_retain_anchor_keeps_the_old_schedule() -> None:
    ent = monthly(START, resets=(ManualReset(at("2024-01-15 10:00"), retain_anchor=True),))
    assert reset_instants(ent, START, at("2024-03-01 00:00")) == [
        at("2024-01-15 10:00"),
        at("2024-02-01 00:00"),
        at("2024-03-01 00:00"),
    ]
    assert current_usage_period(ent, at("2024-01-20 00:00")) == (at("2024-01-15 10:00"), at("2024-02-01 00:00"))


def test_several_manual_resets_in_any_order() -> None:
    # Jan 15 re-anchors; Feb 20 keeps the Jan 15 anchor: Feb 15, Feb 20, Mar 15
    ent = monthly(
        START,
        resets=(
            ManualReset(at("2024-02-20 00:00"), retain_anchor=True),
            ManualReset(at("2024-01-15 00:00"), retain_anchor=False),
        ),
    )
    assert reset_instants(ent, START, at("2024-03-31 00:00")) == [
        at("2024-01-15 00:00"),
        at("2024-02-15 00:00"),
        at("2024-02-20 00:00"),
        at("2024-03-15 00:00"),
    ]
    assert period_start(ent, at("2024-02-19 23:59")) == at("2024-02-15 00:00")
    # the range is half-open (a, b]
    assert reset_instants(ent, at("2024-02-15 00:00"), at("2024-02-20 00:00")) == [at("2024-02-20 00:00")]


def test_manual_reset_on_an_automatic_instant_is_one_reset() -> None:
    ent = monthly(START, resets=(ManualReset(at("2024-02-01 00:00"), retain_anchor=True),))
    assert reset_instants(ent, START, at("2024-03-01 00:00")) == [at("2024-02-01 00:00"), at("2024-03-01 00:00")]


def test_manual_reset_before_measure_usage_from_is_ignored() -> None:
    ent = monthly(START, resets=(ManualReset(at("2023-12-15 00:00"), retain_anchor=False),))
    assert reset_instants(ent, START - timedelta(days=60), at("2024-02-01 00:00")) == [at("2024-02-01 00:00")]


def test_current_usage_period_past_now_before_a_manual_reset() -> None:
    # for a past instant, a later manual reset ends the period containing it
    ent = monthly(START, resets=(ManualReset(at("2024-01-15 00:00"), retain_anchor=True),))
    assert current_usage_period(ent, at("2024-01-10 00:00")) == (START, at("2024-01-15 00:00"))


def test_period_starts_for_snapshots() -> None:
    ent = monthly(START)
    assert period_starts(ent, START, at("2024-03-01 00:00")) == [START, at("2024-02-01 00:00")]
    assert period_starts(ent, at("2024-02-01 00:00"), at("2024-03-01 00:01")) == [
        at("2024-02-01 00:00"),
        at("2024-03-01 00:00"),
    ]


def test_daily_periods() -> None:
    ent = Metered(START, Recurrence(Interval.DAY, at("2023-06-01 06:30")))
    assert period_start(ent, at("2024-01-01 06:29")) == START
    assert period_start(ent, at("2024-01-03 07:00")) == at("2024-01-03 06:30")
    assert len(reset_instants(ent, START, at("2024-02-01 00:00"))) == 31
