"""Grants: create, void, list (docs/semantics.md §5)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from creditgate.adapters.sql import entitlements as ent_repo
from creditgate.adapters.sql import grants as repo
from creditgate.adapters.sql import snapshots as snap_repo
from creditgate.domain import Interval, Recurrence, floor_m, period_start, recurrence_at_or_after
from creditgate.domain.errors import BadInput, NotFound
from creditgate.records import EntitlementType, Grant, ValueChangeCause, new_id
from creditgate.services import invalidation, validation
from creditgate.services.balances import expires_at, to_metered
from creditgate.services.entitlements import PERIODS, check_priority, resolve, to_amount
from creditgate.services.features import check_page
from creditgate.services.runtime import Runtime
from creditgate.services.subjects import check_metadata

DURATIONS = set(Interval)


@dataclass(frozen=True, slots=True)
class GrantInput:
    amount: float | Decimal
    effective_at: datetime
    expiration_duration: str
    expiration_count: int
    priority: int = 1
    recurrence_interval: str | None = None
    recurrence_anchor: datetime | None = None
    min_rollover: float | Decimal = 0
    max_rollover: float | Decimal = 0
    metadata: Any = None


def _check(inp: GrantInput) -> tuple[Decimal, Decimal, Decimal]:
    amount = to_amount(inp.amount, "amount")
    if amount <= 0:
        raise BadInput("amount must be > 0")
    check_priority(inp.priority)
    if inp.expiration_duration not in DURATIONS:
        raise BadInput("expiration.duration must be HOUR, DAY, WEEK, MONTH or YEAR")
    if inp.expiration_count < 1:
        raise BadInput("expiration.count must be >= 1")
    if inp.recurrence_interval is not None and inp.recurrence_interval not in PERIODS:
        raise BadInput("recurrence.interval must be DAY, WEEK, MONTH or YEAR")
    lo = to_amount(inp.min_rollover, "minRolloverAmount")
    hi = to_amount(inp.max_rollover, "maxRolloverAmount")
    if lo < 0 or hi < 0:
        raise BadInput("rollover amounts must be >= 0")
    if lo > hi:
        raise BadInput("minRolloverAmount must be <= maxRolloverAmount")
    return amount, lo, hi


async def create_grant(rt: Runtime, subject_key: str, ref: str, inp: GrantInput) -> Grant:
    validation.lookup(subject_key, "subject key")
    validation.lookup(ref, "entitlement id or feature key")
    amount, lo, hi = _check(inp)
    meta = check_metadata(inp.metadata)
    now = rt.now()
    effective = floor_m(inp.effective_at)
    ends = expires_at(effective, inp.expiration_duration, inp.expiration_count)
    async with rt.db.transaction() as s:
        found = resolve(await ent_repo.by_refs(s, [subject_key], [ref]), subject_key, ref, now)
        if found is None:
            raise NotFound(f"no entitlement {ref!r} for subject {subject_key!r}")
        ent = await ent_repo.get_entitlement(s, found.id, lock=True)
        if ent is None or not ent.visible_at(now):
            raise NotFound(f"no entitlement {ref!r} for subject {subject_key!r}")
        if ent.type != EntitlementType.METERED:
            raise BadInput("only METERED entitlements take grants")
        resets = (await ent_repo.resets_of(s, [ent.id]))[ent.id]
        start = period_start(to_metered(ent, resets), now)
        if effective < start:
            raise BadInput(f"effectiveAt must be at or after the current period start {start.isoformat()}")
        grant = Grant(
            id=new_id(), entitlement_id=ent.id, amount=amount, priority=inp.priority, effective_at=effective,
            expiration_duration=inp.expiration_duration, expiration_count=inp.expiration_count, expires_at=ends,
            recurrence_interval=inp.recurrence_interval,
            recurrence_anchor=floor_m(inp.recurrence_anchor or effective) if inp.recurrence_interval else None,
            min_rollover=lo, max_rollover=hi, metadata=meta, voided_at=None, created_at=now, updated_at=now)
        await repo.insert_grant(s, grant)
        await snap_repo.drop_from(s, [ent.id], effective)
        await invalidation.values_change_in_tx(s, [ent.subject_key])
    await invalidation.invalidate_subjects(rt, [ent.subject_key], ValueChangeCause.GRANT)
    return grant


async def void_grant(rt: Runtime, grant_id: str) -> Grant:
    validation.lookup(grant_id, "grant id")
    now = rt.now()
    at = floor_m(now)
    async with rt.db.transaction() as s:
        grant = await repo.get_grant(s, grant_id)
        if grant is None:
            raise NotFound(f"grant {grant_id!r} not found")
        ent = await ent_repo.get_entitlement(s, grant.entitlement_id, lock=True)
        grant = await repo.get_grant(s, grant_id, lock=True)
        assert grant is not None and ent is not None
        if grant.voided_at is not None:
            raise BadInput(f"grant {grant_id!r} is already voided")
        grant = await repo.set_voided(s, grant_id, at)
        await snap_repo.drop_from(s, [ent.id], at)
        await invalidation.values_change_in_tx(s, [ent.subject_key])
    await invalidation.invalidate_subjects(rt, [ent.subject_key], ValueChangeCause.VOID)
    return grant


async def get_grant(rt: Runtime, grant_id: str) -> Grant | None:
    validation.lookup(grant_id, "grant id")
    async with rt.db.read() as s:
        return await repo.get_grant(s, grant_id)


async def list_grants(rt: Runtime, subject_key: str | None = None, entitlement_ref: str | None = None,
                      include_deleted: bool = False, limit: int = 1000, offset: int = 0,
                      subjects: Sequence[str] | None = None, features: Sequence[str] | None = None) -> list[Grant]:
    """Grants, filtered by subject and entitlement. With a subject, `entitlement_ref` is an entitlement id
    (deleted ones too) or a feature key, resolved at now (docs/semantics.md §3); one naming nothing lists nothing."""
    check_page(limit, offset)
    for value, what in ((subject_key, "subjectKey"), (entitlement_ref, "entitlement id or feature key")):
        if value is not None:
            validation.lookup(value, what)
    validation.lookups(subjects or (), "subject")
    validation.lookups(features or (), "feature")
    async with rt.db.read() as s:
        ent_id = entitlement_ref
        if subject_key is not None and entitlement_ref is not None:
            candidates = await ent_repo.by_refs(s, [subject_key], [entitlement_ref])
            if not any(e.id == entitlement_ref for e in candidates):
                found = resolve(candidates, subject_key, entitlement_ref, rt.now())
                if found is None:
                    return []
                ent_id = found.id
        return await repo.list_grants(s, subject_key, ent_id, include_deleted, limit, offset, subjects, features)


async def grants_of(rt: Runtime, ent_ids: list[str]) -> dict[str, list[Grant]]:
    validation.lookups(ent_ids, "entitlement id")
    async with rt.db.read() as s:
        return await repo.grants_of(s, ent_ids)


def next_recurrence(g: Grant, now: datetime) -> datetime | None:
    """The first recurrence instant >= now (and >= effectiveAt) before expiresAt, else None."""
    if not g.recurrence_interval or not g.recurrence_anchor:
        return None
    rec = Recurrence(Interval(g.recurrence_interval), g.recurrence_anchor)
    at = recurrence_at_or_after(rec, max(now, g.effective_at))
    return at if at < g.expires_at else None
