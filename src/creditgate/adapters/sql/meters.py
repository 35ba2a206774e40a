"""Meter storage."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from creditgate.adapters.sql.dialect import insert_unique
from creditgate.adapters.sql.tables import FeatureRow, MeterRow
from creditgate.domain.errors import Conflict
from creditgate.records import Meter


def to_meter(row: MeterRow) -> Meter:
    return Meter(id=row.id, slug=row.slug, description=row.description, event_type=row.event_type,
                 aggregation=row.aggregation, value_property=row.value_property,
                 group_by=dict(row.group_by or {}), window_size=row.window_size,
                 created_at=row.created_at, updated_at=row.updated_at)


_M: Any = MeterRow.__table__  # type: ignore[attr-defined]
METER_COLS = (_M.c.id, _M.c.slug, _M.c.description, _M.c.event_type, _M.c.aggregation, _M.c.value_property,
              _M.c.group_by, _M.c.window_size, _M.c.created_at, _M.c.updated_at)


def meter_of(r: Sequence[Any]) -> Meter:
    """A meter from a row of METER_COLS (Core selects on read paths)."""
    return Meter(id=r[0], slug=r[1], description=r[2], event_type=r[3], aggregation=r[4], value_property=r[5],
                 group_by=dict(r[6] or {}), window_size=r[7], created_at=r[8], updated_at=r[9])


async def get_meter(session: AsyncSession, id_or_slug: str) -> Meter | None:
    """A live (not deleted) meter by id or slug."""
    stmt = select(MeterRow).where(or_(col(MeterRow.slug) == id_or_slug, col(MeterRow.id) == id_or_slug),
                                  col(MeterRow.deleted_at).is_(None))
    row = (await session.exec(stmt)).first()
    return to_meter(row) if row else None


async def list_meters(session: AsyncSession) -> list[Meter]:
    stmt = select(MeterRow).where(col(MeterRow.deleted_at).is_(None)).order_by(col(MeterRow.slug))
    return [to_meter(r) for r in (await session.exec(stmt)).all()]


async def meters_for_types(session: AsyncSession, event_types: Sequence[str]) -> list[Meter]:
    """Live meters fed by any of `event_types`, ordered by id."""
    stmt = select(MeterRow).where(col(MeterRow.event_type).in_(list(event_types)),
                                  col(MeterRow.deleted_at).is_(None)).order_by(col(MeterRow.id))
    return [to_meter(r) for r in (await session.exec(stmt)).all()]


async def insert_meter(session: AsyncSession, meter: Meter) -> Meter:
    row = MeterRow(id=meter.id, slug=meter.slug, description=meter.description, event_type=meter.event_type,
                   aggregation=meter.aggregation, value_property=meter.value_property, group_by=meter.group_by,
                   window_size=meter.window_size, created_at=meter.created_at, updated_at=meter.updated_at)
    async def conflict() -> Conflict:
        existing = await get_meter(session, meter.slug)
        return Conflict(f"meter slug {meter.slug!r} is in use",
                           conflicting_entity_id=existing.id if existing else None)

    await insert_unique(session, row, "uq_meters_slug_live", conflict)
    return to_meter(row)


async def live_feature_using(session: AsyncSession, slug: str) -> str | None:
    """The id of a non-archived feature built on the meter `slug`, if any."""
    stmt = select(FeatureRow.id).where(col(FeatureRow.meter_slug) == slug,
                                       col(FeatureRow.archived_at).is_(None)).order_by(col(FeatureRow.id))
    return (await session.exec(stmt)).first()


async def soft_delete_meter(session: AsyncSession, meter_id: str, at: datetime) -> bool:
    row = await session.get(MeterRow, meter_id, with_for_update=True)
    if row is None or row.deleted_at is not None:
        return False
    row.deleted_at = at
    row.updated_at = at
    await session.flush()
    return True
