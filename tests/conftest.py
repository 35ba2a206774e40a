"""Fixtures: every test runs on SQLite + in-process cache and on PostgreSQL + Redis.

Each run creates its own PostgreSQL database (dropped at the end) and its own Redis
key prefix (deleted at the end). Under CREDITGATE_REQUIRE_SERVICES=1 an unreachable
PostgreSQL or Redis fails the run instead of skipping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest
import pytest_asyncio
import redis
from sqlalchemy import text

from creditgate.adapters.cache import open_cache
from creditgate.adapters.sql.db import Database, migrate, sync_engine
from creditgate.adapters.sql.tables import metadata
from creditgate.app import create_app
from creditgate.config import Settings
from creditgate.services.runtime import Runtime

PG_ADMIN = os.environ.get("CREDITGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("CREDITGATE_TEST_REDIS", "redis://127.0.0.1:6379/0")
REQUIRE = os.environ.get("CREDITGATE_REQUIRE_SERVICES") == "1"


@dataclass(frozen=True)
class Backend:
    name: str
    database_url: str
    redis_url: str | None
    redis_prefix: str
    installation: str  # the database's id (migration 0002), the Redis cache's namespace


def installation_of(url: str) -> str:
    engine = sync_engine(url)
    try:
        with engine.connect() as conn:
            found: str = conn.execute(text("SELECT id FROM installation")).scalar_one()
    finally:
        engine.dispose()
    return found


def _unavailable(what: str, exc: Exception) -> None:
    if REQUIRE:
        pytest.fail(f"{what} unreachable and CREDITGATE_REQUIRE_SERVICES=1: {exc}")
    pytest.skip(f"{what} unreachable: {exc}")


def _redis_cleanup(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    prefix = f"cgtest:{uuid.uuid4().hex[:12]}:"
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'creditgate.db'}"
        migrate(url)
        yield Backend("sqlite", url, None, prefix, installation_of(url))
        return
    name = f"creditgate_test_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except (psycopg.Error, redis.RedisError) as exc:
        _unavailable("PostgreSQL/Redis", exc)
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    try:
        migrate(url)
        yield Backend("postgres", url, REDIS_URL, prefix, installation_of(url))
    finally:
        _redis_cleanup(REDIS_URL, prefix)
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Clock:
    """A settable clock: tests move time explicitly."""

    def __init__(self, now: datetime) -> None:
        self.value = now

    def __call__(self) -> datetime:
        return self.value

    def set(self, value: datetime | str) -> None:
        self.value = datetime.fromisoformat(value) if isinstance(value, str) else value


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2024, 1, 15, 12, 0, 30, tzinfo=UTC))


def make_settings(backend: Backend, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"database_url": backend.database_url, "redis_url": backend.redis_url,
                              "redis_prefix": backend.redis_prefix, "api_keys": "",
                              "token_secret": "test-secret"}
    values.update(overrides)
    return Settings(**values)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def database(backend: Backend) -> AsyncIterator[Database]:
    db = Database(backend.database_url)
    yield db
    await db.close()


async def _truncate(db: Database) -> None:
    names = [t.name for t in metadata.sorted_tables if t.name != "installation"]  # the id stays
    async with db.engine.begin() as conn:
        if db.dialect == "postgresql":  # with the dedupe keys, a PostgreSQL-only table (migration 0007)
            await conn.execute(text(f"TRUNCATE {', '.join(names)}, event_keys RESTART IDENTITY"))
        else:
            for n in names:
                await conn.execute(text(f"DELETE FROM {n}"))


@pytest_asyncio.fixture(loop_scope="session")
async def rt(backend: Backend, database: Database, clock: Clock) -> AsyncIterator[Runtime]:
    """A fresh runtime on an empty database, with a value cache: in-process on SQLite, Redis on PostgreSQL."""
    settings = make_settings(backend)
    runtime = Runtime(settings=settings, db=database, cache=open_cache(settings, backend.installation), clock=clock)
    try:
        yield runtime
    finally:
        if runtime.cache is not None:
            await runtime.cache.close()
        await _truncate(database)
        if backend.redis_url:
            _redis_cleanup(backend.redis_url, backend.redis_prefix)


@dataclass
class GQL:
    """Posts GraphQL over HTTP to the ASGI app."""

    http: httpx.AsyncClient

    async def __call__(self, query: str, token: str | None = None, **variables: Any) -> dict[str, Any]:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        resp = await self.http.post("/graphql", json={"query": query, "variables": variables}, headers=headers)
        body: dict[str, Any] = resp.json()
        body["status"] = resp.status_code
        return body

    async def ok(self, query: str, token: str | None = None, **variables: Any) -> dict[str, Any]:
        body = await self(query, token, **variables)
        assert not body.get("errors"), body.get("errors")
        data: dict[str, Any] = body["data"]
        return data

    async def error(self, query: str, code: str, token: str | None = None, **variables: Any) -> dict[str, Any]:
        """The first error, once every error of the answer carries `code` (a second error with another
        code is a failure too)."""
        body = await self(query, token, **variables)
        errors = body.get("errors") or []
        assert errors, f"expected {code}, got data {body.get('data')}"
        assert [e.get("extensions", {}).get("code") for e in errors] == [code] * len(errors), errors
        first: dict[str, Any] = errors[0]
        return first


@pytest_asyncio.fixture(loop_scope="session")
async def http(rt: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(runtime=rt)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        yield client


@pytest.fixture
def gql(http: httpx.AsyncClient) -> GQL:
    return GQL(http)


# A real Redis Cluster and a Sentinel setup, once per session (tests/redis_topologies.py).
from tests.redis_topologies import redis_cluster, redis_sentinel  # noqa: E402, F401
