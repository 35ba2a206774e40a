"""REST: meters, meter queries (JSON, or CSV when asked first) and the subjects of a meter."""

from __future__ import annotations

import csv
import io
from typing import Any

from starlette.responses import Response

from creditgate.adapters.rest.models import (
    MeterIn,
    MeterOut,
    MeterQueryParams,
    MeterQueryResult,
    MeterQueryRowOut,
    PortalMeterQueryParams,
)
from creditgate.adapters.rest.router import Call, api
from creditgate.domain.errors import Forbidden
from creditgate.records import Meter, MeterQueryRow
from creditgate.services import meter_query as query_svc
from creditgate.services import meters as svc
from creditgate.timefmt import format_rfc3339

TAG = "Meters"
QUERY_TYPES = ("application/json", "text/csv")


def meter_out(m: Meter) -> MeterOut:
    return MeterOut(id=m.id, slug=m.slug, description=m.description, aggregation=m.aggregation,
                    event_type=m.event_type, value_property=m.value_property, group_by=m.group_by,
                    window_size=m.window_size)


@api.route("GET", "/meters", op_id="listMeters", tag=TAG, summary="List meters", response=list[MeterOut])
async def list_meters(c: Call) -> list[MeterOut]:
    return [meter_out(m) for m in await svc.list_meters(c.rt)]


@api.route("POST", "/meters", op_id="createMeter", tag=TAG, summary="Create a meter", status=201,
           body=MeterIn, response=MeterOut)
async def create_meter(c: Call) -> MeterOut:
    b: MeterIn = c.body
    return meter_out(await svc.create_meter(c.rt, b.slug, b.event_type, b.aggregation, description=b.description,
                                            value_property=b.value_property, group_by=b.group_by,
                                            window_size=b.window_size))


@api.route("GET", "/meters/{meterIdOrSlug}", op_id="getMeter", tag=TAG, summary="Get a meter by id or slug",
           response=MeterOut)
async def get_meter(c: Call) -> MeterOut:
    return meter_out(await svc.require_meter(c.rt, c.path["meterIdOrSlug"]))


@api.route("DELETE", "/meters/{meterIdOrSlug}", op_id="deleteMeter", tag=TAG, summary="Delete a meter", status=204)
async def delete_meter(c: Call) -> None:
    await svc.delete_meter(c.rt, c.path["meterIdOrSlug"])


def wants_csv(accept: str) -> bool:
    """CSV only when it is the caller's first choice (the SDK lists JSON first and parses JSON)."""
    first = accept.split(",", 1)[0].split(";", 1)[0].strip().lower()
    return first == "text/csv"


def _csv(rows: list[MeterQueryRow], group_names: list[str]) -> Response:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["window_start", "window_end", "subject", *group_names, "value"])
    for r in rows:
        w.writerow([format_rfc3339(r.window_start), format_rfc3339(r.window_end), r.subject or "",
                    *((r.group_by.get(g) or "") for g in group_names), f"{float(r.value):g}"])
    return Response(out.getvalue(), media_type="text/csv")


async def _query(c: Call, slug: str, q: Any, subjects: list[str] | None) -> MeterQueryResult | Response:
    rows = await query_svc.query_meter(c.rt, slug, from_=q.from_, to=q.to, window_size=q.window_size,
                                       window_time_zone=q.window_time_zone, subjects=subjects,
                                       filter_group_by=q.filter_group_by, group_by=q.group_by)
    if wants_csv(c.request.headers.get("accept", "")):
        return _csv(rows, [g for g in dict.fromkeys(q.group_by or []) if g != "subject"])
    data = [MeterQueryRowOut(value=float(r.value), window_start=r.window_start, window_end=r.window_end,
                             subject=r.subject, group_by=r.group_by) for r in rows]
    return MeterQueryResult(from_=q.from_, to=q.to, window_size=q.window_size, data=data)


@api.route("GET", "/meters/{meterIdOrSlug}/query", op_id="queryMeter", tag=TAG, summary="Query a meter",
           query=MeterQueryParams, response=MeterQueryResult, response_types=QUERY_TYPES)
async def query_meter(c: Call) -> MeterQueryResult | Response:
    q: MeterQueryParams = c.query
    return await _query(c, c.path["meterIdOrSlug"], q, q.subject)


@api.route("GET", "/portal/meters/{meterSlug}/query", op_id="queryPortalMeter", tag="Portal",
           summary="Query a meter for the subject of the portal token", query=PortalMeterQueryParams,
           response=MeterQueryResult, response_types=QUERY_TYPES, access="subject")
async def query_portal_meter(c: Call) -> MeterQueryResult | Response:
    subject = c.principal.subject_key
    if subject is None:
        raise Forbidden("this operation needs a portal (subject) token")
    q: PortalMeterQueryParams = c.query
    return await _query(c, c.path["meterSlug"], q, [subject])


@api.route("GET", "/meters/{meterIdOrSlug}/subjects", op_id="listMeterSubjects", tag=TAG,
           summary="Subjects with data in a meter", response=list[str])
async def list_meter_subjects(c: Call) -> list[str]:
    return await query_svc.list_meter_subjects(c.rt, c.path["meterIdOrSlug"])



