"""Monthly partitions of raw events on PostgreSQL (migration 0007; docs/operations.md, "Partitions and
retention"). SQLite has none: every function here does nothing there.

A month's partition exists before the first event of that month is written: ingest asks
`ensure_months` first (it is made on a connection of its own, committed at once, so no write
transaction holds the parent's lock), and the maintenance pass makes the coming months ahead. A
process remembers the partitions it saw for as long as no retention can drop them (a month stays
until at least MIN_RETENTION after its end), so the usual batch asks the database nothing.
Retention drops whole months of raw events: dedupe keys (`event_keys`) and the usage aggregates stay,
so no answer changes (docs/semantics.md §1.3).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from contextlib import suppress
from datetime import UTC, date, datetime, time

import psycopg
from psycopg import errors
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from creditgate.adapters.sql.db import Database
from creditgate.adapters.sql.dialect import dialect_name
from creditgate.config import MIN_RETENTION

TABLES = ("events",)  # the partitioned tables (by month of a UTC instant)
RAW = "events"  # the one table retention drops from
LOCK_WAIT = "2s"  # a partition made aside waits this long for the parent's lock, then is made in the writer's own

log = logging.getLogger("creditgate")


# (database URL, partition name) -> until when it surely exists (its month's end + MIN_RETENTION)
_seen: dict[tuple[str, str], datetime] = {}


def month_of(t: datetime) -> date:
    if t.tzinfo is not UTC:  # (ingest's times are UTC already: no conversion per event)
        t = t.astimezone(UTC)
    return date(t.year, t.month, 1)


def next_month(m: date) -> date:
    return date(m.year + m.month // 12, m.month % 12 + 1, 1)


def partition_name(table: str, month: date) -> str:
    return f"{table}_{month:%Y_%m}"


def _create(table: str, month: date) -> str:
    return (f"CREATE TABLE IF NOT EXISTS {partition_name(table, month)} PARTITION OF {table} "
            f"FOR VALUES FROM ('{month:%Y-%m-%d} 00:00+00') TO ('{next_month(month):%Y-%m-%d} 00:00+00')")


def _named(months: Iterable[date]) -> dict[str, tuple[str, date]]:
    """Every partitioned table's partition for each month, by name."""
    return {partition_name(t, m): (t, m) for m in set(months) for t in TABLES}


async def _driver(session: AsyncSession) -> psycopg.AsyncConnection:
    raw = await (await session.connection()).get_raw_connection()
    return raw.driver_connection  # type: ignore[return-value]


async def _missing(conn: psycopg.AsyncConnection, names: list[str]) -> list[str]:
    cur = await conn.execute("SELECT n FROM unnest(%s::text[]) AS n WHERE to_regclass(n) IS NULL ORDER BY n",
                             (names,))
    return [r[0] for r in await cur.fetchall()]


def _conninfo(engine: AsyncEngine) -> str:
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


def _lasts_until(month: date) -> datetime:
    return datetime.combine(next_month(month), time(), UTC) + MIN_RETENTION


async def ensure_months(session: AsyncSession, months: Iterable[date], now: datetime) -> None:
    """Every partitioned table has a partition for each of `months` before the caller writes into them."""
    if dialect_name(session) != "postgresql":
        return
    engine = session.bind
    assert isinstance(engine, AsyncEngine)
    url = str(engine.url)
    wanted = {n: tm for n, tm in _named(months).items() if _seen.get((url, n), now) <= now}
    if not wanted:
        return
    conn = await _driver(session)
    missing = await _missing(conn, sorted(wanted))
    for name, (_, month) in wanted.items():
        if name not in missing:
            _seen[(url, name)] = _lasts_until(month)
    if not missing:
        return
    try:
        async with await psycopg.AsyncConnection.connect(_conninfo(engine), autocommit=True) as aside:
            await aside.execute(f"SET lock_timeout = '{LOCK_WAIT}'")
            await _create_all(aside, [wanted[n] for n in missing])
    except errors.LockNotAvailable:
        # The caller's transaction already writes into these tables (and so holds what the parent's lock
        # waits for): make them in it (they commit with it).
        async with conn.cursor() as cur:
            for table, month in (wanted[n] for n in missing):
                await cur.execute(_create(table, month))


async def _create_all(conn: psycopg.AsyncConnection, parts: list[tuple[str, date]]) -> None:
    for table, month in parts:
        with suppress(errors.DuplicateTable, errors.UniqueViolation):  # another writer made it at the same time
            await conn.execute(_create(table, month))
    log.info("created partitions: %s", ", ".join(partition_name(t, m) for t, m in parts))


async def create_ahead(db: Database, now: datetime, months: int = 3) -> list[str]:
    """Makes the partitions of this month and the next `months` months; returns the names made."""
    engine = db.engine
    if engine.dialect.name != "postgresql":
        return []
    ahead = [month_of(now)]
    for _ in range(months):
        ahead.append(next_month(ahead[-1]))
    wanted = _named(ahead)
    async with await psycopg.AsyncConnection.connect(_conninfo(engine), autocommit=True) as conn:
        missing = await _missing(conn, sorted(wanted))
        if missing:
            await _create_all(conn, [wanted[n] for n in missing])
    return missing


async def drop_raw_before(db: Database, cutoff: datetime) -> list[str]:
    """Drops the partitions of raw events that end at or before `cutoff`; returns their names."""
    engine = db.engine
    if engine.dialect.name != "postgresql":
        return []
    async with await psycopg.AsyncConnection.connect(_conninfo(engine), autocommit=True) as conn:
        cur = await conn.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                                 "WHERE i.inhparent = to_regclass(%s) ORDER BY 1", (RAW,))
        dropped = []
        for (name,) in await cur.fetchall():
            month = _month_in(name)
            if month is None or datetime.combine(next_month(month), time(), UTC) > cutoff:
                continue
            try:
                async with conn.transaction():
                    await conn.execute(f"ALTER TABLE {RAW} DETACH PARTITION {name}")
                    await conn.execute(f"DROP TABLE {name}")
            except errors.UndefinedTable:
                continue  # another process dropped it first
            dropped.append(name)
            _seen.pop((str(engine.url), name), None)
    if dropped:
        log.info("retention dropped raw event partitions: %s", ", ".join(dropped))
    return dropped


def _month_in(name: str) -> date | None:
    """The month of a partition named as `partition_name` makes them; None for any other name."""
    year, _, month = name.removeprefix(f"{RAW}_").partition("_")
    if not (year.isdigit() and month.isdigit() and len(year) == 4 and len(month) == 2):
        return None
    return date(int(year), int(month), 1)

