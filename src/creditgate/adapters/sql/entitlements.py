"""Entitlement and reset storage."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ARRAY, String, and_, any_, bindparam, or_, update
from sqlalchemy import select as core_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from creditgate.adapters.sql.dialect import dialect_name, insert_unique, is_unique_violation
from creditgate.adapters.sql.tables import EntitlementRow, FeatureRow, MeterRow, ResetRow
from creditgate.domain.errors import Conflict
from creditgate.records import Entitlement, EntitlementType, Reset


def to_entitlement(row: EntitlementRow) -> Entitlement:
    return Entitlement(
        id=row.id, type=row.type, subject_key=row.subject_key, feature_id=row.feature_id,
        feature_key=row.feature_key, metadata=dict(row.metadata_ or {}), config=row.config,
        is_soft_limit=bool(row.is_soft_limit), usage_period_interval=row.usage_period_interval,
        usage_period_anchor=row.usage_period_anchor, measure_usage_from=row.measure_usage_from,
        issue_after_reset=row.issue_after_reset, issue_after_reset_priority=row.issue_after_reset_priority,
        created_at=row.created_at, updated_at=row.updated_at, deleted_at=row.deleted_at)


_E: Any = EntitlementRow.__table__  # type: ignore[attr-defined]
_R: Any = ResetRow.__table__  # type: ignore[attr-defined]
_F: Any = FeatureRow.__table__  # type: ignore[attr-defined]
_M: Any = MeterRow.__table__  # type: ignore[attr-defined]
# Read paths use Core selects built once (tuples, no ORM objects): column order matters below.
ENT_COLS = (_E.c.id, _E.c.type, _E.c.subject_key, _E.c.feature_id, _E.c.feature_key, _E.c.metadata, _E.c.config,
            _E.c.is_soft_limit, _E.c.usage_period_interval, _E.c.usage_period_anchor, _E.c.measure_usage_from,
            _E.c.issue_after_reset, _E.c.issue_after_reset_priority, _E.c.created_at, _E.c.updated_at,
            _E.c.deleted_at)
_BY_REFS = core_select(*ENT_COLS).where(
    _E.c.subject_key.in_(bindparam("subjects", expanding=True)),
    or_(_E.c.id.in_(bindparam("refs", expanding=True)), _E.c.feature_key.in_(bindparam("keys", expanding=True))))
_RESETS = (core_select(_R.c.id, _R.c.entitlement_id, _R.c.reset_at, _R.c.retain_anchor, _R.c.created_at)
           .where(_R.c.entitlement_id.in_(bindparam("ids", expanding=True))).order_by(_R.c.reset_at))


def entitlement_of(r: Sequence[Any]) -> Entitlement:
    """An entitlement from a row of ENT_COLS."""
    return Entitlement(
        id=r[0], type=r[1], subject_key=r[2], feature_id=r[3], feature_key=r[4], metadata=dict(r[5] or {}),
        config=r[6], is_soft_limit=bool(r[7]), usage_period_interval=r[8], usage_period_anchor=r[9],
        measure_usage_from=r[10], issue_after_reset=r[11], issue_after_reset_priority=r[12], created_at=r[13],
        updated_at=r[14], deleted_at=r[15])


def reset_of(r: Sequence[Any]) -> Reset:
    return Reset(id=r[0], entitlement_id=r[1], reset_at=r[2], retain_anchor=bool(r[3]), created_at=r[4])


async def active_for(session: AsyncSession, subject_key: str, feature_id: str) -> Entitlement | None:
    stmt = select(EntitlementRow).where(col(EntitlementRow.subject_key) == subject_key,
                                        col(EntitlementRow.feature_id) == feature_id,
                                        col(EntitlementRow.deleted_at).is_(None))
    row = (await session.exec(stmt)).first()
    return to_entitlement(row) if row else None


async def insert_entitlement(session: AsyncSession, e: Entitlement) -> Entitlement:
    """Insert the entitlement as given (deleted too: `creditgate import` writes them as the source had them);
    a second active entitlement for (subject, feature) is CONFLICT (the partial unique index)."""
    row = EntitlementRow(
        id=e.id, type=e.type, subject_key=e.subject_key, feature_id=e.feature_id, feature_key=e.feature_key,
        metadata_=e.metadata, config=e.config, is_soft_limit=e.is_soft_limit,
        usage_period_interval=e.usage_period_interval, usage_period_anchor=e.usage_period_anchor,
        measure_usage_from=e.measure_usage_from, issue_after_reset=e.issue_after_reset,
        issue_after_reset_priority=e.issue_after_reset_priority, created_at=e.created_at,
        updated_at=e.updated_at, deleted_at=e.deleted_at)
    async def conflict() -> Conflict:
        return conflict_error(e, await active_for(session, e.subject_key, e.feature_id))

    await insert_unique(session, row, "uq_entitlements_active", conflict)
    return to_entitlement(row)


def conflict_error(e: Entitlement, existing: Entitlement | None) -> Conflict:
    """The CONFLICT of a second active entitlement for (subject, feature)."""
    return Conflict(f"subject {e.subject_key!r} already has an active entitlement for feature "
                    f"{e.feature_key!r}", conflicting_entity_id=existing.id if existing else None)


def _row(e: Entitlement) -> dict[str, Any]:
    return {"id": e.id, "type": e.type, "subject_key": e.subject_key, "feature_id": e.feature_id,
            "feature_key": e.feature_key, "metadata": e.metadata, "config": e.config,
            "is_soft_limit": e.is_soft_limit, "usage_period_interval": e.usage_period_interval,
            "usage_period_anchor": e.usage_period_anchor, "measure_usage_from": e.measure_usage_from,
            "issue_after_reset": e.issue_after_reset, "issue_after_reset_priority": e.issue_after_reset_priority,
            "created_at": e.created_at, "updated_at": e.updated_at, "deleted_at": e.deleted_at}


async def insert_entitlements(session: AsyncSession, ents: Sequence[Entitlement]) -> None:
    """Insert many in one statement (a batch); the caller has checked for active ones already (active_of),
    so a unique violation here is a concurrent insert: CONFLICT, and the transaction fails whole."""
    if not ents:
        return
    conn = await session.connection()
    try:
        await conn.execute(_E.insert(), [_row(e) for e in ents])
    except IntegrityError as exc:
        if not is_unique_violation(exc, "uq_entitlements_active"):
            raise
        raise Conflict("an entitlement of this batch was created concurrently: nothing was written") from None


_ACTIVE_OF = core_select(*ENT_COLS).where(
    _E.c.subject_key.in_(bindparam("subjects", expanding=True)),
    _E.c.feature_id.in_(bindparam("features", expanding=True)), _E.c.deleted_at.is_(None))


async def active_of(session: AsyncSession, subjects: Sequence[str],
                    feature_ids: Sequence[str]) -> dict[tuple[str, str], Entitlement]:
    """The active entitlements among these subjects and features, by (subject key, feature id)."""
    if not subjects or not feature_ids:
        return {}
    conn = await session.connection()
    rows = await conn.execute(_ACTIVE_OF, {"subjects": list(subjects), "features": list(feature_ids)})
    return {(e.subject_key, e.feature_id): e for e in map(entitlement_of, rows)}


async def get_entitlement(session: AsyncSession, ent_id: str, *, lock: bool = False) -> Entitlement | None:
    stmt = select(EntitlementRow).where(col(EntitlementRow.id) == ent_id)
    if lock and dialect_name(session) == "postgresql":
        stmt = stmt.with_for_update()
    row = (await session.exec(stmt)).first()
    return to_entitlement(row) if row else None


async def lock_entitlements(session: AsyncSession, ids: Iterable[str], *, share: bool = False) -> None:
    """Row locks in id order (PostgreSQL; SQLite serializes writers anyway)."""
    ordered = sorted(set(ids))
    if not ordered or dialect_name(session) != "postgresql":
        return
    stmt = select(EntitlementRow.id).where(col(EntitlementRow.id).in_(ordered)).order_by(col(EntitlementRow.id))
    await session.exec(stmt.with_for_update(read=share))


def _touched(subjects: Any, event_types: Any) -> Any:
    return (core_select(_E.c.id, _E.c.subject_key, _M.c.event_type)
            .join(_F, _F.c.id == _E.c.feature_id)
            .join(_M, and_(_M.c.slug == _F.c.meter_slug, _M.c.deleted_at.is_(None)))
            .where(_E.c.type == EntitlementType.METERED.value, subjects, event_types)
            .order_by(_E.c.id))


# Built once. PostgreSQL: two array parameters, rows locked (a batch names up to 10,000 subjects);
# SQLite: expanded lists (it serializes writers anyway).
_PG_TOUCHED = _touched(_E.c.subject_key == any_(bindparam("subjects", type_=ARRAY(String))),
                       _M.c.event_type == any_(bindparam("types", type_=ARRAY(String)))).with_for_update(of=_E)
_SQLITE_TOUCHED = _touched(_E.c.subject_key.in_(bindparam("subjects", expanding=True)),
                           _M.c.event_type.in_(bindparam("types", expanding=True)))


async def lock_metered_touched(session: AsyncSession, subjects: Sequence[str],
                               event_types: Sequence[str]) -> list[tuple[str, str, str]]:
    """(id, subject, event type) of the METERED entitlements of `subjects` whose live meter counts one of
    `event_types`, in id order; the rows are locked for update on PostgreSQL (SQLite serializes writers)."""
    stmt = _PG_TOUCHED if dialect_name(session) == "postgresql" else _SQLITE_TOUCHED
    conn = await session.connection()
    rows = await conn.execute(stmt, {"subjects": sorted(set(subjects)), "types": sorted(set(event_types))})
    return [(i, sub, et) for i, sub, et in rows]


async def by_refs(session: AsyncSession, subjects: Sequence[str], refs: Sequence[str]) -> list[Entitlement]:
    """Every entitlement of these subjects whose id or feature key is one of `refs` (deleted included)."""
    if not subjects or not refs:
        return []
    wanted = sorted(set(refs))
    conn = await session.connection()
    rows = await conn.execute(_BY_REFS, {"subjects": sorted(set(subjects)), "refs": wanted, "keys": wanted})
    return [entitlement_of(r) for r in rows]


async def by_ids(session: AsyncSession, ids: Sequence[str]) -> dict[str, Entitlement]:
    if not ids:
        return {}
    rows = (await session.exec(select(EntitlementRow).where(col(EntitlementRow.id).in_(sorted(set(ids)))))).all()
    return {r.id: to_entitlement(r) for r in rows}


async def list_entitlements(session: AsyncSession, subject_key: str | None, feature_key: str | None,
                            include_deleted: bool, at: datetime, limit: int | None, offset: int,
                            subjects: Sequence[str] | None = None, features: Sequence[str] | None = None,
                            types: Sequence[str] | None = None) -> list[Entitlement]:
    """`features` are feature ids or keys; `types` entitlement types."""
    stmt = select(EntitlementRow)
    if subject_key is not None:
        stmt = stmt.where(col(EntitlementRow.subject_key) == subject_key)
    if subjects is not None:
        stmt = stmt.where(col(EntitlementRow.subject_key).in_(sorted(set(subjects))))
    if features is not None:
        wanted = sorted(set(features))
        stmt = stmt.where(or_(col(EntitlementRow.feature_key).in_(wanted), col(EntitlementRow.feature_id).in_(wanted)))
    if types is not None:
        stmt = stmt.where(col(EntitlementRow.type).in_(sorted(set(types))))
    if feature_key is not None:
        stmt = stmt.where(col(EntitlementRow.feature_key) == feature_key)
    if not include_deleted:
        stmt = stmt.where(or_(col(EntitlementRow.deleted_at).is_(None), col(EntitlementRow.deleted_at) > at))
    stmt = stmt.order_by(col(EntitlementRow.subject_key), col(EntitlementRow.created_at),
                         col(EntitlementRow.id)).offset(offset)
    if limit is not None:
        stmt = stmt.limit(limit)
    return [to_entitlement(r) for r in (await session.exec(stmt)).all()]


async def subjects_of_feature(session: AsyncSession, feature_id: str) -> list[str]:
    stmt = select(EntitlementRow.subject_key).where(col(EntitlementRow.feature_id) == feature_id).distinct()
    return list((await session.exec(stmt)).all())


async def soft_delete(session: AsyncSession, ent_id: str, at: datetime) -> bool:
    stmt = (update(EntitlementRow).where(col(EntitlementRow.id) == ent_id, col(EntitlementRow.deleted_at).is_(None))
            .values(deleted_at=at, updated_at=at))
    result = await session.exec(stmt)
    return bool(result.rowcount)


async def insert_reset(session: AsyncSession, reset: Reset) -> None:
    session.add(ResetRow(id=reset.id, entitlement_id=reset.entitlement_id, reset_at=reset.reset_at,
                         retain_anchor=reset.retain_anchor, created_at=reset.created_at))
    await session.flush()


async def resets_of(session: AsyncSession, ent_ids: Sequence[str]) -> dict[str, list[Reset]]:
    out: dict[str, list[Reset]] = {i: [] for i in ent_ids}
    if not ent_ids:
        return out
    conn = await session.connection()
    for r in await conn.execute(_RESETS, {"ids": sorted(set(ent_ids))}):
        out.setdefault(r[1], []).append(reset_of(r))
    return out
