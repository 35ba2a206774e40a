"""Snapshot storage: engine state at an instant, an optimisation only (docs/semantics.md §6.4)."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import UTC, datetime

from sqlalchemy import delete, func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from creditgate.adapters.sql.dialect import dialect_name, upsert
from creditgate.adapters.sql.entitlements import lock_entitlements
from creditgate.adapters.sql.tables import SnapshotRow
from creditgate.adapters.sql.types import dec_text, to_decimal
from creditgate.domain import State


def _to_state(row: SnapshotRow) -> State:
    return State(at=row.at, balances={k: to_decimal(v) for k, v in (row.balances or {}).items()},
                 overage=row.overage, period_usage=row.period_usage)


async def latest_at_or_before(session: AsyncSession, limits: dict[str, datetime]) -> dict[str, State]:
    """The newest snapshot at or before `limits[id]` per entitlement (one statement)."""
    if not limits:
        return {}
    top = max(limits.values())
    newest = (select(SnapshotRow.entitlement_id, func.max(SnapshotRow.at).label("at"))
              .where(col(SnapshotRow.entitlement_id).in_(sorted(limits)), col(SnapshotRow.at) <= top)
              .group_by(SnapshotRow.entitlement_id))
    if len(set(limits.values())) > 1:
        # different limits: fetch every candidate and pick in Python
        stmt = select(SnapshotRow).where(col(SnapshotRow.entitlement_id).in_(sorted(limits)),
                                         col(SnapshotRow.at) <= top)
        out: dict[str, State] = {}
        for row in (await session.exec(stmt)).all():
            if row.at <= limits[row.entitlement_id]:
                best = out.get(row.entitlement_id)
                if best is None or row.at > best.at:
                    out[row.entitlement_id] = _to_state(row)
        return out
    sub = newest.subquery()
    stmt = select(SnapshotRow).join(sub, (col(SnapshotRow.entitlement_id) == sub.c.entitlement_id)
                                    & (col(SnapshotRow.at) == sub.c.at))
    return {r.entitlement_id: _to_state(r) for r in (await session.exec(stmt)).all()}


async def save(session: AsyncSession, items: Iterable[tuple[str, State]], now: datetime) -> None:
    rows = [{"entitlement_id": ent_id, "at": s.at, "balances": {k: dec_text(v) for k, v in s.balances.items()},
             "overage": s.overage, "period_usage": s.period_usage, "created_at": now} for ent_id, s in items]
    if not rows:
        return
    table = SnapshotRow.__table__  # type: ignore[attr-defined]
    stmt = upsert(session, table).values(rows).on_conflict_do_nothing(index_elements=["entitlement_id", "at"])
    await session.exec(stmt)


async def drop_from(session: AsyncSession, ent_ids: Iterable[str], at: datetime) -> None:
    """Forget every snapshot at or after `at`: something at or before it changed."""
    ids = sorted(set(ent_ids))
    if ids:
        await session.exec(delete(SnapshotRow).where(col(SnapshotRow.entitlement_id).in_(ids),
                                                     col(SnapshotRow.at) >= at))


async def lock_for_write(session: AsyncSession, ent_ids: Collection[str]) -> None:
    """Before a snapshot transaction reads anything: wait for, and then block, the writes that change these
    entitlements' past (they lock the entitlement rows). PostgreSQL: a shared row lock; SQLite: a first
    write (deleting nothing) takes the database write lock."""
    if dialect_name(session) == "postgresql":
        await lock_entitlements(session, ent_ids, share=True)
    else:
        await drop_from(session, ent_ids, _NEVER)


_NEVER = datetime(9999, 12, 31, tzinfo=UTC)
