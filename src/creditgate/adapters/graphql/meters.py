"""GraphQL: meters, meter queries and event ingest (all admin-only)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import strawberry
from strawberry.types.base import get_object_definition

from creditgate.adapters.graphql.context import Info
from creditgate.adapters.graphql.scalars import JSON, DateTime
from creditgate.domain.model import WindowSize
from creditgate.records import Aggregation as MeterAggregation
from creditgate.records import EventInput
from creditgate.records import Meter as MeterRecord
from creditgate.services import events as event_svc
from creditgate.services import meter_query as query_svc
from creditgate.services import meters as svc

# The domain's enum, registered as the contract's WindowSize (other modules may reuse it).
strawberry.enum(WindowSize)


# The shared vocabulary (records.py), registered under the contract's name.
strawberry.enum(MeterAggregation, name="MeterAggregation")


@strawberry.type
class Meter:
    id: strawberry.ID
    slug: str
    description: str | None
    event_type: str
    aggregation: MeterAggregation
    value_property: str | None
    group_by: JSON
    window_size: WindowSize

    @classmethod
    def of(cls, m: MeterRecord) -> Meter:
        return cls(id=strawberry.ID(m.id), slug=m.slug, description=m.description, event_type=m.event_type,
                   aggregation=MeterAggregation(m.aggregation), value_property=m.value_property,
                   group_by=m.group_by, window_size=WindowSize(m.window_size))


@strawberry.type
class MeterQueryRow:
    window_start: DateTime
    window_end: DateTime
    value: float
    subject: str | None
    group_by: JSON


@strawberry.type
class IngestResult:
    accepted: int
    duplicates: int


@strawberry.input
class CreateMeterInput:
    slug: str
    event_type: str
    aggregation: MeterAggregation
    description: str | None = None
    value_property: str | None = None
    group_by: JSON | None = None
    window_size: WindowSize | None = WindowSize.MINUTE


@strawberry.input
class CloudEventInput:
    id: str
    source: str
    type: str
    subject: str
    specversion: str | None = "1.0"
    time: DateTime | None = None
    data: JSON | None = None


def _event_from_input(_cls: type, value: Mapping[str, Any], _ctx: Any) -> EventInput:
    """Builds the service's record straight from the coerced input (Strawberry's generic
    conversion costs more than the rest of a 1000-event ingest)."""
    return EventInput(id=value["id"], source=value["source"], type=value["type"], subject=value["subject"],
                      specversion=value.get("specversion"), time=value.get("time"), data=value.get("data"))


get_object_definition(CloudEventInput, strict=True).from_input = _event_from_input


@strawberry.input
class MeterQueryInput:
    from_: DateTime | None = strawberry.field(name="from", default=None)
    to: DateTime | None = None
    window_size: WindowSize | None = None
    window_time_zone: str | None = "UTC"
    subjects: list[str] | None = None
    filter_group_by: JSON | None = None
    group_by: list[str] | None = None


@strawberry.type
class MeterQuery:
    @strawberry.field
    async def meters(self, info: Info) -> list[Meter]:
        return [Meter.of(m) for m in await svc.list_meters(info.context.admin())]

    @strawberry.field
    async def meter(self, info: Info, id_or_slug: str) -> Meter | None:
        found = await svc.get_meter(info.context.admin(), id_or_slug)
        return Meter.of(found) if found else None

    @strawberry.field
    async def meter_query(self, info: Info, id_or_slug: str,
                          input: MeterQueryInput | None = None) -> list[MeterQueryRow]:
        q = input or MeterQueryInput()
        rows = await query_svc.query_meter(
            info.context.admin(), id_or_slug, from_=q.from_, to=q.to,
            window_size=q.window_size.value if q.window_size else None,
            window_time_zone=q.window_time_zone or "UTC", subjects=q.subjects,
            filter_group_by=q.filter_group_by, group_by=q.group_by)
        return [MeterQueryRow(window_start=r.window_start, window_end=r.window_end, value=float(r.value),
                              subject=r.subject, group_by=r.group_by) for r in rows]


@strawberry.type
class MeterMutation:
    @strawberry.mutation
    async def create_meter(self, info: Info, input: CreateMeterInput) -> Meter:
        m = await svc.create_meter(info.context.admin(), input.slug, input.event_type, input.aggregation.value,
                                   description=input.description, value_property=input.value_property,
                                   group_by=input.group_by,
                                   window_size=(input.window_size or WindowSize.MINUTE).value)
        return Meter.of(m)

    @strawberry.mutation
    async def delete_meter(self, info: Info, id_or_slug: str) -> bool:
        await svc.delete_meter(info.context.admin(), id_or_slug)
        return True

    @strawberry.mutation
    async def ingest_events(self, info: Info, events: list[CloudEventInput]) -> IngestResult:
        batch: list[EventInput] = events  # type: ignore[assignment]  # built by _event_from_input
        result = await event_svc.ingest_events(info.context.admin(), batch)
        return IngestResult(accepted=result.accepted, duplicates=result.duplicates)
