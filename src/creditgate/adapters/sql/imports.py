"""Storage for `creditgate import` (services/imports.py): what only the import needs - which ids are stored,
subjects with their ids, imported minute aggregates. Features, entitlements, grants and resets are written
by their own modules' inserts, which store the records as given (archived, deleted, voided, past times)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import Table, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from creditgate.adapters.sql.dialect import dialect_name, upsert
from creditgate.adapters.sql.tables import EntitlementRow, FeatureRow, MeterMinuteRow, MeterRow, SubjectRow
from creditgate.adapters.sql.types import exact_add
from creditgate.records import Subject

MINUTES: Table = MeterMinuteRow.__table__  # type: ignore[attr-defined]
SUBJECTS: Table = SubjectRow.__table__  # type: ignore[attr-defined]
MINUTE_KEY = ["meter_id", "subject", "group_key", "minute"]
CHUNK = 2000


@dataclass(frozen=True, slots=True)
class ImportedMinute:
    """One minute of one meter, subject and group, as the source's meter query gave it."""

    meter_id: str
    subject: str
    group_key: str  # canonical JSON of `groups` (as ingest writes it)
    groups: dict[str, str | None]
    minute: datetime
    sum: Decimal
    count: int
    min: float | None
    max: float | None
    imported: Decimal  # the source's value


async def existing_ids(session: AsyncSession, kind: str, ids: Sequence[str]) -> set[str]:
    """Which of `ids` are stored already (deleted and archived rows included); kind: meter | feature |
    entitlement."""
    table: Any = {"meter": MeterRow, "feature": FeatureRow, "entitlement": EntitlementRow}[kind].__table__  # type: ignore[attr-defined]
    out: set[str] = set()
    unique = sorted(set(ids))
    for i in range(0, len(unique), CHUNK):
        stmt = select(table.c.id).where(table.c.id.in_(unique[i:i + CHUNK]))
        out.update(r[0] for r in (await (await session.connection()).execute(stmt)).all())
    return out


async def insert_subject(session: AsyncSession, subject: Subject) -> bool:
    """The subject with its id, unless its key is stored already (then nothing changes). True when written."""
    stmt = upsert(session, SUBJECTS).values(id=subject.id, key=subject.key, display_name=subject.display_name,
                                            metadata=subject.metadata, created_at=subject.created_at,
                                            updated_at=subject.updated_at)
    result = await (await session.connection()).execute(stmt.on_conflict_do_nothing().returning(SUBJECTS.c.id))
    return result.first() is not None


async def has_imported_minutes(session: AsyncSession, meter_id: str, subject: str) -> bool:
    stmt = select(func.count()).select_from(MINUTES).where(
        MINUTES.c.meter_id == meter_id, MINUTES.c.subject == subject, MINUTES.c.imported.is_not(None))
    found = (await (await session.connection()).execute(stmt.limit(1))).scalar()
    return bool(found)


async def subjects_with_imported_minutes(session: AsyncSession, meter_id: str, subjects: Sequence[str]) -> set[str]:
    """Which of these subjects have imported minutes of the meter (has_imported_minutes for many: one index
    probe per subject, CHUNK subjects per statement)."""
    out: set[str] = set()
    unique = sorted(set(subjects))
    conn = await session.connection()
    for i in range(0, len(unique), CHUNK):
        stmt = select(MINUTES.c.subject).distinct().where(
            MINUTES.c.meter_id == meter_id, MINUTES.c.subject.in_(unique[i:i + CHUNK]), MINUTES.c.imported.is_not(None))
        out.update(r[0] for r in (await conn.execute(stmt)).all())
    return out


async def add_imported_minutes(session: AsyncSession, rows: Sequence[ImportedMinute]) -> None:
    """Adds imported minutes to the aggregates (to what events stored there already, as ingest adds),
    in primary-key order; `imported` keeps the source's value."""
    if not rows:
        return
    pg = dialect_name(session) == "postgresql"
    if pg:
        await _pg_add(session, rows)
        return
    stmt = upsert(session, MINUTES)
    least = func.least if pg else func.min
    greatest = func.greatest if pg else func.max
    ex = stmt.excluded
    stmt = stmt.on_conflict_do_update(index_elements=MINUTE_KEY, set_={
        "sum": exact_add(MINUTES.c.sum, ex.sum),
        "count": MINUTES.c.count + ex.count,
        "min": least(func.coalesce(MINUTES.c.min, ex.min), func.coalesce(ex.min, MINUTES.c.min)),
        "max": greatest(func.coalesce(MINUTES.c.max, ex.max), func.coalesce(ex.max, MINUTES.c.max)),
        "imported": exact_add(func.coalesce(MINUTES.c.imported, 0), ex.imported),
    })
    ordered = sorted(rows, key=lambda r: (r.meter_id, r.subject, r.group_key, r.minute))
    conn = await session.connection()
    for i in range(0, len(ordered), CHUNK):
        await conn.execute(stmt, [
            {"meter_id": r.meter_id, "subject": r.subject, "group_key": r.group_key, "minute": r.minute,
             "groups": r.groups, "sum": r.sum, "count": r.count, "min": r.min, "max": r.max,
             "imported": r.imported} for r in ordered[i:i + CHUNK]])


# PostgreSQL: all rows as one JSON parameter, one statement (as ingest adds its aggregates, adapters/sql/events.py).
_PG_ADD = """
  INSERT INTO meter_minutes AS m (meter_id, subject, group_key, minute, groups, sum, count, min, max, imported)
  SELECT r->>0, r->>1, r->>2, (r->>3)::timestamptz, (r->>2)::jsonb, (r->>4)::numeric, (r->>5)::bigint,
         (r->>6)::float8, (r->>7)::float8, (r->>8)::numeric
  FROM jsonb_array_elements(%(rows)s::jsonb) AS r
  ORDER BY r->>0, r->>1, r->>2, (r->>3)::timestamptz
  ON CONFLICT (meter_id, subject, group_key, minute) DO UPDATE SET
    sum = m.sum + excluded.sum, count = m.count + excluded.count,
    min = least(m.min, excluded.min), max = greatest(m.max, excluded.max),
    imported = coalesce(m.imported, 0) + excluded.imported"""


async def _pg_add(session: AsyncSession, rows: Sequence[ImportedMinute]) -> None:
    raw = await (await session.connection()).get_raw_connection()
    payload = orjson.dumps([(r.meter_id, r.subject, r.group_key, r.minute, str(r.sum), r.count, r.min, r.max,
                             str(r.imported)) for r in rows]).decode()
    async with raw.driver_connection.cursor() as cur:  # type: ignore[union-attr]
        await cur.execute(_PG_ADD, {"rows": payload})
