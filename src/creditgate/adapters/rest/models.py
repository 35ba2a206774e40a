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


# ---- meters and events ----------------------------------------------------------------------------------

Aggregation = Literal["SUM", "COUNT", "UNIQUE_COUNT", "AVG", "MIN", "MAX"]
WindowSize = Literal["MINUTE", "HOUR", "DAY"]


class MeterIn(Wire):
    slug: str
    aggregation: Aggregation
    event_type: str
    window_size: WindowSize = "MINUTE"
    description: str | None = None
    value_property: str | None = None
    group_by: dict[str, str] | None = None


class MeterOut(Wire):
    id: str
    slug: str
    description: str | None = None
    aggregation: Aggregation
    event_type: str
    value_property: str | None = None
    group_by: dict[str, str] | None = None
    window_size: WindowSize


class MeterQueryParams(Wire):
    from_: Time | None = Field(None, alias="from")
    to: Time | None = None
    window_size: WindowSize | None = None
    window_time_zone: str = "UTC"
    subject: list[str] | None = None
    filter_group_by: dict[str, str] | None = None
    group_by: list[str] | None = None


class PortalMeterQueryParams(Wire):
    from_: Time | None = Field(None, alias="from")
    to: Time | None = None
    window_size: WindowSize | None = None
    window_time_zone: str = "UTC"
    filter_group_by: dict[str, str] | None = None
    group_by: list[str] | None = None


class MeterQueryRowOut(Wire):
    value: float
    window_start: Time
    window_end: Time
    subject: str | None = None
    group_by: dict[str, str | None] | None = None


class MeterQueryResult(Wire):
    from_: Time | None = Field(None, alias="from")
    to: Time | None = None
    window_size: WindowSize | None = None
    data: list[MeterQueryRowOut]


class CloudEventIn(Wire):
    """A CloudEvent as sent (documentation: the events service checks it and names a bad event's index)."""

    model_config = ConfigDict(alias_generator=None)
    id: str
    source: str
    specversion: str = "1.0"
    type: str
    subject: str
    time: Time | None = None
    data: dict[str, Any] | None = None
    datacontenttype: str | None = None
    dataschema: str | None = None


class CloudEventOut(Wire):
    model_config = ConfigDict(alias_generator=None)
    id: str
    source: str
    specversion: str = "1.0"
    type: str
    subject: str
    time: Time
    data: dict[str, Any]


class IngestedEvent(Wire):
    event: CloudEventOut
    validation_error: str | None = None
    ingested_at: Time


class EventListQuery(Wire):
    from_: Time | None = Field(None, alias="from")
    to: Time | None = None
    limit: int = 100
    subject: str | None = None
