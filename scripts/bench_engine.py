"""Benchmark of the balance engine alone: value_at(now) with and without a snapshot.

An entitlement with monthly resets and 50 grants: 10 recur daily (at different hours),
one lives for the whole history with a rollover range (min < max), so every reset
depends on the previous period and a read without snapshot replays them all, and the
rest start and expire throughout the history. Usage is a constant rate, memoised so
that the timings are the engine's alone. `now` is one hour before the end of the
current period (the longest replay from its start).

    uv run python scripts/bench_engine.py
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from creditgate.domain import (
    Grant,
    Interval,
    Metered,
    Recurrence,
    Value,
    add_interval,
    period_start,
    state_at,
    value_at,
)

RATE = Decimal("0.37")  # usage per minute
MIN = timedelta(minutes=1)
NOW_END = datetime(2026, 1, 1, tzinfo=UTC)  # the current period is December 2025


_ANSWERS: dict[tuple[datetime, ...], list[Decimal]] = {}


def usage(bounds: Sequence[datetime]) -> list[Decimal]:
    """RATE per minute. Memoised: a repeated read gets its answer from a dict, so the
    timings leave out the usage function (in production, one SQL query)."""
    key = tuple(bounds)
    found = _ANSWERS.get(key)
    if found is None:
        found = _ANSWERS[key] = [RATE * ((b - a) // MIN) for a, b in itertools.pairwise(bounds)]
    return found


def grants(start: datetime, end: datetime, rollover: bool) -> list[Grant]:
    out: list[Grant] = []
    span = end - start
    for i in range(10):  # daily refills at different hours
        eff = start + timedelta(hours=i)
        out.append(
            Grant(f"daily{i}", Decimal(60 + i), i % 3, eff, eff + timedelta(days=36500), start,
                  recurrence=Recurrence(Interval.DAY, eff))
        )  # fmt: skip
    out.append(  # the whole history, rollover range: every reset depends on the past
        Grant("base", Decimal(50000), 5, start, start + timedelta(days=36500), start,
              min_rollover=Decimal(1000) if rollover else Decimal(0),
              max_rollover=Decimal(40000) if rollover else Decimal(0))
    )  # fmt: skip
    for i in range(39):  # top-ups spread over the history, each for 45 days
        eff = start + span * i / 39
        eff = eff.replace(second=0, microsecond=0)
        out.append(Grant(f"top{i}", Decimal(2000), 3 + i % 4, eff, eff + timedelta(days=45), eff))
    return out


def timed(fn: Callable[[], Value], rounds: int) -> float:
    """Median time of one call in milliseconds."""
    fn()
    runs = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    now = NOW_END - timedelta(hours=1)
    print("| history | phases (full replay) | full replay (rollover) | no rollover: from period start "
          "| from snapshot at period start | from snapshot 1 h old |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|")
    for months in (1, 6, 12, 36):
        start = add_interval(NOW_END, Interval.MONTH, -months)
        ent = Metered(start, Recurrence(Interval.MONTH, start))
        tied = grants(start, NOW_END, rollover=True)
        free = grants(start, NOW_END, rollover=False)
        snap = state_at(ent, tied, usage, period_start(ent, now))
        recent = state_at(ent, tied, usage, now - timedelta(hours=1))
        full = value_at(ent, tied, usage, now)
        assert value_at(ent, tied, usage, now, start=snap) == full
        assert value_at(ent, tied, usage, now, start=recent) == full
        phases = len(_calls(ent, tied, now)) - 1
        t_full = timed(lambda: value_at(ent, tied, usage, now), args.rounds)  # noqa: B023
        t_free = timed(lambda: value_at(ent, free, usage, now), args.rounds)  # noqa: B023
        t_snap = timed(lambda: value_at(ent, tied, usage, now, start=snap), args.rounds * 5)  # noqa: B023
        t_recent = timed(lambda: value_at(ent, tied, usage, now, start=recent), args.rounds * 5)  # noqa: B023
        print(
            f"| {months} months | {phases} | {t_full:.2f} ms | {t_free:.2f} ms | {t_snap:.3f} ms | {t_recent:.3f} ms |"
        )


def _calls(ent: Metered, gs: list[Grant], now: datetime) -> list[datetime]:
    seen: list[datetime] = []

    def spy(bounds: Sequence[datetime]) -> list[Decimal]:
        seen.extend(bounds)
        return usage(bounds)

    value_at(ent, gs, spy, now)
    return seen


if __name__ == "__main__":
    main()
