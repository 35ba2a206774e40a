"""Calendar arithmetic and recurrence instants (docs/semantics.md §4)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from creditgate.domain import (
    Interval,
    Recurrence,
    add_interval,
    recurrence_after,
    recurrence_at_or_after,
    recurrence_at_or_before,
)
from creditgate.domain.errors import BadInput
from tests.domain.helpers import at

M = Interval.MONTH


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, "2024-01-31 09:30"),
        (1, "2024-02-29 09:30"),  # leap year: clamped to Feb 29
        (2, "2024-03-31 09:30"),  # from the anchor, not Feb 29 + 1 month = Mar 29
        (3, "2024-04-30 09:30"),
        (13, "2025-02-28 09:30"),
        (-1, "2023-12-31 09:30"),
        (-2, "2023-11-30 09:30"),
        (-11, "2023-02-28 09:30"),
    ],
)
def test_month_end_clamped_from_the_anchor(n: int, expected: str) -> None:
    assert add_interval(at("2024-01-31 09:30"), M, n) == at(expected)


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (1, "2025-02-28 00:00"),
        (3, "2027-02-28 00:00"),
        (4, "2028-02-29 00:00"),  # back on a leap year: Feb 29 again
        (-1, "2023-02-28 00:00"),
        (-4, "2020-02-29 00:00"),
    ],
)
def test_feb_29_yearly(n: int, expected: str) -> None:
    assert add_interval(at("2024-02-29 00:00"), Interval.YEAR, n) == at(expected)


def test_fixed_intervals() -> None:
    t = at("2024-03-30 23:00")
    assert add_interval(t, Interval.WEEK, 1) == at("2024-04-06 23:00")
    assert add_interval(t, Interval.WEEK, -2) == at("2024-03-16 23:00")
    assert add_interval(t, Interval.DAY, 2) == at("2024-04-01 23:00")  # UTC: no DST
    assert add_interval(t, Interval.DAY, -30) == at("2024-02-29 23:00")
    assert add_interval(t, Interval.HOUR, 2) == at("2024-03-31 01:00")


def test_other_zones_are_converted_to_utc_first() -> None:
    # 2024-01-31 23:30 at UTC-2 is 2024-02-01 01:30 UTC; + 1 month in UTC is Mar 1
    t = datetime(2024, 1, 31, 23, 30, tzinfo=timezone(timedelta(hours=-2)))
    assert add_interval(t, M, 1) == at("2024-03-01 01:30")
    assert add_interval(t, M, 1).tzinfo is UTC


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(BadInput):
        add_interval(datetime(2024, 1, 1), M, 1)  # noqa: DTZ001


def test_out_of_range_is_bad_input() -> None:
    with pytest.raises(BadInput):
        add_interval(at("9999-06-01 00:00"), Interval.YEAR, 1)


JAN31 = Recurrence(M, at("2024-01-31 00:00"))


@pytest.mark.parametrize(
    ("t", "before", "after", "at_or_after"),
    [
        # exactly on the clamped instant Feb 29
        ("2024-02-29 00:00", "2024-02-29 00:00", "2024-03-31 00:00", "2024-02-29 00:00"),
        # between Jan 31 and Feb 29
        ("2024-02-28 12:00", "2024-01-31 00:00", "2024-02-29 00:00", "2024-02-29 00:00"),
        # Apr 30 00:01: the next is May 31, not May 30 (no repeated stepping)
        ("2024-04-30 00:01", "2024-04-30 00:00", "2024-05-31 00:00", "2024-05-31 00:00"),
        # before the anchor
        ("2023-12-15 00:00", "2023-11-30 00:00", "2023-12-31 00:00", "2023-12-31 00:00"),
        ("2023-12-31 00:00", "2023-12-31 00:00", "2024-01-31 00:00", "2023-12-31 00:00"),
    ],
)
def test_recurrence_neighbours_monthly(t: str, before: str, after: str, at_or_after: str) -> None:
    assert recurrence_at_or_before(JAN31, at(t)) == at(before)
    assert recurrence_after(JAN31, at(t)) == at(after)
    assert recurrence_at_or_after(JAN31, at(t)) == at(at_or_after)


def test_recurrence_neighbours_yearly_and_weekly() -> None:
    leap = Recurrence(Interval.YEAR, at("2024-02-29 12:00"))
    assert recurrence_at_or_before(leap, at("2025-03-01 00:00")) == at("2025-02-28 12:00")
    assert recurrence_after(leap, at("2025-02-28 12:00")) == at("2026-02-28 12:00")
    assert recurrence_at_or_before(leap, at("2025-02-28 11:59")) == at("2024-02-29 12:00")
    week = Recurrence(Interval.WEEK, at("2024-01-03 08:00"))  # a Wednesday
    assert recurrence_at_or_before(week, at("2024-01-01 00:00")) == at("2023-12-27 08:00")
    assert recurrence_after(week, at("2024-01-10 08:00")) == at("2024-01-17 08:00")
    assert recurrence_at_or_after(week, at("2024-01-10 08:00")) == at("2024-01-10 08:00")


def test_recurrence_seconds_between_instants() -> None:
    day = Recurrence(Interval.DAY, at("2024-01-01 06:00"))
    assert recurrence_at_or_before(day, at("2024-01-05 05:59:59")) == at("2024-01-04 06:00")
    assert recurrence_after(day, at("2024-01-05 05:59:59")) == at("2024-01-05 06:00")
