"""Burn-down segments and windowed history (docs/semantics.md §7)."""

from __future__ import annotations

import pytest

from creditgate.domain import Interval, WindowSize, burndown, value_at, windowed_history
from creditgate.domain.errors import BadInput
from tests.domain.helpers import Usage, at, grant, monthly

START = at("2024-01-01 00:00")
ENT = monthly(START)


def _story() -> tuple[Usage, list]:  # type: ignore[type-arg]
    # A=5 (priority 0), B=10 effective 11:00; 8 used at 10:00, 2 at 12:00
    u = Usage({at("2024-01-01 10:00"): 8, at("2024-01-01 12:00"): 2})
    return u, [grant("a", 5, START, priority=0), grant("b", 10, at("2024-01-01 11:00"))]


def test_burndown_segments_and_overage_paid() -> None:
    u, g = _story()
    first, second = burndown(ENT, g, u, START, at("2024-01-01 13:00"))
    # [00:00, 11:00): 8 used, A pays 5, 3 left as overage
    assert (first.start, first.end, first.usage, first.overage) == (START, at("2024-01-01 11:00"), 8, 3)
    assert (first.balance_at_start, first.balance_at_end) == (5, 0)
    assert first.grant_usage == {"a": 5, "b": 0}
    # [11:00, 13:00): B starts at 10 (after steps 1-4), pays the 3 carried plus 2 used
    assert (second.usage, second.overage, second.balance_at_start, second.balance_at_end) == (2, 0, 10, 5)
    assert second.balances_at_start == {"a": 0, "b": 10}
    assert second.balances_at_end == {"a": 0, "b": 5}
    assert second.grant_usage == {"a": 0, "b": 5}
    assert len(u.calls) == 1


def test_burndown_from_an_arbitrary_instant() -> None:
    u, g = _story()
    segs = burndown(ENT, g, u, at("2024-01-01 10:30"), at("2024-01-01 13:00"))
    # the state at 10:30 is replayed: A empty, 3 carried
    assert [(s.start, s.end) for s in segs] == [
        (at("2024-01-01 10:30"), at("2024-01-01 11:00")),
        (at("2024-01-01 11:00"), at("2024-01-01 13:00")),
    ]
    assert (segs[0].balance_at_start, segs[0].usage, segs[0].overage) == (0, 0, 3)
    assert segs[1].grant_usage == {"a": 0, "b": 5}
    assert u.calls[0][0] == START


def test_burndown_splits_at_resets_and_rounds_up() -> None:
    # 4 of 10 used in January; rollover 0 empties A at Feb 1
    u = Usage({at("2024-01-31 12:00"): 4, at("2024-02-01 01:00"): 1})
    g = [grant("a", 10, START), grant("b", 3, at("2024-02-01 00:00"))]
    segs = burndown(ENT, g, u, at("2024-01-31 00:00:10"), at("2024-02-02 00:00"))
    assert [(s.start, s.end) for s in segs] == [
        (at("2024-01-31 00:01"), at("2024-02-01 00:00")),
        (at("2024-02-01 00:00"), at("2024-02-02 00:00")),
    ]
    assert (segs[0].balance_at_start, segs[0].balance_at_end) == (10, 6)
    # after the reset: A dropped to 0 (no rollover), B effective at the reset
    assert segs[1].balances_at_start == {"a": 0, "b": 3}
    assert segs[1].balances_at_end == {"a": 0, "b": 2}


def test_burndown_and_history_arguments() -> None:
    u, g = _story()
    with pytest.raises(BadInput):
        burndown(ENT, g, u, at("2024-01-02 00:00"), at("2024-01-02 00:00"))
    with pytest.raises(BadInput):
        burndown(ENT, g, u, at("2023-12-31 00:00"), at("2024-01-02 00:00"))
    with pytest.raises(BadInput):
        windowed_history(ENT, g, u, START, at("2024-01-02 00:00"), WindowSize.DAY, "Mars/Olympus")
    with pytest.raises(BadInput):
        windowed_history(ENT, g, u, START, at("2024-01-02 00:00"), WindowSize.DAY, "")
    assert burndown(ENT, g, u, at("2024-01-02 00:00:10"), at("2024-01-02 00:00:50")) == []


def test_windowed_daily_paris_march_dst() -> None:
    # Europe/Paris, Mar 31 2024: 02:00 CET -> 03:00 CEST; the local day lasts 23 h
    ent = monthly(at("2024-03-01 00:00"))
    u = Usage(
        {
            at("2024-03-30 23:30"): 1,  # Mar 31 00:30 CET
            at("2024-03-31 21:30"): 1,  # Mar 31 23:30 CEST
            at("2024-03-31 22:30"): 1,  # Apr 1 00:30 CEST, after the Apr 1 00:00 UTC reset
        }
    )
    g = [grant("a", 10, at("2024-03-01 00:00"), max_rollover=10)]
    ws = windowed_history(ent, g, u, at("2024-03-30 00:00"), at("2024-04-03 00:00"), WindowSize.DAY, "Europe/Paris")
    assert [(w.start, w.end, w.usage, w.balance_at_start) for w in ws] == [
        (at("2024-03-30 23:00"), at("2024-03-31 22:00"), 2, 10),
        (at("2024-03-31 22:00"), at("2024-04-01 22:00"), 1, 8),
    ]
    assert len(u.calls) == 1


def test_windowed_daily_paris_october_dst() -> None:
    # Oct 27 2024: 03:00 CEST -> 02:00 CET; the local day lasts 25 h
    ent = monthly(at("2024-10-01 00:00"))
    u = Usage({at("2024-10-26 22:00"): 1, at("2024-10-27 22:59"): 2, at("2024-10-27 23:00"): 4})
    g = [grant("a", 100, at("2024-10-01 00:00"))]
    ws = windowed_history(ent, g, u, at("2024-10-26 00:00"), at("2024-10-29 00:00"), WindowSize.DAY, "Europe/Paris")
    assert [(w.start, w.end, w.usage, w.balance_at_start) for w in ws] == [
        (at("2024-10-26 22:00"), at("2024-10-27 23:00"), 3, 100),
        (at("2024-10-27 23:00"), at("2024-10-28 23:00"), 4, 97),
    ]


def test_windowed_hourly_paris_dst_hours() -> None:
    ent = monthly(at("2024-03-01 00:00"))
    # spring: 01:00 CET is [00:00, 01:00) UTC, the next local hour is 03:00 CEST
    u = Usage({at("2024-03-31 00:30"): 1, at("2024-03-31 01:30"): 1})
    ws = windowed_history(ent, [], u, at("2024-03-30 23:00"), at("2024-03-31 03:00"), WindowSize.HOUR, "Europe/Paris")
    assert [(w.start, w.end) for w in ws] == [
        (at("2024-03-31 00:00"), at("2024-03-31 01:00")),
        (at("2024-03-31 01:00"), at("2024-03-31 02:00")),
    ]
    # autumn: the two local 02:00 hours are two windows
    ent = monthly(at("2024-10-01 00:00"))
    u = Usage({at("2024-10-27 00:30"): 1, at("2024-10-27 01:30"): 1})
    ws = windowed_history(ent, [], u, at("2024-10-26 23:00"), at("2024-10-27 03:00"), WindowSize.HOUR, "Europe/Paris")
    assert [(w.start, w.end) for w in ws] == [
        (at("2024-10-27 00:00"), at("2024-10-27 01:00")),
        (at("2024-10-27 01:00"), at("2024-10-27 02:00")),
    ]


def test_windowed_hourly_kolkata_half_hour_offset() -> None:
    # UTC+05:30: local hours start at :30 UTC; the first window is clipped to `from`
    u = Usage({at("2024-01-01 10:15"): 1, at("2024-01-01 10:45"): 2, at("2024-01-01 12:29"): 3})
    g = [grant("a", 10, START)]
    ws = windowed_history(ENT, g, u, at("2024-01-01 10:00"), at("2024-01-01 13:00"), WindowSize.HOUR, "Asia/Kolkata")
    assert [(w.start, w.end, w.usage, w.balance_at_start) for w in ws] == [
        (at("2024-01-01 10:00"), at("2024-01-01 10:30"), 1, 10),
        (at("2024-01-01 10:30"), at("2024-01-01 11:30"), 2, 9),
        (at("2024-01-01 11:30"), at("2024-01-01 12:30"), 3, 7),
    ]


def test_windowed_balance_is_the_value_at_the_window_start() -> None:
    # recurrences, expiry and a reset inside the range: each window's balance_at_start
    # equals value_at(start).balance
    u = Usage({at(f"2024-01-{d:02d} {h:02d}:00"): (d + h) % 4 for d in range(28, 32) for h in range(0, 24, 5)})
    u.add(at("2024-02-01 03:00"), 2)
    g = [
        grant("d", 5, START, every=Interval.DAY, priority=0),
        grant("x", 20, START, expires=at("2024-01-30 12:00")),
        grant("r", 30, START, max_rollover=8),
    ]
    ws = windowed_history(ENT, g, u, at("2024-01-28 00:00"), at("2024-02-02 00:00"), WindowSize.HOUR, "UTC")
    assert len(ws) > 10
    for w in ws:
        assert w.balance_at_start == value_at(ENT, g, u, w.start).balance


def test_windowed_minutes() -> None:
    u = Usage({at("2024-01-01 10:00"): 1, at("2024-01-01 10:02"): 1})
    ws = windowed_history(
        ENT, [grant("a", 5, START)], u, START, at("2024-01-01 11:00"), WindowSize.MINUTE, "Asia/Kolkata"
    )
    assert [(w.start, w.usage, w.balance_at_start) for w in ws] == [
        (at("2024-01-01 10:00"), 1, 5),
        (at("2024-01-01 10:02"), 1, 4),
    ]


def test_history_starting_at_a_recurrence_sets_it_once() -> None:
    # daily 10, 4 used on day 1 (10 -> 6); from Jan 2 00:00, the refill instant itself:
    # the first segment starts at 10 (set, not 6 + 10), and the window balance is 10
    u = Usage({at("2024-01-01 10:00"): 4, at("2024-01-02 01:00"): 3})
    g = [grant("d", 10, START, every=Interval.DAY)]
    jan2 = at("2024-01-02 00:00")
    first = burndown(ENT, g, u, jan2, at("2024-01-02 12:00"))[0]
    assert (first.start, first.balance_at_start, first.balance_at_end) == (jan2, 10, 7)
    ws = windowed_history(ENT, g, u, jan2, at("2024-01-03 00:00"), WindowSize.HOUR, "UTC")
    assert [(w.start, w.usage, w.balance_at_start) for w in ws] == [(at("2024-01-02 01:00"), 3, 10)]
    # a history from the day before crosses the refill once too
    segs = burndown(ENT, g, u, START, at("2024-01-02 12:00"))
    assert [(s.start, s.balance_at_start, s.balance_at_end) for s in segs] == [(START, 10, 6), (jan2, 10, 7)]


def test_utc_window_edges_equal_the_general_walk() -> None:
    """UTC windows are plain steps (a fast path); the zone walk gives the same edges for a zone that is UTC
    under another name."""
    import random
    from datetime import UTC, datetime, timedelta

    from creditgate.domain.windows import window_edges, zone

    rng = random.Random(5)
    utc, same = zone("UTC"), zone("Etc/GMT")
    for _ in range(200):
        a = datetime(2023, 1, 1, tzinfo=UTC) + timedelta(minutes=rng.randint(0, 800_000))
        b = a + timedelta(minutes=rng.randint(1, 20_000))
        for size in (WindowSize.HOUR, WindowSize.DAY):
            fast = window_edges(a, b, size, utc)
            assert fast == window_edges(a, b, size, same)
            assert all(e.tzinfo is UTC for e in fast)
