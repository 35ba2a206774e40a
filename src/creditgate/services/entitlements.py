"""Entitlements: create, delete, reset, read (docs/semantics.md §3, §4)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from creditgate.adapters.sql import entitlements as repo
from creditgate.adapters.sql import features as feature_repo
from creditgate.adapters.sql import grants as grant_repo
from creditgate.adapters.sql import snapshots as snap_repo
from creditgate.adapters.sql.db import Session
from creditgate.adapters.sql.subjects import ensure_subject, ensure_subjects
from creditgate.domain import Interval, current_usage_period, floor_m, period_start
from creditgate.domain.errors import BadInput, Conflict, NotFound
from creditgate.records import Entitlement, EntitlementType, Feature, Grant, Reset, ValueChangeCause, new_id
from creditgate.services import batches, invalidation, validation
from creditgate.services.balances import expires_at, to_metered
from creditgate.services.features import check_page
from creditgate.services.runtime import Runtime
from creditgate.services.subjects import check_metadata, check_subject_key

TYPES = set(EntitlementType)
PERIODS = set(Interval) - {Interval.HOUR}  # usage periods and grant recurrences


@dataclass(frozen=True, slots=True)
class EntitlementInput:
    type: str
    feature_key: str
    metadata: Any = None
    usage_period_interval: str | None = None
    usage_period_anchor: datetime | None = None
    has_usage_period: bool = False
    is_soft_limit: bool | None = None
    measure_usage_from: datetime | None = None
    issue_after_reset: float | Decimal | None = None
    issue_after_reset_priority: int | None = None
    config: Any = None


to_amount = validation.amount


def check_priority(priority: int, what: str = "priority") -> None:
    validation.priority(priority, what)


def _check_fields(inp: EntitlementInput) -> None:
    if inp.type not in TYPES:
        raise BadInput("type must be METERED, BOOLEAN or STATIC")
    metered_fields = {"usagePeriod": inp.has_usage_period, "isSoftLimit": inp.is_soft_limit is not None,
                      "measureUsageFrom": inp.measure_usage_from is not None,
                      "issueAfterReset": inp.issue_after_reset is not None,
                      "issueAfterResetPriority": inp.issue_after_reset_priority is not None}
    if inp.type != EntitlementType.METERED:
        given = [k for k, v in metered_fields.items() if v]
        if given:
            raise BadInput(f"{', '.join(given)} only apply to METERED entitlements")
    if inp.type == EntitlementType.STATIC:
        if not isinstance(inp.config, dict):
            raise BadInput("a STATIC entitlement needs `config`, a JSON object")
        validation.json_value(inp.config, "config")
    elif inp.config is not None:
        raise BadInput("`config` only applies to STATIC entitlements")
    if inp.type == EntitlementType.METERED:
        if not inp.has_usage_period or inp.usage_period_interval is None:
            raise BadInput("a METERED entitlement needs a usagePeriod")
        if inp.usage_period_interval not in PERIODS:
            raise BadInput("usagePeriod.interval must be DAY, WEEK, MONTH or YEAR")
        if inp.issue_after_reset_priority is not None:
            if inp.issue_after_reset is None:
                raise BadInput("issueAfterResetPriority needs issueAfterReset")
            check_priority(inp.issue_after_reset_priority, "issueAfterResetPriority")
        if inp.issue_after_reset is not None and to_amount(inp.issue_after_reset, "issueAfterReset") <= 0:
            raise BadInput("issueAfterReset must be > 0")


def _check_input(subject_key: str, inp: EntitlementInput) -> dict[str, Any]:
    """The checks that need no database; returns the metadata to store."""
    check_subject_key(subject_key)
    validation.lookup(inp.feature_key, "featureKey")
    _check_fields(inp)
    return check_metadata(inp.metadata)


def _check_feature(inp: EntitlementInput, feature: Feature | None) -> Feature:
    if feature is None:
        raise NotFound(f"feature {inp.feature_key!r} not found")
    if inp.type == EntitlementType.METERED and not feature.meter_slug:
        raise BadInput(f"feature {feature.key!r} has no meter: it cannot be METERED")
    return feature


def _build(subject_key: str, inp: EntitlementInput, feature: Feature, meta: dict[str, Any],
           now: datetime) -> tuple[Entitlement, Grant | None]:
    """The entitlement to store, and the grant its issueAfterReset makes (docs/semantics.md §3.3)."""
    metered = inp.type == EntitlementType.METERED
    iar = to_amount(inp.issue_after_reset, "issueAfterReset") if inp.issue_after_reset is not None else None
    iar_priority = (inp.issue_after_reset_priority if inp.issue_after_reset_priority is not None else 1) \
        if iar is not None else None
    measure = floor_m(inp.measure_usage_from or now) if metered else None
    ent = Entitlement(
        id=new_id(), type=inp.type, subject_key=subject_key, feature_id=feature.id, feature_key=feature.key,
        metadata=meta, config=inp.config if inp.type == EntitlementType.STATIC else None,
        is_soft_limit=bool(inp.is_soft_limit) if metered else False,
        usage_period_interval=inp.usage_period_interval if metered else None,
        usage_period_anchor=floor_m(inp.usage_period_anchor or now) if metered else None,
        measure_usage_from=measure, issue_after_reset=iar, issue_after_reset_priority=iar_priority,
        created_at=now, updated_at=now, deleted_at=None)
    if iar is None or measure is None:
        return ent, None
    return ent, Grant(
        id=new_id(), entitlement_id=ent.id, amount=iar, priority=iar_priority or 1,
        effective_at=measure, expiration_duration=Interval.YEAR, expiration_count=100,
        expires_at=expires_at(measure, Interval.YEAR, 100), recurrence_interval=None, recurrence_anchor=None,
        min_rollover=iar, max_rollover=iar, metadata={"issueAfterReset": "true"}, voided_at=None,
        created_at=now, updated_at=now)


async def create_entitlement(rt: Runtime, subject_key: str, inp: EntitlementInput, *,
                             replacing: str | None = None) -> Entitlement:
    meta = _check_input(subject_key, inp)
    now = rt.now()
    async with rt.db.transaction() as s:
        if replacing is not None:
            await _retire(s, subject_key, replacing, inp.feature_key, now)
        feature = _check_feature(inp, await feature_repo.live_by_key(s, inp.feature_key))
        await ensure_subject(s, subject_key, now)
        ent, grant = _build(subject_key, inp, feature, meta, now)
        ent = await repo.insert_entitlement(s, ent)
        if grant is not None:
            await grant_repo.insert_grant(s, grant)
        await invalidation.values_change_in_tx(s, [subject_key])
    await invalidation.invalidate_subjects(rt, [subject_key], ValueChangeCause.ENTITLEMENT)
    return ent


async def create_entitlements(rt: Runtime, items: Sequence[tuple[str, EntitlementInput]]) -> list[Entitlement]:
    """Create a batch of (subject key, input): every one or none, in one transaction, with the rules and
    errors of create_entitlement; an error names the failing item (docs/semantics.md §3.7)."""
    batches.check_size(len(items))
    metas: list[dict[str, Any]] = []
    first: dict[tuple[str, str], int] = {}
    for i, (subject_key, inp) in enumerate(items):
        with batches.item(i):
            metas.append(_check_input(subject_key, inp))
            earlier = first.setdefault((subject_key, inp.feature_key), i)
            if earlier != i:  # one active entitlement per subject and feature (docs/semantics.md §3.2)
                raise Conflict(f"subject {subject_key!r} gets feature {inp.feature_key!r} twice in this batch "
                               f"(inputs[{earlier}])")
    if not items:
        return []
    now = rt.now()
    subjects = sorted({k for k, _ in items})
    async with rt.db.transaction() as s:
        features = await feature_repo.live_by_keys(s, sorted({inp.feature_key for _, inp in items}))
        built: list[tuple[Entitlement, Grant | None]] = []
        for i, (subject_key, inp) in enumerate(items):
            with batches.item(i):
                feature = _check_feature(inp, features.get(inp.feature_key))
                built.append(_build(subject_key, inp, feature, metas[i], now))
        active = await repo.active_of(s, subjects, sorted({e.feature_id for e, _ in built}))
        for i, (ent, _) in enumerate(built):
            existing = active.get((ent.subject_key, ent.feature_id))
            if existing is not None:
                raise batches.at_index(i, repo.conflict_error(ent, existing))
        await ensure_subjects(s, subjects, now)
        await repo.insert_entitlements(s, [e for e, _ in built])
        await grant_repo.insert_grants(s, [g for _, g in built if g is not None])
        await invalidation.values_change_in_tx(s, subjects)
    await invalidation.invalidate_subjects(rt, subjects, ValueChangeCause.ENTITLEMENT)
    return [e for e, _ in built]


async def override_entitlement(rt: Runtime, subject_key: str, ref: str, inp: EntitlementInput) -> Entitlement:
    """Replace the subject's entitlement `ref` (id or feature key, resolved at now) by a new one of the same
    feature, in one transaction: the old one is deleted at now, the new one created at now (docs/semantics.md §3)."""
    _check_ref(subject_key, ref)
    return await create_entitlement(rt, subject_key, inp, replacing=ref)


async def _retire(s: Session, subject_key: str, ref: str, feature_key: str, now: datetime) -> None:
    found = resolve(await repo.by_refs(s, [subject_key], [ref]), subject_key, ref, now)
    old = await repo.get_entitlement(s, found.id, lock=True) if found is not None else None
    if old is None or not old.visible_at(now) or not await repo.soft_delete(s, old.id, now):
        raise NotFound(f"no entitlement {ref!r} for subject {subject_key!r} to override")
    if old.feature_key != feature_key:
        raise BadInput(f"an override keeps the feature: entitlement {ref!r} is for feature {old.feature_key!r}")


def _check_ref(subject_key: str, ref: str) -> None:
    validation.lookup(subject_key, "subject key")
    validation.lookup(ref, "entitlement id or feature key")


async def delete_entitlement(rt: Runtime, subject_key: str, ent_id: str) -> None:
    _check_ref(subject_key, ent_id)
    now = rt.now()
    async with rt.db.transaction() as s:
        ent = await repo.get_entitlement(s, ent_id, lock=True)
        if ent is None or ent.subject_key != subject_key or ent.deleted_at is not None:
            raise NotFound(f"entitlement {ent_id!r} not found for subject {subject_key!r}")
        if not await repo.soft_delete(s, ent_id, now):
            raise NotFound(f"entitlement {ent_id!r} not found for subject {subject_key!r}")
        await invalidation.values_change_in_tx(s, [subject_key])
    await invalidation.invalidate_subjects(rt, [subject_key], ValueChangeCause.ENTITLEMENT)


async def reset_entitlement(rt: Runtime, subject_key: str, ref: str, effective_at: datetime | None,
                            retain_anchor: bool) -> Entitlement:
    """Reset the entitlement `ref` (id or feature key, resolved at now: docs/semantics.md §3)."""
    _check_ref(subject_key, ref)
    now = rt.now()
    at = floor_m(effective_at or now)
    async with rt.db.transaction() as s:
        found = resolve(await repo.by_refs(s, [subject_key], [ref]), subject_key, ref, now)
        ent = await repo.get_entitlement(s, found.id, lock=True) if found is not None else None
        if ent is None or ent.subject_key != subject_key or not ent.visible_at(now):
            raise NotFound(f"entitlement {ref!r} not found for subject {subject_key!r}")
        if ent.type != EntitlementType.METERED:
            raise BadInput("only METERED entitlements can be reset")
        resets = (await repo.resets_of(s, [ent.id]))[ent.id]
        start = period_start(to_metered(ent, resets), now)
        if at > now or (effective_at is not None and effective_at > now):
            raise BadInput("a reset cannot be in the future")
        if at <= start:
            raise BadInput(f"a reset must be after the current period start {start.isoformat()}")
        await repo.insert_reset(s, Reset(id=new_id(), entitlement_id=ent.id, reset_at=at,
                                         retain_anchor=retain_anchor, created_at=now))
        await snap_repo.drop_from(s, [ent.id], at)
        await invalidation.values_change_in_tx(s, [subject_key])
    await invalidation.invalidate_subjects(rt, [subject_key], ValueChangeCause.RESET)
    return ent


async def get_entitlement(rt: Runtime, ent_id: str) -> Entitlement | None:
    validation.lookup(ent_id, "entitlement id")
    async with rt.db.read() as s:
        return await repo.get_entitlement(s, ent_id)


async def list_entitlements(rt: Runtime, subject_key: str | None = None, feature_key: str | None = None,
                            include_deleted: bool = False, limit: int = 1000, offset: int = 0,
                            subjects: Sequence[str] | None = None, features: Sequence[str] | None = None,
                            types: Sequence[str] | None = None) -> list[Entitlement]:
    """Entitlements, filtered by subject key, feature key, and (any of) subjects, feature ids or keys, types."""
    check_page(limit, offset)
    for value, what in ((subject_key, "subjectKey"), (feature_key, "featureKey")):
        if value is not None:
            validation.lookup(value, what)
    validation.lookups(subjects or (), "subject")
    validation.lookups(features or (), "feature")
    if types is not None and not set(types) <= TYPES:
        raise BadInput("entitlement types are METERED, BOOLEAN or STATIC")
    async with rt.db.read() as s:
        return await repo.list_entitlements(s, subject_key, feature_key, include_deleted, rt.now(), limit, offset,
                                            subjects=subjects, features=features, types=types)


async def entitlements_of_subjects(rt: Runtime, subjects: Sequence[str],
                                   include_deleted: bool) -> dict[str, list[Entitlement]]:
    validation.lookups(subjects, "subject key")
    async with rt.db.read() as s:
        rows = await repo.list_entitlements(s, None, None, include_deleted, rt.now(), None, 0, subjects=subjects)
    out: dict[str, list[Entitlement]] = {k: [] for k in subjects}
    for e in rows:
        out.setdefault(e.subject_key, []).append(e)
    return out


def resolve(candidates: Sequence[Entitlement], subject_key: str, ref: str, t: datetime) -> Entitlement | None:
    """The entitlement `ref` (id or feature key) of a subject, visible at t (docs/semantics.md §3)."""
    visible = [e for e in candidates if e.subject_key == subject_key and e.visible_at(t)]
    for e in visible:
        if e.id == ref:
            return e
    by_key = [e for e in visible if e.feature_key == ref]
    if not by_key:
        return None
    created = [e for e in by_key if e.created_at <= t]
    if created:
        return max(created, key=lambda e: (e.created_at, e.id))
    return min(by_key, key=lambda e: (e.created_at, e.id))


async def resolve_one(rt: Runtime, subject_key: str, ref: str, t: datetime) -> Entitlement:
    _check_ref(subject_key, ref)
    async with rt.db.read() as s:
        candidates = await repo.by_refs(s, [subject_key], [ref])
    ent = resolve(candidates, subject_key, ref, t)
    if ent is None:
        raise NotFound(f"no entitlement {ref!r} for subject {subject_key!r}")
    return ent


@dataclass(frozen=True, slots=True)
class UsagePeriods:
    """The period fields of a METERED entitlement at an instant (docs/semantics.md §3.6)."""

    interval: str
    anchor: datetime  # the anchor after the resets that did not retain it
    current_from: datetime  # the current usage period [current_from, current_to)
    current_to: datetime

    @property
    def last_reset(self) -> datetime:
        """The start of the current period: the last reset, manual or periodic."""
        return self.current_from


def usage_periods(ent: Entitlement, resets: Sequence[Reset], now: datetime) -> UsagePeriods | None:
    """The period fields of a METERED entitlement at now; None for other types."""
    if ent.type != EntitlementType.METERED:
        return None
    anchor = current_anchor(ent, resets)
    assert anchor is not None and ent.usage_period_interval is not None
    start, end = current_usage_period(to_metered(ent, resets), now)
    return UsagePeriods(interval=ent.usage_period_interval, anchor=anchor, current_from=start, current_to=end)


async def usage_periods_of(rt: Runtime, ents: Sequence[Entitlement]) -> dict[str, UsagePeriods]:
    """The period fields of the METERED entitlements among `ents` at now, by entitlement id."""
    metered = [e for e in ents if e.type == EntitlementType.METERED]
    if not metered:
        return {}
    resets = await resets_of(rt, [e.id for e in metered])
    now = rt.now()
    out: dict[str, UsagePeriods] = {}
    for e in metered:
        periods = usage_periods(e, resets.get(e.id, []), now)
        assert periods is not None
        out[e.id] = periods
    return out


def current_anchor(ent: Entitlement, resets: Sequence[Reset]) -> datetime | None:
    """The usage period anchor after the manual resets that did not retain it."""
    anchor = ent.usage_period_anchor
    for r in sorted(resets, key=lambda r: r.reset_at):
        if not r.retain_anchor:
            anchor = r.reset_at
    return anchor


async def resets_of(rt: Runtime, ent_ids: Sequence[str]) -> dict[str, list[Reset]]:
    """The manual resets of entitlements, by entitlement id."""
    validation.lookups(ent_ids, "entitlement id")
    async with rt.db.read() as s:
        return await repo.resets_of(s, list(ent_ids))
