"""`creditgate import`: writes what another OpenMeter v1 server holds, ids kept (docs/import.md).

The import may write what the public API refuses - grants effective before the current period,
voids and deletions at past instants, features archived and entitlements deleted as they were -
but only through this module, which owns its rules:

- what is stored already with the same id is skipped (so a second run resumes a first one);
- each entitlement lands in one transaction with its grants, its reset and the minute usage of
  its (meter, subject) when not imported yet: never half an entitlement;
- minute usage is stored as ingest stores it (meter_minutes), so the engine reads it like
  ingested usage and later events add to it; each imported row keeps the source's value
  (`imported`) - the only value a UNIQUE_COUNT meter has of such a minute.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import orjson

from creditgate.adapters.sql import entitlements as ent_repo
from creditgate.adapters.sql import features as feature_repo
from creditgate.adapters.sql import imports as repo
from creditgate.adapters.sql import meters as meter_repo
from creditgate.adapters.sql import snapshots as snap_repo
from creditgate.adapters.sql.grants import insert_grant
from creditgate.adapters.sql.imports import ImportedMinute
from creditgate.adapters.sql.subjects import ensure_subject
from creditgate.domain import Interval, State, floor_m
from creditgate.domain.errors import BadInput
from creditgate.domain.model import Metered, Recurrence
from creditgate.domain.periods import period_start
from creditgate.records import Aggregation, Entitlement, EntitlementType, Feature, Grant, Meter, Reset, Subject, new_id
from creditgate.services import invalidation
from creditgate.services.runtime import Runtime


@dataclass(frozen=True, slots=True)
class UsageMinute:
    """One row of the source's meter query at MINUTE windows, grouped by subject and every group of the meter."""

    subject: str
    groups: dict[str, str | None]
    minute: datetime
    value: Decimal


@dataclass(frozen=True, slots=True)
class Usage:
    """The minute usage of one meter for one subject."""

    meter: Meter
    subject: str
    minutes: Sequence[UsageMinute]


@dataclass(frozen=True, slots=True)
class EntitlementImport:
    """An entitlement as the source shows it, with its grants (voided ones too) and, when METERED, the start of
    its current usage period (`lastReset`)."""

    entitlement: Entitlement
    grants: Sequence[Grant]
    last_reset: datetime | None = None
    usage: Sequence[Usage] = ()
    # per-grant balances at the start of the current period (the source's history), when it began with a reset
    balances_at_reset: Mapping[str, Decimal] | None = None


@dataclass(slots=True)
class Tally:
    imported: int = 0
    skipped: int = 0  # stored already (same id)
    failed: int = 0
    errors: list[str] = field(default_factory=list)


async def existing(rt: Runtime, kind: str, ids: Sequence[str]) -> set[str]:
    """Which of these meter, feature or entitlement ids are stored already."""
    async with rt.db.read() as s:
        return await repo.existing_ids(s, kind, ids)


async def import_meter(rt: Runtime, meter: Meter) -> bool:
    """The meter with its id; False when that id is stored already. A live slug in use is CONFLICT."""
    if meter.aggregation not in set(Aggregation):
        raise BadInput(f"meter {meter.slug!r}: unknown aggregation {meter.aggregation!r}")
    async with rt.db.transaction() as s:
        if await repo.existing_ids(s, "meter", [meter.id]):
            return False
        await meter_repo.insert_meter(s, meter)
    return True


async def import_feature(rt: Runtime, feature: Feature) -> bool:
    """The feature with its id, archived as it was; False when that id is stored already."""
    async with rt.db.transaction() as s:
        if await repo.existing_ids(s, "feature", [feature.id]):
            return False
        await feature_repo.insert_feature(s, feature)
    return True


async def import_subjects(rt: Runtime, subjects: Sequence[Subject]) -> int:
    """Subjects with their ids, those whose key is not stored yet; how many were written."""
    written = 0
    async with rt.db.transaction() as s:
        for subject in subjects:
            written += await repo.insert_subject(s, subject)
    return written


def minute_rows(meter: Meter, subject: str, minutes: Sequence[UsageMinute]) -> list[ImportedMinute]:
    """The aggregates ingest would keep for these minute values, as far as a value tells them: SUM and COUNT
    exactly, MIN and MAX as the extreme, AVG as one value of weight 1, UNIQUE_COUNT only as `imported`."""
    names = sorted(meter.group_by)
    out: list[ImportedMinute] = []
    agg = meter.aggregation
    for m in minutes:
        if m.subject != subject:
            raise BadInput(f"meter {meter.slug!r}: usage of subject {m.subject!r} given for {subject!r}")
        groups = {n: m.groups.get(n) for n in names}
        group_key = orjson.dumps(groups, option=orjson.OPT_SORT_KEYS).decode() if names else "{}"
        value = m.value
        total, count, lo, hi = Decimal(0), 0, None, None
        if agg == Aggregation.SUM:
            total = value
        elif agg == Aggregation.COUNT:
            if value != value.to_integral_value():
                raise BadInput(f"meter {meter.slug!r}: a COUNT of {value} at {m.minute.isoformat()}")
            count = int(value)
        elif agg == Aggregation.AVG:
            total, count = value, 1
        elif agg in (Aggregation.MIN, Aggregation.MAX):
            lo = hi = float(value)
        out.append(ImportedMinute(meter_id=meter.id, subject=subject, group_key=group_key, groups=groups,
                                  minute=floor_m(m.minute), sum=total, count=count, min=lo, max=hi, imported=value))
    return out


def reset_for(ent: Entitlement, last_reset: datetime | None, now: datetime) -> Reset | None:
    """The manual reset the source's `lastReset` shows, when it is not a periodic reset of the anchor
    (docs/import.md: earlier manual resets are not listed by the v1 API)."""
    if (ent.type != EntitlementType.METERED or last_reset is None or ent.measure_usage_from is None
            or ent.usage_period_anchor is None or ent.usage_period_interval is None):
        return None
    at = floor_m(last_reset)
    if at <= ent.measure_usage_from:
        return None
    sched = Metered(measure_usage_from=ent.measure_usage_from,
                    usage_period=Recurrence(Interval(ent.usage_period_interval), ent.usage_period_anchor))
    if period_start(sched, at) == at:
        return None
    return Reset(id=new_id(), entitlement_id=ent.id, reset_at=at, retain_anchor=True, created_at=now)


def pinned_state(ent: Entitlement, item: EntitlementImport) -> State | None:
    """The engine state at the start of the current period as the source had it, stored as a snapshot there
    (docs/semantics.md §6.4) so that values from `lastReset` on are exact although earlier manual resets
    are unknown. Like any snapshot it is dropped when usage before it changes (docs/import.md)."""
    if (item.balances_at_reset is None or item.last_reset is None or ent.measure_usage_from is None
            or ent.type != EntitlementType.METERED):
        return None
    at = floor_m(item.last_reset)
    if at <= ent.measure_usage_from:
        return None
    balances = {g.id: Decimal(item.balances_at_reset.get(g.id, 0)) for g in item.grants if g.effective_at <= at}
    return State(at=at, balances=balances, overage=Decimal(0), period_usage=Decimal(0))


async def import_entitlement(rt: Runtime, item: EntitlementImport) -> bool:
    """The entitlement, its grants, its reset and the usage not imported yet, in one transaction;
    False (nothing written) when its id is stored already."""
    return (await import_entitlements(rt, [item]))[0]


async def import_entitlements(rt: Runtime, items: Sequence[EntitlementImport]) -> list[bool]:
    """`import_entitlement` for several entitlements in ONE transaction: all of them or none (a failure of one
    fails them all; the caller can then write them one by one). Per entitlement, False when its id is stored
    already. One commit for many entitlements: an import writes thousands, and a commit costs more than the
    few rows of an entitlement."""
    for item in items:
        for g in item.grants:
            if g.entitlement_id != item.entitlement.id:
                raise BadInput(f"grant {g.id} belongs to entitlement {g.entitlement_id}, not {item.entitlement.id}")
    rows = [[(u, minute_rows(u.meter, u.subject, u.minutes)) for u in item.usage] for item in items]
    now = rt.now()
    out: list[bool] = []
    async with rt.db.transaction() as s:
        there = await repo.existing_ids(s, "entitlement", [item.entitlement.id for item in items])
        for item, usage in zip(items, rows, strict=True):
            ent = item.entitlement
            if ent.id in there:
                out.append(False)
                continue
            there.add(ent.id)
            await ensure_subject(s, ent.subject_key, now)
            await ent_repo.insert_entitlement(s, ent)
            for g in sorted(item.grants, key=lambda g: g.id):
                await insert_grant(s, g)
            reset = reset_for(ent, item.last_reset, now)
            if reset is not None:
                await ent_repo.insert_reset(s, reset)
            pinned = pinned_state(ent, item)
            if pinned is not None:
                await snap_repo.save(s, [(ent.id, pinned)], now)
            for u, minutes in usage:
                if not await repo.has_imported_minutes(s, u.meter.id, u.subject):
                    await repo.add_imported_minutes(s, minutes)
            out.append(True)
    written = sorted({item.entitlement.subject_key for item, w in zip(items, out, strict=True) if w})
    if written:
        await invalidation.invalidate_subjects(rt, written)
    return out


async def usage_imported(rt: Runtime, meter_id: str, subject: str) -> bool:
    async with rt.db.read() as s:
        return await repo.has_imported_minutes(s, meter_id, subject)


async def usage_imported_of(rt: Runtime, meter_id: str, subjects: Sequence[str]) -> set[str]:
    """`usage_imported` for many subjects of a meter at once: those whose usage is there."""
    async with rt.db.read() as s:
        return await repo.subjects_with_imported_minutes(s, meter_id, subjects)


async def import_usage(rt: Runtime, usage: Usage) -> bool:
    """Minute usage of a (meter, subject) that no imported entitlement brought; False when imported already."""
    rows = minute_rows(usage.meter, usage.subject, usage.minutes)
    async with rt.db.transaction() as s:
        if await repo.has_imported_minutes(s, usage.meter.id, usage.subject):
            return False
        await repo.add_imported_minutes(s, rows)
    await invalidation.invalidate_subjects(rt, [usage.subject])
    return True
