"""Calendar arithmetic in UTC and recurrence instants (docs/semantics.md §4).

Every instant `anchor + n*interval` is computed from the anchor, never by stepping,
with month-end clamping (Jan 31 + 1 month = Feb 28/29).
"""

from __future__ import annotations

from calendar import monthrange
from datetime import UTC, datetime, timedelta

from creditgate.domain.errors import BadInput
from creditgate.domain.model import Interval, Recurrence

MINUTE = timedelta(minutes=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FIXED = {
    Interval.HOUR: timedelta(hours=1),
    Interval.DAY: timedelta(days=1),
    Interval.WEEK: timedelta(days=7),
}
_MONTHS = {Interval.MONTH: 1, Interval.YEAR: 12}


def utc(t: datetime) -> datetime:
    """`t` as an aware UTC datetime; naive datetimes are refused."""
    if t.tzinfo is UTC:
        return t
    if t.tzinfo is None or t.utcoffset() is None:
        raise BadInput(f"naive datetime {t.isoformat()}: a time zone is required")
    return t.astimezone(UTC)


def floor_m(t: datetime) -> datetime:
    if t.tzinfo is UTC:  # the usual case; datetime.replace on an aware time costs ~3x this
        return t - (t - _EPOCH) % MINUTE
    return t.replace(second=0, microsecond=0)


def ceil_m(t: datetime) -> datetime:
    if t.second == 0 and t.microsecond == 0:
        return t
    return floor_m(t) + MINUTE


def on_minute(t: datetime) -> bool:
    return t.second == 0 and t.microsecond == 0


def _add_months(t: datetime, months: int) -> datetime:
    total = t.month - 1 + months
    year = t.year + total // 12
    month = total % 12 + 1
    if not 1 <= year <= 9999:
        raise BadInput("date out of range")
    day = min(t.day, monthrange(year, month)[1])
    return t.replace(year=year, month=month, day=day)


def add_interval(t: datetime, interval: Interval, n: int) -> datetime:
    """`t + n*interval`, calendar arithmetic in UTC, month-end clamped."""
    t = utc(t)
    step = _FIXED.get(interval)
    try:
        if step is not None:
            return t + step * n
        return _add_months(t, _MONTHS[interval] * n)
    except OverflowError as exc:
        raise BadInput("date out of range") from exc


def index_at_or_before(r: Recurrence, t: datetime) -> int:
    """The largest n with `anchor + n*interval <= t`."""
    anchor = utc(r.anchor)
    t = utc(t)
    step = _FIXED.get(r.interval)
    if step is not None:
        return (t - anchor) // step
    per = _MONTHS[r.interval]
    n = ((t.year - anchor.year) * 12 + t.month - anchor.month) // per
    # the instant of n falls in t's month (or year): one step back at most
    if _add_months(anchor, per * n) > t:
        n -= 1
    return n


def recurrence_instant(r: Recurrence, n: int) -> datetime:
    return add_interval(r.anchor, r.interval, n)


def recurrence_at_or_before(r: Recurrence, t: datetime) -> datetime:
    return recurrence_instant(r, index_at_or_before(r, t))


def recurrence_after(r: Recurrence, t: datetime) -> datetime:
    """The first instant strictly after t."""
    return recurrence_instant(r, index_at_or_before(r, t) + 1)


def recurrence_at_or_after(r: Recurrence, t: datetime) -> datetime:
    n = index_at_or_before(r, t)
    at = recurrence_instant(r, n)
    return at if at == utc(t) else recurrence_instant(r, n + 1)


def instants_between(r: Recurrence, lo: datetime, hi: datetime) -> list[datetime]:
    """Instants in the half-open range (lo, hi]."""
    n = index_at_or_before(r, lo) + 1
    hi = utc(hi)
    out: list[datetime] = []
    anchor = utc(r.anchor)
    step = _FIXED.get(r.interval)
    if step is not None:
        at = anchor + step * n
        while at <= hi:
            out.append(at)
            n += 1
            at = anchor + step * n
        return out
    per = _MONTHS[r.interval]
    at = _add_months(anchor, per * n)
    while at <= hi:
        out.append(at)
        n += 1
        at = _add_months(anchor, per * n)
    return out
