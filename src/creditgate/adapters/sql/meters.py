"""Meter storage."""

from __future__ import annotations

from sqlalchemy import or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from creditgate.adapters.sql.tables import MeterRow
from creditgate.services.records import Meter


def to_meter(row: MeterRow) -> Meter:
    return Meter(id=row.id, slug=row.slug, description=row.description, event_type=row.event_type,
                 aggregation=row.aggregation, value_property=row.value_property,
                 group_by=dict(row.group_by or {}), window_size=row.window_size,
                 created_at=row.created_at, updated_at=row.updated_at)


async def get_meter(session: AsyncSession, id_or_slug: str) -> Meter | None:
    """A live (not deleted) meter by id or slug."""
    stmt = select(MeterRow).where(or_(col(MeterRow.slug) == id_or_slug, col(MeterRow.id) == id_or_slug),
                                  col(MeterRow.deleted_at).is_(None))
    row = (await session.exec(stmt)).first()
    return to_meter(row) if row else None
