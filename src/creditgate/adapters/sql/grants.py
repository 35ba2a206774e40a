"""Grant storage."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, or_
from sqlalchemy import select as core_select
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from creditgate.adapters.sql.dialect import dialect_name
from creditgate.adapters.sql.tables import EntitlementRow, GrantRow
from creditgate.records import Grant


def to_grant(row: GrantRow) -> Grant:
    return Grant(id=row.id, entitlement_id=row.entitlement_id, amount=row.amount, priority=row.priority,
                 effective_at=row.effective_at, expiration_duration=row.expiration_duration,
                 expiration_count=row.expiration_count, expires_at=row.expires_at,
                 recurrence_interval=row.recurrence_interval, recurrence_anchor=row.recurrence_anchor,
                 min_rollover=row.min_rollover, max_rollover=row.max_rollover, metadata=dict(row.metadata_ or {}),
                 voided_at=row.voided_at, created_at=row.created_at, updated_at=row.updated_at)


_G: Any = GrantRow.__table__  # type: ignore[attr-defined]
# the read path's Core select (tuples, no ORM objects): column order matters in grant_of
GRANT_COLS = (_G.c.id, _G.c.entitlement_id, _G.c.amount, _G.c.priority, _G.c.effective_at,
              _G.c.expiration_duration, _G.c.expiration_count, _G.c.expires_at, _G.c.recurrence_interval,
              _G.c.recurrence_anchor, _G.c.min_rollover, _G.c.max_rollover, _G.c.metadata, _G.c.voided_at,
              _G.c.created_at, _G.c.updated_at)
_OF = (core_select(*GRANT_COLS).where(_G.c.entitlement_id.in_(bindparam("ids", expanding=True)))
       .order_by(_G.c.created_at, _G.c.id))


def grant_of(r: Sequence[Any]) -> Grant:
    """A grant from a row of GRANT_COLS."""
    return Grant(id=r[0], entitlement_id=r[1], amount=r[2], priority=r[3], effective_at=r[4],
                 expiration_duration=r[5], expiration_count=r[6], expires_at=r[7], recurrence_interval=r[8],
                 recurrence_anchor=r[9], min_rollover=r[10], max_rollover=r[11], metadata=dict(r[12] or {}),
                 voided_at=r[13], created_at=r[14], updated_at=r[15])


async def insert_grant(session: AsyncSession, g: Grant) -> Grant:
    session.add(GrantRow(
        id=g.id, entitlement_id=g.entitlement_id, amount=g.amount, priority=g.priority,
        effective_at=g.effective_at, expiration_duration=g.expiration_duration,
        expiration_count=g.expiration_count, expires_at=g.expires_at, recurrence_interval=g.recurrence_interval,
        recurrence_anchor=g.recurrence_anchor, min_rollover=g.min_rollover, max_rollover=g.max_rollover,
        metadata_=g.metadata, voided_at=g.voided_at, created_at=g.created_at, updated_at=g.updated_at))
    await session.flush()
    return g


async def insert_grants(session: AsyncSession, grants: Sequence[Grant]) -> None:
    """Insert many in one statement (a batch)."""
    if not grants:
        return
    conn = await session.connection()
    await conn.execute(_G.insert(), [{
        "id": g.id, "entitlement_id": g.entitlement_id, "amount": g.amount, "priority": g.priority,
        "effective_at": g.effective_at, "expiration_duration": g.expiration_duration,
        "expiration_count": g.expiration_count, "expires_at": g.expires_at,
        "recurrence_interval": g.recurrence_interval, "recurrence_anchor": g.recurrence_anchor,
        "min_rollover": g.min_rollover, "max_rollover": g.max_rollover, "metadata": g.metadata,
        "voided_at": g.voided_at, "created_at": g.created_at, "updated_at": g.updated_at} for g in grants])


async def get_grant(session: AsyncSession, grant_id: str, *, lock: bool = False) -> Grant | None:
    stmt = select(GrantRow).where(col(GrantRow.id) == grant_id)
    if lock and dialect_name(session) == "postgresql":
        stmt = stmt.with_for_update()
    row = (await session.exec(stmt)).first()
    return to_grant(row) if row else None


async def set_voided(session: AsyncSession, grant_id: str, at: datetime) -> Grant:
    row = await session.get(GrantRow, grant_id)
    assert row is not None
    row.voided_at = at
    row.updated_at = at
    await session.flush()
    return to_grant(row)


async def grants_of(session: AsyncSession, ent_ids: Sequence[str]) -> dict[str, list[Grant]]:
    out: dict[str, list[Grant]] = {i: [] for i in ent_ids}
    if not ent_ids:
        return out
    conn = await session.connection()
    for r in await conn.execute(_OF, {"ids": sorted(set(ent_ids))}):
        out.setdefault(r[1], []).append(grant_of(r))
    return out


async def list_grants(session: AsyncSession, subject_key: str | None, entitlement_id: str | None,
                      include_deleted: bool, limit: int, offset: int, subjects: Sequence[str] | None = None,
                      features: Sequence[str] | None = None) -> list[Grant]:
    """Grants, newest last; `include_deleted` also lists grants of deleted entitlements; `features` are the
    ids or keys of their entitlements' features.

    Voided grants stay listed (docs/semantics.md §5): voiding is not deleting."""
    stmt = select(GrantRow).join(EntitlementRow, col(EntitlementRow.id) == col(GrantRow.entitlement_id))
    if subject_key is not None:
        stmt = stmt.where(col(EntitlementRow.subject_key) == subject_key)
    if subjects is not None:
        stmt = stmt.where(col(EntitlementRow.subject_key).in_(sorted(set(subjects))))
    if features is not None:
        wanted = sorted(set(features))
        stmt = stmt.where(or_(col(EntitlementRow.feature_key).in_(wanted), col(EntitlementRow.feature_id).in_(wanted)))
    if entitlement_id is not None:
        stmt = stmt.where(col(GrantRow.entitlement_id) == entitlement_id)
    if not include_deleted:
        stmt = stmt.where(col(EntitlementRow.deleted_at).is_(None))
    stmt = stmt.order_by(col(GrantRow.created_at), col(GrantRow.id)).limit(limit).offset(offset)
    return [to_grant(r) for r in (await session.exec(stmt)).all()]
