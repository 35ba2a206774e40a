"""Wire models (camelCase JSON): request bodies, query parameters and responses.

They describe shapes only; the rules (formats, ranges, uniqueness) live in the services.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, WithJsonSchema
from pydantic.alias_generators import to_camel

from creditgate.adapters.graphql.scalars import format_datetime, parse_datetime


def _parse_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    return parse_datetime(value.replace(" ", "+") if isinstance(value, str) else value)


# RFC 3339 in ("+" may arrive unescaped in a query string, decoded as a space), UTC "Z" out.
Time = Annotated[datetime, BeforeValidator(_parse_time), PlainSerializer(format_datetime, return_type=str),
                 WithJsonSchema({"type": "string", "format": "date-time"})]
Number = Annotated[float, Field()]


class Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class Problem(Wire):
    """RFC 7807 problem details."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str | None = None
    extensions: dict[str, Any] | None = None


# ---- subjects -------------------------------------------------------------------------------------------

class SubjectIn(Wire):
    key: str
    display_name: str | None = None
    metadata: dict[str, Any] | None = None


class SubjectOut(Wire):
    id: str
    key: str
    display_name: str | None = None
    metadata: dict[str, Any] | None = None
    created_at: Time
    updated_at: Time


# ---- features -------------------------------------------------------------------------------------------

class FeatureIn(Wire):
    key: str
    name: str
    metadata: dict[str, Any] | None = None
    meter_slug: str | None = None
    meter_group_by_filters: dict[str, str] | None = None


class FeatureOut(Wire):
    id: str
    key: str
    name: str
    metadata: dict[str, Any] | None = None
    meter_slug: str | None = None
    meter_group_by_filters: dict[str, str] | None = None
    archived_at: Time | None = None
    created_at: Time
    updated_at: Time


class FeatureListQuery(Wire):
    limit: int = 1000
    offset: int = 0
    order_by: Literal["id", "key", "createdAt", "updatedAt"] = "updatedAt"
    include_archived: bool = False
