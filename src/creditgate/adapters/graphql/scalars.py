"""The contract's scalars: DateTime (RFC 3339, UTC with "Z") and JSON."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import strawberry

from creditgate.timefmt import format_rfc3339, parse_rfc3339

if TYPE_CHECKING:
    JSON = Any
else:
    from strawberry.scalars import JSON

__all__ = ["JSON", "SCALARS", "DateTime", "format_datetime", "parse_datetime"]

# Annotate fields with `datetime` (alias DateTime); the schema maps it to this scalar.
DateTime = datetime


# One RFC 3339 reader and writer for every layer (creditgate/timefmt.py).
format_datetime = format_rfc3339
parse_datetime = parse_rfc3339


SCALARS: dict[object, Any] = {
    datetime: strawberry.scalar(
        name="DateTime",
        description="RFC 3339 date-time, always returned in UTC with a 'Z'",
        serialize=format_datetime,
        parse_value=parse_datetime,
    )
}
