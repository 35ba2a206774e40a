"""Balance thresholds and the webhook retry schedule (docs/semantics.md §11): pure, time is an argument."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal

from creditgate.domain.durations import parse_duration

NUMBER = "NUMBER"
PERCENT = "PERCENT"
_HUNDRED = Decimal(100)

# (type, value): NUMBER v or PERCENT p
Level = tuple[str, Decimal]


def total_of(balance: Decimal, usage: Decimal, overage: Decimal) -> Decimal:
    """All that was granted for the current usage period, rollover included (§11.3)."""
    return balance + usage - overage


def is_reached(level: Level, usage: Decimal, total: Decimal) -> bool:
    kind, value = level
    if kind == NUMBER:
        return usage >= value
    return usage > 0 and usage * _HUNDRED >= value * total


def needs(level: Level, total: Decimal) -> Decimal:
    """The usage a threshold takes to be reached."""
    kind, value = level
    return value if kind == NUMBER else value * total / _HUNDRED


def highest(levels: Sequence[Level], total: Decimal) -> Level:
    """The threshold that takes the most usage; on a tie NUMBER before PERCENT, then the larger value."""
    return max(levels, key=lambda lv: (needs(lv, total), lv[0] == NUMBER, lv[1]))


def newly_reached(levels: Sequence[Level], usage: Decimal, total: Decimal,
                  done: set[Level]) -> tuple[Level, list[Level]] | None:
    """The thresholds reached now and not before in this period: (the one the event carries, the others,
    marked passed), or None."""
    fresh = [lv for lv in levels if lv not in done and is_reached(lv, usage, total)]
    if not fresh:
        return None
    top = highest(fresh, total)
    return top, [lv for lv in fresh if lv != top]


# About 5 s, 1 min, 5 min, 30 min, 2 h, 5 h, 10 h, then 10 h, until a day after the first attempt (§11.5).
RETRY_DELAYS: tuple[timedelta, ...] = (timedelta(seconds=5), timedelta(minutes=1), timedelta(minutes=5),
                                       timedelta(minutes=30), timedelta(hours=2), timedelta(hours=5),
                                       timedelta(hours=10))
GIVE_UP_AFTER = timedelta(hours=24)


def next_attempt(first_attempt: datetime, attempts: int, now: datetime,
                 delays: Sequence[timedelta] = RETRY_DELAYS,
                 give_up_after: timedelta = GIVE_UP_AFTER) -> datetime | None:
    """After `attempts` failed attempts (the last one ending at `now`), when to try again; None: give up
    (the next attempt would start more than `give_up_after` after the first)."""
    delay = delays[min(attempts, len(delays)) - 1] if attempts >= 1 and delays else timedelta(0)
    at = now + delay
    return at if at <= first_attempt + give_up_after else None


def parse_delays(text: str) -> tuple[timedelta, ...]:
    """A retry schedule written as "5s,1m,5m,30m,2h" (units ms, s, m, h, d); ValueError when malformed."""
    return tuple(parse_duration(part, "retry delay") for part in text.split(","))
