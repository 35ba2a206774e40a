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
from creditgate.records import Entitlement, EntitlementType, Grant, Reset, ValueChangeCause, new_id
from creditgate.services import batches, invalidation, validation
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


@dataclass(frozen=True, slots=True)
class _Checked:
    """A grant input after the checks that need no database."""

    amount: Decimal
    min_rollover: Decimal
    max_rollover: Decimal
    metadata: dict[str, Any]
    effective_at: datetime
    expires_at: datetime


def _check_input(subject_key: str, ref: str, inp: GrantInput) -> _Checked:
    validation.lookup(subject_key, "subject key")
    validation.lookup(ref, "entitlement id or feature key")
    amount, lo, hi = _check(inp)
    meta = check_metadata(inp.metadata)
    effective = floor_m(inp.effective_at)
    return _Checked(amount, lo, hi, meta, effective,
                    expires_at(effective, inp.expiration_duration, inp.expiration_count))


def _check_target(ent: Entitlement | None, subject_key: str, ref: str, resets: Sequence[Reset],
                  effective: datetime, now: datetime) -> Entitlement:
    """The entitlement the grant goes to (docs/semantics.md §5.2), locked and read again."""
    if ent is None or not ent.visible_at(now):
        raise NotFound(f"no entitlement {ref!r} for subject {subject_key!r}")
    if ent.type != EntitlementType.METERED:
        raise BadInput("only METERED entitlements take grants")
    start = period_start(to_metered(ent, resets), now)
    if effective < start:
        raise BadInput(f"effectiveAt must be at or after the current period start {start.isoformat()}")
    return ent


def _build(ent: Entitlement, inp: GrantInput, c: _Checked, now: datetime) -> Grant:
    return Grant(
        id=new_id(), entitlement_id=ent.id, amount=c.amount, priority=inp.priority, effective_at=c.effective_at,
        expiration_duration=inp.expiration_duration, expiration_count=inp.expiration_count, expires_at=c.expires_at,
        recurrence_interval=inp.recurrence_interval,
        recurrence_anchor=floor_m(inp.recurrence_anchor or c.effective_at) if inp.recurrence_interval else None,
        min_rollover=c.min_rollover, max_rollover=c.max_rollover, metadata=c.metadata, voided_at=None,
        created_at=now, updated_at=now)


async def create_grant(rt: Runtime, subject_key: str, ref: str, inp: GrantInput) -> Grant:
    c = _check_input(subject_key, ref, inp)
    now = rt.now()
    async with rt.db.transaction() as s:
        found = resolve(await ent_repo.by_refs(s, [subject_key], [ref]), subject_key, ref, now)
        if found is None:
            raise NotFound(f"no entitlement {ref!r} for subject {subject_key!r}")
        ent = await ent_repo.get_entitlement(s, found.id, lock=True)
        resets = (await ent_repo.resets_of(s, [found.id]))[found.id]
        ent = _check_target(ent, subject_key, ref, resets, c.effective_at, now)
        grant = _build(ent, inp, c, now)
        await repo.insert_grant(s, grant)
        await snap_repo.drop_from(s, [ent.id], c.effective_at)
        await invalidation.values_change_in_tx(s, [ent.subject_key])
    await invalidation.invalidate_subjects(rt, [ent.subject_key], ValueChangeCause.GRANT)
    return grant


async def create_grants(rt: Runtime, items: Sequence[tuple[str, str, GrantInput]]) -> list[Grant]:
    """Create a batch of (subject key, entitlement id or feature key, input): every one or none, in one
    transaction, with the rules and errors of create_grant; an error names the failing item
    (docs/semantics.md §3.7)."""
    batches.check_size(len(items))
    checked: list[_Checked] = []
    for i, (subject_key, ref, inp) in enumerate(items):
        with batches.item(i):
            checked.append(_check_input(subject_key, ref, inp))
    if not items:
        return []
    now = rt.now()
    async with rt.db.transaction() as s:
        candidates: dict[str, list[Entitlement]] = {}
        for e in await ent_repo.by_refs(s, [k for k, _, _ in items], [r for _, r, _ in items]):
            candidates.setdefault(e.subject_key, []).append(e)
        found: list[str] = []
        for i, (subject_key, ref, _) in enumerate(items):
            with batches.item(i):
                hit = resolve(candidates.get(subject_key, []), subject_key, ref, now)
                if hit is None:
                    raise NotFound(f"no entitlement {ref!r} for subject {subject_key!r}")
                found.append(hit.id)
        await ent_repo.lock_entitlements(s, found)  # then read again, as create_grant does
        ents = await ent_repo.by_ids(s, found)
        resets = await ent_repo.resets_of(s, sorted(set(found)))
        grants: list[Grant] = []
        for i, ((subject_key, ref, inp), c, ent_id) in enumerate(zip(items, checked, found, strict=True)):
            with batches.item(i):
                ent = _check_target(ents.get(ent_id), subject_key, ref, resets.get(ent_id, []), c.effective_at, now)
                grants.append(_build(ent, inp, c, now))
        await repo.insert_grants(s, grants)
        # one statement from the earliest effectiveAt: dropping more snapshots is harmless (§6.4)
        await snap_repo.drop_from(s, sorted(set(found)), min(c.effective_at for c in checked))
        subjects = sorted({k for k, _, _ in items})
        await invalidation.values_change_in_tx(s, subjects)
    await invalidation.invalidate_subjects(rt, subjects, ValueChangeCause.GRANT)
    return grants


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
