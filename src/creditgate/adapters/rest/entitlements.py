"""REST: entitlements of subjects, their values, history and resets (type lower case; static config as a
JSON string on the wire)."""

from __future__ import annotations

from typing import Any

import orjson

from creditgate.adapters.rest.models import (
    BalanceWindowOut,
    BurndownSegmentOut,
    EntitlementIn,
    EntitlementListQuery,
    EntitlementOut,
    EntitlementValueOut,
    GrantUsageOut,
    HistoryOut,
    HistoryQuery,
    Period,
    ResetIn,
    SubjectEntitlementsQuery,
    ValueQuery,
)
from creditgate.adapters.rest.router import Call, api
from creditgate.domain.errors import BadInput, NotFound
from creditgate.records import Entitlement, EntitlementType
from creditgate.services import entitlements as svc
from creditgate.services import features as feature_svc
from creditgate.services import history as history_svc
from creditgate.services import values as value_svc
from creditgate.services.runtime import Runtime
from creditgate.wire import entitlement_out, value_out

TAG = "Entitlements"
ENT = "/subjects/{subjectIdOrKey}/entitlements"


async def entitlements_out(rt: Runtime, ents: list[Entitlement]) -> list[EntitlementOut]:
    periods = await svc.usage_periods_of(rt, ents)
    return [entitlement_out(e, periods.get(e.id)) for e in ents]


async def subject_entitlement(c: Call, subject_key: str) -> Entitlement:
    """The entitlement of the path (by id), which must belong to the subject."""
    ent_id = c.path["entitlementId"]
    found = await svc.get_entitlement(c.rt, ent_id)
    if found is None or found.subject_key != subject_key:
        raise NotFound(f"entitlement {ent_id!r} not found for subject {subject_key!r}")
    return found


def parse_config(config: str | dict[str, Any] | None) -> Any:
    if not isinstance(config, str):
        return config
    try:
        return orjson.loads(config)
    except orjson.JSONDecodeError:
        raise BadInput("config must be a JSON object encoded as a string") from None


@api.route("GET", "/entitlements", op_id="listEntitlements", tag=TAG, summary="List entitlements of all subjects",
           query=EntitlementListQuery, response=list[EntitlementOut])
async def list_entitlements(c: Call) -> list[EntitlementOut]:
    q: EntitlementListQuery = c.query
    types = [t.upper() for t in q.entitlement_type] if q.entitlement_type is not None else None
    found = await svc.list_entitlements(c.rt, include_deleted=q.include_deleted, limit=q.limit, offset=q.offset,
                                        subjects=q.subject, features=q.feature, types=types)
    return await entitlements_out(c.rt, found)


@api.route("GET", "/entitlements/{entitlementId}", op_id="getEntitlementById", tag=TAG,
           summary="Get an entitlement of any subject by id", response=EntitlementOut)
async def get_entitlement_by_id(c: Call) -> EntitlementOut:
    found = await svc.get_entitlement(c.rt, c.path["entitlementId"])
    if found is None:
        raise NotFound(f"entitlement {c.path['entitlementId']!r} not found")
    return (await entitlements_out(c.rt, [found]))[0]


@api.route("GET", ENT, op_id="listSubjectEntitlements", tag=TAG, summary="List the entitlements of a subject",
           query=SubjectEntitlementsQuery, response=list[EntitlementOut], access="subject")
async def list_subject_entitlements(c: Call) -> list[EntitlementOut]:
    q: SubjectEntitlementsQuery = c.query
    key = await c.subject_key()
    return await entitlements_out(c.rt, await svc.list_entitlements(c.rt, key, include_deleted=q.include_deleted))


@api.route("POST", ENT, op_id="createEntitlement", tag=TAG, summary="Create an entitlement for a subject",
           status=201, body=EntitlementIn, response=EntitlementOut)
async def create_entitlement(c: Call) -> EntitlementOut:
    key = await c.subject_key()
    return (await entitlements_out(c.rt, [await svc.create_entitlement(c.rt, key, await entitlement_input(c))]))[0]


@api.route("PUT", ENT + "/{entitlementIdOrFeatureKey}/override", op_id="overrideEntitlement", tag=TAG,
           summary="Replace an entitlement (by id or feature key) by a new one of the same feature, atomically",
           status=201, body=EntitlementIn, response=EntitlementOut)
async def override_entitlement(c: Call) -> EntitlementOut:
    key = await c.subject_key()
    ent = await svc.override_entitlement(c.rt, key, c.path["entitlementIdOrFeatureKey"], await entitlement_input(c))
    return (await entitlements_out(c.rt, [ent]))[0]


async def entitlement_input(c: Call) -> svc.EntitlementInput:
    b: EntitlementIn = c.body
    feature_key = b.feature_key
    if b.feature_id is not None:
        feature = await feature_svc.get_feature(c.rt, b.feature_id)
        if feature is None or (feature_key is not None and feature.key != feature_key):
            raise NotFound(f"feature {b.feature_id!r} not found")
        feature_key = feature.key
    if feature_key is None:
        raise BadInput("featureId or featureKey is required")
    up = b.usage_period
    return svc.EntitlementInput(
        type=EntitlementType(b.type.upper()), feature_key=feature_key, metadata=b.metadata,
        usage_period_interval=up.interval if up else None, usage_period_anchor=up.anchor if up else None,
        has_usage_period=up is not None, is_soft_limit=b.is_soft_limit, measure_usage_from=b.measure_usage_from,
        issue_after_reset=b.issue_after_reset, issue_after_reset_priority=b.issue_after_reset_priority,
        config=parse_config(b.config))


@api.route("GET", ENT + "/{entitlementId}", op_id="getEntitlement", tag=TAG, summary="Get an entitlement",
           response=EntitlementOut, access="subject")
async def get_entitlement(c: Call) -> EntitlementOut:
    ent = await subject_entitlement(c, await c.subject_key())
    return (await entitlements_out(c.rt, [ent]))[0]


@api.route("DELETE", ENT + "/{entitlementId}", op_id="deleteEntitlement", tag=TAG,
           summary="Delete an entitlement (soft)", status=204)
async def delete_entitlement(c: Call) -> None:
    await svc.delete_entitlement(c.rt, await c.subject_key(), c.path["entitlementId"])


@api.route("GET", ENT + "/{entitlementIdOrFeatureKey}/value", op_id="getEntitlementValue", tag=TAG,
           summary="The value of an entitlement (by id or feature key) at a time (default now)",
           query=ValueQuery, response=EntitlementValueOut, access="subject")
async def get_entitlement_value(c: Call) -> EntitlementValueOut:
    q: ValueQuery = c.query
    ref = c.path["entitlementIdOrFeatureKey"]
    key = await c.subject_key()
    access = await value_svc.entitlement_value(c.rt, key, ref, q.time)
    v = access.value
    if v is None:
        raise NotFound(f"no entitlement {ref!r} for subject {key!r}")
    return value_out(v.has_access, v.balance, v.usage, v.overage, v.config)


@api.route("GET", ENT + "/{entitlementId}/history", op_id="getEntitlementHistory", tag=TAG,
           summary="Usage and balance history of a metered entitlement (by id or feature key)", query=HistoryQuery,
           response=HistoryOut, access="subject")
async def get_entitlement_history(c: Call) -> HistoryOut:
    q: HistoryQuery = c.query
    # by id or feature key, like /value (docs/semantics.md §3)
    ent = await svc.resolve_one(c.rt, await c.subject_key(), c.path["entitlementId"], c.rt.now())
    h = await history_svc.history(c.rt, ent, q.window_size, q.from_, q.to, q.window_time_zone)
    return HistoryOut(
        windowed_history=[BalanceWindowOut(period=Period(from_=w.start, to=w.end), usage=float(w.usage),
                                           balance_at_start=float(w.balance_at_start)) for w in h.windows],
        burndown_history=[BurndownSegmentOut(
            period=Period(from_=s.start, to=s.end), usage=float(s.usage), overage=float(s.overage),
            balance_at_start=float(s.balance_at_start), balance_at_end=float(s.balance_at_end),
            grant_balances_at_start={k: float(v) for k, v in s.balances_at_start.items()},
            grant_balances_at_end={k: float(v) for k, v in s.balances_at_end.items()},
            grant_usages=[GrantUsageOut(grant_id=k, usage=float(v)) for k, v in s.grant_usage.items()],
        ) for s in h.segments])


@api.route("POST", ENT + "/{entitlementId}/reset", op_id="resetEntitlementUsage", tag=TAG,
           summary="Reset the usage of a metered entitlement (by id or feature key)", status=204, body=ResetIn)
async def reset_entitlement_usage(c: Call) -> None:
    b: ResetIn = c.body
    await svc.reset_entitlement(c.rt, await c.subject_key(), c.path["entitlementId"], b.effective_at,
                                b.retain_anchor)
