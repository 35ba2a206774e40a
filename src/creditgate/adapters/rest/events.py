"""REST: CloudEvents ingest (one event or a batch; 204) and the event listing."""

from __future__ import annotations

from typing import Any

from creditgate.adapters.rest.models import CloudEventIn, CloudEventOut, EventListQuery, IngestedEvent
from creditgate.adapters.rest.router import Call, api
from creditgate.domain.errors import BadInput
from creditgate.records import Event, EventInput
from creditgate.services import events as svc

TAG = "Events"
INGEST_TYPES = ("application/cloudevents+json", "application/cloudevents-batch+json", "application/json")


def event_input(index: int, raw: Any) -> EventInput:
    if not isinstance(raw, dict):
        raise BadInput(f"event {index}: must be a JSON object")
    # Missing fields arrive as None; the service names what is wrong.
    return EventInput(id=raw.get("id"), source=raw.get("source"), type=raw.get("type"), subject=raw.get("subject"),
                      specversion=raw.get("specversion", "1.0"), time=raw.get("time"), data=raw.get("data"))


def event_out(e: Event) -> IngestedEvent:
    return IngestedEvent(event=CloudEventOut(id=e.id, source=e.source, type=e.type, subject=e.subject,
                                             time=e.time, data=e.data),
                         validation_error=e.validation_error, ingested_at=e.ingested_at)


@api.route("POST", "/events", op_id="ingestEvents", tag=TAG, summary="Ingest one CloudEvent or a batch",
           status=204, body=CloudEventIn | list[CloudEventIn], raw_body=True, body_types=INGEST_TYPES)
async def ingest_events(c: Call) -> None:
    raw = c.body if isinstance(c.body, list) else [c.body]
    await svc.ingest_events(c.rt, [event_input(i, e) for i, e in enumerate(raw)])  # counted by the service


@api.route("GET", "/events", op_id="listEvents", tag=TAG, summary="List ingested events, newest first",
           query=EventListQuery, response=list[IngestedEvent])
async def list_events(c: Call) -> list[IngestedEvent]:
    q: EventListQuery = c.query
    rows = await svc.list_events(c.rt, limit=q.limit, from_=q.from_, to=q.to, subject=q.subject)
    return [event_out(e) for e in rows]
