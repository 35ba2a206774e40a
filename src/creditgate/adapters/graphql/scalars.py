"""The contract's scalars: DateTime (RFC 3339, UTC with "Z") and JSON."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import strawberry

if TYPE_CHECKING:
    JSON = Any
else:
    from strawberry.scalars import JSON

__all__ = ["JSON", "SCALARS", "DateTime", "format_datetime", "parse_datetime"]

# Annotate fields with `datetime` (alias DateTime); the schema maps it to this scalar.
DateTime = datetime


def format_datetime(value: datetime) -> str:
    value = value.astimezone(UTC)
    text = f"{value.year:04d}-{value:%m-%dT%H:%M:%S}"
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    return text + "Z"


def parse_datetime(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError("DateTime must be an RFC 3339 string")
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
        if parsed.tzinfo is None:
            raise ValueError(f"DateTime needs a time zone offset or 'Z': {value!r}")
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        if "time zone" in str(exc):
            raise
        raise ValueError(f"invalid RFC 3339 DateTime: {value!r}") from None


SCALARS: dict[object, Any] = {
    datetime: strawberry.scalar(
        name="DateTime",
        description="RFC 3339 date-time, always returned in UTC with a 'Z'",
        serialize=format_datetime,
        parse_value=parse_datetime,
    )
}
