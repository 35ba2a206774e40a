"""Feature storage."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, bindparam, or_
from sqlalchemy import select as core_select
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from creditgate.adapters.sql.dialect import insert_unique
from creditgate.adapters.sql.meters import METER_COLS, meter_of
from creditgate.adapters.sql.tables import FeatureRow, MeterRow
from creditgate.domain.errors import Conflict
from creditgate.records import Feature, Meter

ORDER: dict[str, Any] = {"ID": FeatureRow.id, "KEY": FeatureRow.key, "CREATED_AT": FeatureRow.created_at,
         "UPDATED_AT": FeatureRow.updated_at}


def to_feature(row: FeatureRow) -> Feature:
    return Feature(id=row.id, key=row.key, name=row.name, metadata=dict(row.metadata_ or {}),
                   meter_slug=row.meter_slug, meter_group_by_filters=dict(row.meter_group_by_filters or {}),
                   archived_at=row.archived_at, created_at=row.created_at, updated_at=row.updated_at)


_F: Any = FeatureRow.__table__  # type: ignore[attr-defined]
_M: Any = MeterRow.__table__  # type: ignore[attr-defined]
FEATURE_COLS = (_F.c.id, _F.c.key, _F.c.name, _F.c.metadata, _F.c.meter_slug, _F.c.meter_group_by_filters,
                _F.c.archived_at, _F.c.created_at, _F.c.updated_at)
# features by id with their live meter (at most one: uq_meters_slug_live), one Core select
_WITH_METERS = (core_select(*FEATURE_COLS, *METER_COLS)
                .select_from(_F.outerjoin(_M, and_(_M.c.slug == _F.c.meter_slug, _M.c.deleted_at.is_(None))))
                .where(_F.c.id.in_(bindparam("ids", expanding=True))))


def feature_of(r: Sequence[Any]) -> Feature:
    """A feature from a row starting with FEATURE_COLS."""
    return Feature(id=r[0], key=r[1], name=r[2], metadata=dict(r[3] or {}), meter_slug=r[4],
                   meter_group_by_filters=dict(r[5] or {}), archived_at=r[6], created_at=r[7], updated_at=r[8])


async def features_with_meters(session: AsyncSession, ids: Sequence[str]) -> dict[str, tuple[Feature, Meter | None]]:
    """Features by id, each with the live meter its meter_slug names (None without one)."""
    if not ids:
        return {}
    conn = await session.connection()
    n = len(FEATURE_COLS)
    return {r[0]: (feature_of(r), meter_of(r[n:]) if r[n] is not None else None)
            for r in await conn.execute(_WITH_METERS, {"ids": sorted(set(ids))})}


def _live() -> SelectOfScalar[FeatureRow]:
    return select(FeatureRow).where(col(FeatureRow.archived_at).is_(None))


async def live_by_key(session: AsyncSession, key: str) -> Feature | None:
    row = (await session.exec(_live().where(col(FeatureRow.key) == key))).first()
    return to_feature(row) if row else None


async def live_by_keys(session: AsyncSession, keys: Sequence[str]) -> dict[str, Feature]:
    """The live features with these keys, by key."""
    if not keys:
        return {}
    rows = (await session.exec(_live().where(col(FeatureRow.key).in_(sorted(set(keys)))))).all()
    return {r.key: to_feature(r) for r in rows}


async def insert_feature(session: AsyncSession, feature: Feature) -> Feature:
    """Insert the feature as given (archived too: `creditgate import`); a live key in use is CONFLICT."""
    row = FeatureRow(id=feature.id, key=feature.key, name=feature.name, metadata_=feature.metadata,
                     meter_slug=feature.meter_slug, meter_group_by_filters=feature.meter_group_by_filters,
                     archived_at=feature.archived_at, created_at=feature.created_at, updated_at=feature.updated_at)
    async def conflict() -> Conflict:
        existing = await live_by_key(session, feature.key)
        return Conflict(f"feature key {feature.key!r} is in use",
                           conflicting_entity_id=existing.id if existing else None)

    await insert_unique(session, row, "uq_features_key_live", conflict)
    return to_feature(row)


async def get_feature(session: AsyncSession, id_or_key: str, *, include_archived_id: bool = False) -> Feature | None:
    """Lookup by id or key among live features; with `include_archived_id` an id also finds an archived one."""
    row = (await session.exec(_live().where(or_(col(FeatureRow.key) == id_or_key, col(FeatureRow.id) == id_or_key))
                                 .order_by((col(FeatureRow.key) == id_or_key).desc()))).first()
    if row is None and include_archived_id:
        row = await session.get(FeatureRow, id_or_key)
    return to_feature(row) if row else None


async def get_features_by_ids(session: AsyncSession, ids: list[str]) -> dict[str, Feature]:
    rows = (await session.exec(select(FeatureRow).where(col(FeatureRow.id).in_(ids)))).all()
    return {r.id: to_feature(r) for r in rows}


async def list_features(session: AsyncSession, include_archived: bool, limit: int, offset: int,
                        order_by: str, meter_slugs: Sequence[str] | None = None) -> list[Feature]:
    stmt = select(FeatureRow) if include_archived else _live()
    if meter_slugs is not None:
        stmt = stmt.where(col(FeatureRow.meter_slug).in_(sorted(set(meter_slugs))))
    stmt = stmt.order_by(ORDER[order_by], FeatureRow.id).limit(limit).offset(offset)
    return [to_feature(r) for r in (await session.exec(stmt)).all()]


async def archive_feature(session: AsyncSession, feature_id: str, at: object) -> Feature | None:
    row = await session.get(FeatureRow, feature_id, with_for_update=True)
    if row is None or row.archived_at is not None:
        return None
    row.archived_at = at  # type: ignore[assignment]
    row.updated_at = at  # type: ignore[assignment]
    await session.flush()
    return to_feature(row)
