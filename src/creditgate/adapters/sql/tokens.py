"""Subject (portal) token storage."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from creditgate.adapters.sql.tables import PortalTokenRow
from creditgate.records import PortalToken


def to_token(row: PortalTokenRow) -> PortalToken:
    return PortalToken(id=row.id, subject_key=row.subject_key, expires_at=row.expires_at,
                       invalidated_at=row.invalidated_at, created_at=row.created_at)


async def insert_token(session: AsyncSession, t: PortalToken) -> None:
    session.add(PortalTokenRow(id=t.id, subject_key=t.subject_key, expires_at=t.expires_at,
                               invalidated_at=t.invalidated_at, created_at=t.created_at))
    await session.flush()


async def list_tokens(session: AsyncSession, subject_key: str | None) -> list[PortalToken]:
    stmt = select(PortalTokenRow)
    if subject_key is not None:
        stmt = stmt.where(col(PortalTokenRow.subject_key) == subject_key)
    return [to_token(r) for r in (await session.exec(stmt.order_by(col(PortalTokenRow.created_at)))).all()]


async def invalidate(session: AsyncSession, ids: Sequence[str] | None, subject_key: str | None,
                     at: datetime) -> list[str]:
    stmt = select(PortalTokenRow.id).where(col(PortalTokenRow.invalidated_at).is_(None))
    if ids is not None:
        stmt = stmt.where(col(PortalTokenRow.id).in_(ids))
    if subject_key is not None:
        stmt = stmt.where(col(PortalTokenRow.subject_key) == subject_key)
    found = list((await session.exec(stmt)).all())
    if found:
        await session.exec(update(PortalTokenRow).where(col(PortalTokenRow.id).in_(found))
                           .values(invalidated_at=at))
    return found


async def invalidated_ids(session: AsyncSession, now: datetime) -> set[str]:
    """Ids of invalidated tokens that have not expired yet (expired ones fail anyway)."""
    stmt = select(PortalTokenRow.id).where(col(PortalTokenRow.invalidated_at).is_not(None),
                                           col(PortalTokenRow.expires_at) > now)
    return set((await session.exec(stmt)).all())
