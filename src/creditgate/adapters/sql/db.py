"""Engines, sessions and migrations for PostgreSQL (psycopg) and SQLite (aiosqlite)."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeAlias

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event, text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from creditgate.adapters.sql.types import register_sqlite_functions
from creditgate.config import async_url

MIGRATIONS = pathlib.Path(__file__).parent / "migrations"
Session: TypeAlias = AsyncSession  # what services hold between repository calls; they never build statements


def sync_url(url: str) -> str:
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url.replace("+aiosqlite", "")


def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    raw = getattr(dbapi_conn, "driver_connection", None)
    sqlite_conn = getattr(raw, "_conn", None) or dbapi_conn
    register_sqlite_functions(sqlite_conn)
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def make_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    url = async_url(url)
    if url.startswith("sqlite"):
        engine = create_async_engine(url)
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
        return engine
    # jit off: PostgreSQL's JIT compiles a batched usage read (adapters/sql/usage.py, one UNION ALL part per
    # range) once its estimated cost passes jit_above_cost: a cold checkAccess of 100 metered pairs took 14.7 s
    # with it and 0.5 s without (the compile, not the plan or the rows, and ~1 GB in the backend)
    return create_async_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=False,
                               connect_args={"options": "-c jit=off"})


class Database:
    """One engine per process; the request/job boundary owns the transaction."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.dialect = self.engine.dialect.name
        self.sessions = async_sessionmaker(self.engine, class_=AsyncSession, expire_on_commit=False,
                                           autoflush=False)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction: committed on success, rolled back on error."""
        async with self.sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session:
            yield session

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    def pool_usage(self) -> tuple[int, int]:
        """(connections checked out, tasks waiting for one), for the metrics; (0, 0) where unknown."""
        pool = self.engine.pool
        checkedout = getattr(pool, "checkedout", None)
        in_use = int(checkedout()) if callable(checkedout) else 0
        # The async queue pool waits on an asyncio.Queue, created on first use.
        queue = getattr(getattr(pool, "_pool", None), "__dict__", {}).get("_queue")
        waiters = getattr(queue, "_getters", ())
        return in_use, sum(1 for w in waiters if not w.done())

    async def close(self) -> None:
        await self.engine.dispose()


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    return cfg


def migrate(url: str) -> None:
    """Bring the database at `url` to the newest schema (synchronous, at start-up)."""
    command.upgrade(alembic_config(url), "head")


def sync_engine(url: str) -> Any:
    engine = create_engine(sync_url(url))
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_on_connect)
    return engine
