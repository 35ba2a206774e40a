"""Bulk event ingest and the per-minute aggregates it feeds, in the caller's transaction."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import Table, text
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from creditgate.adapters.sql import partitions
from creditgate.adapters.sql.dialect import dialect_name
from creditgate.adapters.sql.tables import EventRow, MeterMinuteRow, MeterMinuteValueRow
from creditgate.adapters.sql.types import dec_text
from creditgate.records import Event

EVENTS: Table = EventRow.__table__  # type: ignore[attr-defined]
MINUTES: Table = MeterMinuteRow.__table__  # type: ignore[attr-defined]
VALUES: Table = MeterMinuteValueRow.__table__  # type: ignore[attr-defined]
MINUTE_KEY = ["meter_id", "subject", "group_key", "minute"]


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


@dataclass(slots=True)
class NewEvents:
    """The distinct events of a checked batch (first occurrence of each (source, id)), as columns;
    `errors` (each event's validation error, §1.7) is known once the meters are fed, after the events are
    sent: they are stored with None and `set_errors` records the others."""

    ids: list[str]
    sources: list[str]
    types: list[str]
    subjects: list[str]
    times: list[datetime]
    datas: list[dict[str, Any]]
    errors: list[str | None]
    ingested_at: datetime

    def __len__(self) -> int:
        return len(self.ids)


async def start_storing(session: AsyncSession, events: NewEvents) -> asyncio.Future[set[tuple[str, str]] | None]:
    """Stores the events not stored yet, in the session's transaction. On PostgreSQL the statement is
    sent and this returns at once, so the caller can compute the aggregates while the database works;
    await the result before using the session again. The result is None when every event was new, else
    the (source, id) of those stored by this call.

    PostgreSQL: rows go in (source, id) order, so concurrent batches lock index entries in one order.
    """
    done: asyncio.Future[set[tuple[str, str]] | None] = asyncio.get_running_loop().create_future()
    if not events.ids:
        done.set_result(None)
        return done
    if dialect_name(session) != "postgresql":
        done.set_result(await _sqlite_insert_events(session, events))
        return done
    await partitions.ensure_months(session, {partitions.month_of(t) for t in events.times}, events.ingested_at)
    sending = asyncio.ensure_future(_pg_store_events(await _driver(session), events))
    await asyncio.sleep(0)  # the task sends the statement, then waits for the answer
    return sending


async def set_errors(session: AsyncSession, events: NewEvents, errors: dict[int, str]) -> None:
    """Records the validation errors (§1.7) of events this transaction stored, by position in `events`."""
    conn = await session.connection()
    if dialect_name(session) == "postgresql":  # through ix_events_subject_time: events has no (source, id) index
        rows = [(events.ids[j], events.sources[j], events.subjects[j], events.times[j], e) for j, e in errors.items()]
        await conn.execute(_PG_SET_ERRORS, {"rows": _json(rows)})
        return
    await conn.exec_driver_sql("UPDATE events SET validation_error = ? WHERE source = ? AND event_id = ?",
                               [(e, events.sources[j], events.ids[j]) for j, e in errors.items()])


def data_json(data: dict[str, Any]) -> str:
    """Event data as stored: compact JSON (integers beyond 64 bits through the standard library)."""
    try:
        return orjson.dumps(data).decode()
    except TypeError:
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _sqlite_time(t: datetime) -> str:
    """A UTC instant as UTCDateTime stores it on SQLite (SQLAlchemy's text format, naive UTC)."""
    if t.tzinfo is UTC:  # the usual case (times are normalised to UTC when parsed): no conversion
        return t.isoformat(" ", "microseconds")[:26]
    return t.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


_SQLITE_VARIABLES = 32766  # bound parameters per statement (SQLite's default limit since 3.32)


def _chunks(rows: int, width: int) -> range:
    return range(0, rows, _SQLITE_VARIABLES // width)


async def _sqlite_insert_events(session: AsyncSession, events: NewEvents) -> set[tuple[str, str]] | None:
    """One multi-row INSERT per chunk (parameters bound as they are, no per-row statement work);
    None when every event was new, else the (source, id) of those stored."""
    conn = await session.connection()
    stored: set[tuple[str, str]] = set()
    ingested = _sqlite_time(events.ingested_at)
    times = [_sqlite_time(t) for t in events.times]
    datas: list[str] = []
    try:
        datas = [orjson.dumps(d).decode() for d in events.datas]
    except TypeError:  # integers beyond 64 bits somewhere
        datas = [data_json(d) for d in events.datas]
    n = len(events.ids)
    columns = (events.ids, events.sources, events.types, events.subjects, times, datas, [ingested] * n, events.errors)
    for at in _chunks(n, 8):
        params: list[Any] = []
        for row in zip(*(c[at:at + _SQLITE_VARIABLES // 8] for c in columns), strict=True):
            params += row
        rows = len(params) // 8
        sql = ("INSERT INTO events (event_id, source, type, subject, time, data, ingested_at, validation_error) "
               "VALUES " + ",".join(["(?,?,?,?,?,?,?,?)"] * rows)
               + " ON CONFLICT (source, event_id) DO NOTHING RETURNING source, event_id")
        result = await conn.exec_driver_sql(sql, tuple(params))
        returned: list[Any] = list(result.all())
        stored.update((r[0], r[1]) for r in returned)
    return None if len(stored) == n else stored


async def add_minutes(session: AsyncSession, deltas: Sequence[MinuteDelta], values: Sequence[MinuteValue]) -> None:
    """Adds per-minute deltas to the aggregates, rows in primary-key order (deadlock-free)."""
    if not deltas and not values:
        return
    if dialect_name(session) == "postgresql":
        await _pg_add_minutes(session, deltas, values)
        return
    conn = await session.connection()
    # SQLite: multi-row upserts with the parameters as stored (decimals as text, summed exactly by
    # dadd, docs/semantics.md §1.9; times as UTCDateTime's text); `groups` is the group key itself
    rows = [(d.meter_id, d.subject, d.group_key, _sqlite_time(d.minute), d.group_key, dec_text(d.sum), d.count,
             d.min, d.max) for d in sorted(deltas, key=MinuteDelta.key)]
    for at in _chunks(len(rows), 9):
        chunk = rows[at:at + _SQLITE_VARIABLES // 9]
        await conn.exec_driver_sql(_SQLITE_MINUTES.format(",".join(["(?,?,?,?,?,?,?,?,?)"] * len(chunk))),
                                   tuple(p for row in chunk for p in row))
    vrows = [(v.meter_id, v.subject, v.group_key, _sqlite_time(v.minute), v.value, v.group_key)
             for v in sorted(values, key=MinuteValue.key)]
    for at in _chunks(len(vrows), 6):
        vchunk = vrows[at:at + _SQLITE_VARIABLES // 6]
        await conn.exec_driver_sql(_SQLITE_VALUES.format(",".join(["(?,?,?,?,?,?)"] * len(vchunk))),
                                   tuple(p for row in vchunk for p in row))


_SQLITE_MINUTES = """
  INSERT INTO meter_minutes AS m (meter_id, subject, group_key, minute, groups, sum, count, min, max) VALUES {}
  ON CONFLICT (meter_id, subject, group_key, minute) DO UPDATE SET
    sum = dadd(m.sum, excluded.sum), count = m.count + excluded.count,
    min = min(coalesce(m.min, excluded.min), coalesce(excluded.min, m.min)),
    max = max(coalesce(m.max, excluded.max), coalesce(excluded.max, m.max))"""

_SQLITE_VALUES = """
  INSERT INTO meter_minute_values (meter_id, subject, group_key, minute, value, groups) VALUES {}
  ON CONFLICT DO NOTHING"""


# PostgreSQL: one statement claims the batch's (source, id) keys in `event_keys` (the permanent dedupe
# authority, kept when retention drops raw events; docs/semantics.md §1.3) in key order, so concurrent
# batches lock index entries in one order, and inserts the events whose key it claimed into the month
# partitions of `events` (migration 0007). The aggregates follow in statements of their own, upserted in
# one key order (the caller computes them while the first statement runs). `groups` is the group key itself.
_PG_ROWS = "SELECT r FROM jsonb_array_elements(%(events)s::jsonb) AS r"
_PG_CLAIM_KEYS = """
  INSERT INTO event_keys (source, event_id) SELECT r->>1, r->>0 FROM rows ORDER BY r->>1, r->>0
  ON CONFLICT DO NOTHING RETURNING source, event_id"""
_PG_INSERT_EVENTS = """
  INSERT INTO events (event_id, source, type, subject, time, data, ingested_at, validation_error)
  SELECT r->>0, r->>1, r->>2, r->>3, (r->>4)::timestamptz, r->5, (r->>6)::timestamptz, r->>7
  FROM rows JOIN keys AS k ON k.source = r->>1 AND k.event_id = r->>0
  RETURNING source, event_id"""

_PG_UPSERT_MINUTES = """
  INSERT INTO meter_minutes AS m (meter_id, subject, group_key, minute, groups, sum, count, min, max)
  SELECT r->>0, r->>1, r->>2, (r->>3)::timestamptz, (r->>2)::jsonb, (r->>4)::numeric, (r->>5)::bigint,
         (r->>6)::float8, (r->>7)::float8
  FROM jsonb_array_elements(%(minutes)s::jsonb) AS r
  ORDER BY r->>0, r->>1, r->>2, (r->>3)::timestamptz
  ON CONFLICT (meter_id, subject, group_key, minute) DO UPDATE SET
    sum = m.sum + excluded.sum, count = m.count + excluded.count,
    min = least(m.min, excluded.min), max = greatest(m.max, excluded.max)"""

_PG_INSERT_VALUES = """
  INSERT INTO meter_minute_values (meter_id, subject, group_key, minute, value, groups)
  SELECT r->>0, r->>1, r->>2, (r->>3)::timestamptz, r->>4, (r->>2)::jsonb
  FROM jsonb_array_elements(%(values)s::jsonb) AS r
  ORDER BY r->>0, r->>1, r->>2, (r->>3)::timestamptz, r->>4
  ON CONFLICT DO NOTHING"""

_PG_STORE = f"""
WITH rows AS MATERIALIZED ({_PG_ROWS}),
keys AS ({_PG_CLAIM_KEYS}),
ins AS ({_PG_INSERT_EVENTS}),
n AS (SELECT count(*) AS stored FROM ins)
SELECT stored, CASE WHEN stored <> %(n)s THEN (SELECT array_agg(source) FROM ins) END,
  CASE WHEN stored <> %(n)s THEN (SELECT array_agg(event_id) FROM ins) END FROM n"""


_PG_SET_ERRORS = text("""
  UPDATE events AS e SET validation_error = r->>4 FROM jsonb_array_elements(CAST(:rows AS jsonb)) AS r
  WHERE e.subject = r->>2 AND e.time = CAST(r->>3 AS timestamptz) AND e.source = r->>1 AND e.event_id = r->>0""")


async def _driver(session: AsyncSession) -> Any:
    """The psycopg connection under the session, in the session's transaction."""
    raw = await (await session.connection()).get_raw_connection()
    return raw.driver_connection


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _event_rows(events: NewEvents) -> str:
    at = events.ingested_at
    try:
        return _json([(i, src, t, sub, time, d, at, err) for i, src, t, sub, time, d, err
                      in zip(events.ids, events.sources, events.types, events.subjects, events.times, events.datas,
                             events.errors, strict=True)])
    except TypeError:  # integers beyond 64 bits somewhere
        return _json([(i, src, t, sub, time, orjson.Fragment(data_json(d)), at, err) for i, src, t, sub, time, d, err
                      in zip(events.ids, events.sources, events.types, events.subjects, events.times, events.datas,
                             events.errors, strict=True)])


def _minute_rows(deltas: Sequence[MinuteDelta]) -> str:
    return _json([(d.meter_id, d.subject, d.group_key, d.minute, str(d.sum), d.count, d.min, d.max) for d in deltas])


def _value_rows(values: Sequence[MinuteValue]) -> str:
    return _json([(v.meter_id, v.subject, v.group_key, v.minute, v.value) for v in values])


async def _pg_store_events(conn: Any, events: NewEvents) -> set[tuple[str, str]] | None:
    async with conn.cursor() as cur:
        await cur.execute(_PG_STORE, {"n": len(events), "events": _event_rows(events)})
        stored, sources, ids = await cur.fetchone()
        if stored == len(events):
            return None
        return set(zip(sources or (), ids or (), strict=True))


async def _pg_add_minutes(session: AsyncSession, deltas: Sequence[MinuteDelta],
                          values: Sequence[MinuteValue]) -> None:
    conn = await _driver(session)
    async with conn.cursor() as cur:
        if deltas:
            await cur.execute(_PG_UPSERT_MINUTES, {"minutes": _minute_rows(deltas)})
        if values:
            await cur.execute(_PG_INSERT_VALUES, {"values": _value_rows(values)})


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
