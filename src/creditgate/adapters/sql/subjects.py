"""Subject storage."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from creditgate.adapters.sql.dialect import upsert
from creditgate.adapters.sql.tables import SubjectRow
from creditgate.records import Subject, new_id


def to_subject(row: SubjectRow) -> Subject:
    return Subject(id=row.id, key=row.key, display_name=row.display_name, metadata=dict(row.metadata_ or {}),
                   created_at=row.created_at, updated_at=row.updated_at)


async def upsert_subject(session: AsyncSession, key: str, display_name: str | None,
                         metadata: dict[str, Any] | None, now: datetime) -> Subject:
    table = SubjectRow.__table__  # type: ignore[attr-defined]
    stmt = upsert(session, table).values(id=new_id(), key=key, display_name=display_name,
                                         metadata=metadata or {}, created_at=now, updated_at=now)
    stmt = stmt.on_conflict_do_update(index_elements=["key"], set_={
        "display_name": stmt.excluded.display_name, "metadata": stmt.excluded.metadata,
        "updated_at": stmt.excluded.updated_at})
    await session.exec(stmt)
    found = await get_subject(session, key)
    assert found is not None
    return found


async def ensure_subject(session: AsyncSession, key: str, now: datetime) -> None:
    """Create the subject record for `key` if there is none (entitlements create subjects)."""
    table = SubjectRow.__table__  # type: ignore[attr-defined]
    stmt = upsert(session, table).values(id=new_id(), key=key, display_name=None, metadata={},
                                         created_at=now, updated_at=now)
    await session.exec(stmt.on_conflict_do_nothing(index_elements=["key"]))


async def ensure_subjects(session: AsyncSession, keys: Sequence[str], now: datetime) -> None:
    """ensure_subject for many keys, in one statement run over the keys (compiled once, whatever the count)."""
    if not keys:
        return
    table = SubjectRow.__table__  # type: ignore[attr-defined]
    stmt = upsert(session, table).on_conflict_do_nothing(index_elements=["key"])
    conn = await session.connection()
    await conn.execute(stmt, [{"id": new_id(), "key": k, "display_name": None, "metadata": {}, "created_at": now,
                               "updated_at": now} for k in sorted(set(keys))])


async def get_subject(session: AsyncSession, id_or_key: str) -> Subject | None:
    stmt = select(SubjectRow).where(or_(col(SubjectRow.key) == id_or_key, col(SubjectRow.id) == id_or_key))
    rows = (await session.exec(stmt)).all()
    by_key = [r for r in rows if r.key == id_or_key]
    row = by_key[0] if by_key else (rows[0] if rows else None)
    return to_subject(row) if row else None


async def list_subjects(session: AsyncSession, limit: int | None = None, offset: int = 0) -> list[Subject]:
    stmt = select(SubjectRow).order_by(SubjectRow.key).offset(offset)
    if limit is not None:
        stmt = stmt.limit(limit)
    return [to_subject(r) for r in (await session.exec(stmt)).all()]


async def delete_subject(session: AsyncSession, subject_id: str) -> None:
    await session.exec(delete(SubjectRow).where(col(SubjectRow.id) == subject_id))
