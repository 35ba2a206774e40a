"""Short durations as settings write them: a number and a unit (ms, s, m, h, d), e.g. "5s", "400d"."""

from __future__ import annotations

from datetime import timedelta

_UNITS = {"ms": timedelta(milliseconds=1), "s": timedelta(seconds=1), "m": timedelta(minutes=1),
          "h": timedelta(hours=1), "d": timedelta(days=1)}


def parse_duration(text: str, what: str = "duration") -> timedelta:
    """The duration; ValueError naming `what` when malformed or negative."""
    part = text.strip()
    unit = next((u for u in ("ms", "s", "m", "h", "d") if part.endswith(u)), None)
    if unit is None:
        raise ValueError(f"{what} {part!r} needs a unit (ms, s, m, h, d)")
    try:
        amount = float(part[:-len(unit)])
    except ValueError:
        raise ValueError(f"{what} {part!r} is not a number with a unit") from None
    if not amount >= 0 or amount == float("inf"):
        raise ValueError(f"{what} {part!r} must be >= 0")
    return _UNITS[unit] * amount
