"""Bulk event ingest and the per-minute aggregates it feeds, in the caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import Table, func
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from creditgate.adapters.sql.dialect import dialect_name, upsert
from creditgate.adapters.sql.tables import EventRow, MeterMinuteRow, MeterMinuteValueRow
from creditgate.adapters.sql.types import exact_add
from creditgate.services.records import Event

EVENTS: Table = EventRow.__table__  # type: ignore[attr-defined]
MINUTES: Table = MeterMinuteRow.__table__  # type: ignore[attr-defined]
VALUES: Table = MeterMinuteValueRow.__table__  # type: ignore[attr-defined]
MINUTE_KEY = ["meter_id", "subject", "group_key", "minute"]


@dataclass(slots=True)
class NewEvent:
    event_id: str
    source: str
    type: str
    subject: str
    time: datetime
    data: dict[str, Any]
    ingested_at: datetime
    validation_error: str | None
    data_json: str  # `data` as JSON text


@dataclass(slots=True)
class MinuteDelta:
    meter_id: str
    subject: str
    group_key: str
    minute: datetime
    groups: dict[str, str | None]
    sum: Decimal
    count: int
    min: float | None
    max: float | None

    def key(self) -> tuple[str, str, str, datetime]:
        return (self.meter_id, self.subject, self.group_key, self.minute)


@dataclass(slots=True)
class MinuteValue:
    meter_id: str
    subject: str
    group_key: str
    minute: datetime
    value: str
    groups: dict[str, str | None]

    def key(self) -> tuple[str, str, str, datetime, str]:
        return (self.meter_id, self.subject, self.group_key, self.minute, self.value)


async def insert_events(session: AsyncSession, events: Sequence[NewEvent]) -> set[tuple[str, str]]:
    """Stores the events not stored yet; returns the (source, id) of those it stored.

    Rows go in (source, id) order, so concurrent batches lock index entries in one order.
    """
    if not events:
        return set()
    if dialect_name(session) == "postgresql":
        return await _pg_insert_events(session, events)
    ordered = sorted(events, key=lambda e: (e.source, e.event_id))
    stmt = upsert(session, EVENTS).on_conflict_do_nothing(index_elements=["source", "event_id"]) \
        .returning(EVENTS.c.source, EVENTS.c.event_id)
    params = [{"event_id": e.event_id, "source": e.source, "type": e.type, "subject": e.subject,
               "time": e.time, "data": e.data, "ingested_at": e.ingested_at,
               "validation_error": e.validation_error} for e in ordered]
    result = await (await session.connection()).execute(stmt, params)
    return {(r[0], r[1]) for r in result.all()}


def _least(session: AsyncSession, a: Any, b: Any, pick: str) -> ColumnElement[Any]:
    if dialect_name(session) == "postgresql":
        return func.least(a, b) if pick == "min" else func.greatest(a, b)
    fn = func.min if pick == "min" else func.max
    return fn(func.coalesce(a, b), func.coalesce(b, a))


async def add_minutes(session: AsyncSession, deltas: Sequence[MinuteDelta], values: Sequence[MinuteValue]) -> None:
    """Adds per-minute deltas to the aggregates, rows in primary-key order (deadlock-free)."""
    if dialect_name(session) == "postgresql":
        await _pg_add_minutes(session, deltas, values)
        return
    if deltas:
        stmt = upsert(session, MINUTES)
        stmt = stmt.on_conflict_do_update(index_elements=MINUTE_KEY, set_={
            "sum": exact_add(MINUTES.c.sum, stmt.excluded.sum),
            "count": MINUTES.c.count + stmt.excluded.count,
            "min": _least(session, MINUTES.c.min, stmt.excluded.min, "min"),
            "max": _least(session, MINUTES.c.max, stmt.excluded.max, "max"),
        })
        rows = [{"meter_id": d.meter_id, "subject": d.subject, "group_key": d.group_key, "minute": d.minute,
                 "groups": d.groups, "sum": d.sum, "count": d.count, "min": d.min, "max": d.max}
                for d in sorted(deltas, key=MinuteDelta.key)]
        await (await session.connection()).execute(stmt, rows)
    if values:
        vstmt = upsert(session, VALUES).on_conflict_do_nothing()
        vrows = [{"meter_id": v.meter_id, "subject": v.subject, "group_key": v.group_key, "minute": v.minute,
                  "value": v.value, "groups": v.groups}
                 for v in sorted(values, key=MinuteValue.key)]
        await (await session.connection()).execute(vstmt, vrows)


# PostgreSQL: the rows are COPied into temporary tables (emptied at commit), then moved with one
# INSERT ... SELECT per table in primary-key order (so concurrent batches lock rows in one order).
# `groups` is the group key itself (canonical JSON), so it is not sent twice.
_PG_TEMP = """
CREATE TEMP TABLE IF NOT EXISTS ingest_events (event_id text, source text, type text, subject text,
  time timestamptz, data jsonb, ingested_at timestamptz, validation_error text) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS ingest_minutes (meter_id text, subject text, group_key text, minute timestamptz,
  sum numeric, count bigint, min float8, max float8) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS ingest_values (meter_id text, subject text, group_key text, minute timestamptz,
  value text) ON COMMIT DELETE ROWS"""

_PG_EVENTS = """
INSERT INTO events (event_id, source, type, subject, time, data, ingested_at, validation_error)
SELECT * FROM ingest_events ORDER BY source, event_id
ON CONFLICT (source, event_id) DO NOTHING
RETURNING source, event_id"""

_PG_MINUTES = """
INSERT INTO meter_minutes AS m (meter_id, subject, group_key, minute, groups, sum, count, min, max)
SELECT meter_id, subject, group_key, minute, group_key::jsonb AS groups, sum, count, min, max
FROM ingest_minutes ORDER BY meter_id, subject, group_key, minute
ON CONFLICT (meter_id, subject, group_key, minute) DO UPDATE SET
  sum = m.sum + excluded.sum, count = m.count + excluded.count,
  min = least(m.min, excluded.min), max = greatest(m.max, excluded.max)"""

_PG_VALUES = """
INSERT INTO meter_minute_values (meter_id, subject, group_key, minute, value, groups)
SELECT meter_id, subject, group_key, minute, value, group_key::jsonb AS groups
FROM ingest_values ORDER BY meter_id, subject, group_key, minute, value
ON CONFLICT DO NOTHING"""


async def _driver(session: AsyncSession, create: bool = True) -> Any:
    """The psycopg connection under the session, in the session's transaction."""
    raw = await (await session.connection()).get_raw_connection()
    conn: Any = raw.driver_connection
    if create:
        await conn.execute(_PG_TEMP)  # cheap once they exist; safe if an earlier transaction rolled back
    return conn


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


_NULL = "\\N"
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _field(value: Any) -> str:
    """One value in COPY text format."""
    if value is None:
        return _NULL
    if isinstance(value, str):
        return value.translate(_ESCAPES)
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value) if not isinstance(value, float) else repr(value)


def _copy_text(rows: Sequence[tuple[Any, ...]]) -> str:
    return "".join("\t".join(map(_field, row)) + "\n" for row in rows)


async def _copy(cur: Any, table: str, text: str) -> None:
    """COPY in text format, written in one go (faster than psycopg's per-row writer)."""
    async with cur.copy(f"COPY {table} FROM STDIN") as copy:
        await copy.write(text.encode())


def _event_lines(events: Sequence[NewEvent]) -> str:
    """The events in COPY text format (the hot loop of an ingest, so written out by hand)."""
    esc = _ESCAPES
    lines = []
    for e in events:
        error = _NULL if e.validation_error is None else e.validation_error.translate(esc)
        lines.append("\t".join((e.event_id.translate(esc), e.source.translate(esc), e.type.translate(esc),
                                e.subject.translate(esc), e.time.isoformat(), e.data_json.translate(esc),
                                e.ingested_at.isoformat(), error)))
    lines.append("")
    return "\n".join(lines)


async def _pg_insert_events(session: AsyncSession, events: Sequence[NewEvent]) -> set[tuple[str, str]]:
    async with (await _driver(session)).cursor() as cur:
        await _copy(cur, "ingest_events", _event_lines(events))
        await cur.execute(_PG_EVENTS)
        return {(r[0], r[1]) for r in await cur.fetchall()}


async def _pg_add_minutes(session: AsyncSession, deltas: Sequence[MinuteDelta],
                          values: Sequence[MinuteValue]) -> None:
    async with (await _driver(session, create=False)).cursor() as cur:
        if deltas:
            await _copy(cur, "ingest_minutes", _copy_text([(d.meter_id, d.subject, d.group_key, d.minute,
                                                            d.sum, d.count, d.min, d.max) for d in deltas]))
            await cur.execute(_PG_MINUTES)
        if values:
            await _copy(cur, "ingest_values", _copy_text([(v.meter_id, v.subject, v.group_key, v.minute, v.value)
                                                          for v in values]))
            await cur.execute(_PG_VALUES)


def to_event(row: EventRow) -> Event:
    return Event(id=row.event_id, source=row.source, type=row.type, subject=row.subject, time=row.time,
                 data=dict(row.data or {}), ingested_at=row.ingested_at, validation_error=row.validation_error)


async def list_events(session: AsyncSession, *, limit: int, from_: datetime | None, to: datetime | None,
                      subject: str | None, event_id: str | None, ingested_from: datetime | None,
                      ingested_to: datetime | None, has_error: bool | None) -> list[Event]:
    stmt = select(EventRow)
    if from_ is not None:
        stmt = stmt.where(col(EventRow.time) >= from_)
    if to is not None:
        stmt = stmt.where(col(EventRow.time) < to)
    if subject is not None:
        stmt = stmt.where(col(EventRow.subject) == subject)
    if event_id is not None:
        stmt = stmt.where(col(EventRow.event_id) == event_id)
    if ingested_from is not None:
        stmt = stmt.where(col(EventRow.ingested_at) >= ingested_from)
    if ingested_to is not None:
        stmt = stmt.where(col(EventRow.ingested_at) < ingested_to)
    if has_error is not None:
        err = col(EventRow.validation_error)
        stmt = stmt.where(err.is_not(None) if has_error else err.is_(None))
    stmt = stmt.order_by(col(EventRow.time).desc(), col(EventRow.seq).desc()).limit(limit)
    return [to_event(r) for r in (await session.exec(stmt)).all()]
