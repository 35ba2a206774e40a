"""Window edges aligned in an IANA time zone.

A DAY window is a local calendar day (23 or 25 hours across a DST change); an HOUR
window is a local clock hour (at :30 UTC in Asia/Kolkata); the two local 02:00 hours
of an autumn DST change are two windows. MINUTE windows are UTC minutes (every zone
offset in use today is a whole number of minutes).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from creditgate.domain.errors import BadInput
from creditgate.domain.model import WindowSize
from creditgate.domain.recurrence import MINUTE

_HOUR = timedelta(hours=1)
_DAY = timedelta(days=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UTC_KEYS = frozenset({"UTC", "Etc/UTC"})  # no offset, ever: windows are plain steps (the default zone)


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise BadInput(f"unknown time zone {name!r}") from exc


def _key(u: datetime, size: WindowSize, tz: ZoneInfo) -> tuple[date, int, timedelta | None]:
    loc = u.astimezone(tz)
    if size is WindowSize.DAY:
        return (loc.date(), 0, None)
    return (loc.date(), loc.hour, loc.utcoffset())


def _offset(u: datetime, tz: ZoneInfo) -> timedelta | None:
    return u.astimezone(tz).utcoffset()


def _next_edge(u: datetime, size: WindowSize, tz: ZoneInfo) -> datetime:
    """The first instant > u whose window differs from u's."""
    key = _key(u, size, tz)
    while True:
        loc = u.astimezone(tz)
        off = loc.utcoffset() or timedelta(0)
        if size is WindowSize.DAY:
            local_next = datetime.combine(loc.date() + _DAY, datetime.min.time())
        else:
            local_next = loc.replace(minute=0, second=0, microsecond=0, tzinfo=None) + _HOUR
        cand = (local_next - off).replace(tzinfo=UTC)
        if _offset(cand, tz) == off:
            return cand
        # the offset changes in (u, cand]: find the first minute with the new offset
        lo, hi = u, cand
        while hi - lo > MINUTE:
            mid = lo + (hi - lo) // 2
            mid = mid.replace(second=0, microsecond=0)
            if mid <= lo:
                mid = lo + MINUTE
            if _offset(mid, tz) == off:
                lo = mid
            else:
                hi = mid
        if _key(hi, size, tz) != key:
            return hi
        u = hi


def window_edges(a: datetime, b: datetime, size: WindowSize, tz: ZoneInfo) -> list[datetime]:
    """Window starts strictly inside (a, b), a and b being UTC whole minutes."""
    out: list[datetime] = []
    if size is WindowSize.MINUTE:
        at = a + MINUTE
        while at < b:
            out.append(at)
            at += MINUTE
        return out
    if tz.key in _UTC_KEYS:  # same edges as the general walk below, ~20x cheaper (720 HOUR windows: ~0.2 ms)
        step = _HOUR if size is WindowSize.HOUR else _DAY
        at = a - (a - _EPOCH) % step + step
        while at < b:
            out.append(at)
            at += step
        return out
    at = _next_edge(a, size, tz)
    while at < b:
        out.append(at)
        at = _next_edge(at, size, tz)
    return out
