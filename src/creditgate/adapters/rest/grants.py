"""REST: grants of metered entitlements (DELETE voids)."""

from __future__ import annotations

from datetime import datetime

from creditgate.adapters.rest.models import (
    EntitlementGrantsQuery,
    ExpirationIn,
    GrantIn,
    GrantListQuery,
    GrantOut,
    UsagePeriodOut,
)
from creditgate.adapters.rest.router import Call, api
from creditgate.records import Grant
from creditgate.services import grants as svc

TAG = "Grants"
ENT_GRANTS = "/subjects/{subjectIdOrKey}/entitlements/{entitlementIdOrFeatureKey}/grants"


def grant_out(g: Grant, now: datetime) -> GrantOut:
    recurrence = None
    if g.recurrence_interval and g.recurrence_anchor:
        recurrence = UsagePeriodOut(interval=g.recurrence_interval, anchor=g.recurrence_anchor)
    return GrantOut(id=g.id, entitlement_id=g.entitlement_id, amount=float(g.amount), priority=g.priority,
                    effective_at=g.effective_at,
                    expiration=ExpirationIn(duration=g.expiration_duration, count=g.expiration_count),
                    expires_at=g.expires_at, recurrence=recurrence, next_recurrence=svc.next_recurrence(g, now),
                    min_rollover_amount=float(g.min_rollover), max_rollover_amount=float(g.max_rollover),
                    metadata=g.metadata, voided_at=g.voided_at, created_at=g.created_at, updated_at=g.updated_at)


@api.route("GET", "/grants", op_id="listGrants", tag=TAG, summary="List grants of all entitlements",
           query=GrantListQuery, response=list[GrantOut])
async def list_grants(c: Call) -> list[GrantOut]:
    q: GrantListQuery = c.query
    found = await svc.list_grants(c.rt, include_deleted=q.include_deleted, limit=q.limit, offset=q.offset,
                                  subjects=q.subject, features=q.feature)
    now = c.rt.now()
    return [grant_out(g, now) for g in found]


@api.route("GET", ENT_GRANTS, op_id="listEntitlementGrants", tag=TAG,
           summary="List the grants of an entitlement (by id or feature key)",
           query=EntitlementGrantsQuery, response=list[GrantOut], access="subject")
async def list_entitlement_grants(c: Call) -> list[GrantOut]:
    q: EntitlementGrantsQuery = c.query
    key = await c.subject_key()
    found = await svc.list_grants(c.rt, key, c.path["entitlementIdOrFeatureKey"],
                                  include_deleted=q.include_deleted)
    now = c.rt.now()
    return [grant_out(g, now) for g in found]


@api.route("POST", ENT_GRANTS, op_id="createGrant", tag=TAG, summary="Grant an amount to a metered entitlement",
           status=201, body=GrantIn, response=GrantOut)
async def create_grant(c: Call) -> GrantOut:
    b: GrantIn = c.body
    key = await c.subject_key()
    rec = b.recurrence
    inp = svc.GrantInput(amount=b.amount, effective_at=b.effective_at, expiration_duration=b.expiration.duration,
                         expiration_count=b.expiration.count, priority=b.priority,
                         recurrence_interval=rec.interval if rec else None,
                         recurrence_anchor=rec.anchor if rec else None, min_rollover=b.min_rollover_amount,
                         max_rollover=b.max_rollover_amount, metadata=b.metadata)
    return grant_out(await svc.create_grant(c.rt, key, c.path["entitlementIdOrFeatureKey"], inp), c.rt.now())


@api.route("DELETE", "/grants/{grantId}", op_id="voidGrant", tag=TAG, summary="Void a grant", status=204)
async def void_grant(c: Call) -> None:
    await svc.void_grant(c.rt, c.path["grantId"])
