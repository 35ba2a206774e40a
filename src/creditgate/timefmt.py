"""RFC 3339 date-times, read and written the same way by every layer (both APIs and ingest).

In: a string with a time zone offset or "Z" (or an aware datetime), normalised to UTC.
Out: UTC with "Z", four-digit years, fractional seconds only when present.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

__all__ = ["format_rfc3339", "parse_rfc3339"]


def parse_rfc3339(value: Any) -> datetime:
    """The instant in UTC; ValueError for anything else (no offset, not a date-time, out of range in UTC)."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("z", "Z"))
        except ValueError:
            raise ValueError(f"invalid RFC 3339 date-time: {value!r}") from None
    else:
        raise ValueError("a date-time must be an RFC 3339 string")
    if parsed.tzinfo is None:
        raise ValueError(f"a date-time needs a time zone offset or 'Z': {value!r}")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+03:00 has no UTC equivalent
        raise ValueError(f"date-time out of range in UTC: {value!r}") from None


def format_rfc3339(value: datetime) -> str:
    # isoformat (C) rather than strftime: a history of 720 windows writes ~1,500 of these
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    if value.microsecond:  # "YYYY-MM-DDTHH:MM:SS.ffffff+00:00": the fraction without trailing zeros
        return value.isoformat(timespec="microseconds")[:26].rstrip("0") + "Z"
    return value.isoformat(timespec="seconds")[:19] + "Z"
