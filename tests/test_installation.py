"""The value cache never answers for another database (issue 15).

Every database has an installation id (migration 0002) and the Redis cache keys live under it:
two deployments on two databases sharing one Redis db and prefix never see each other's entries,
and `creditgate cache flush` drops one installation's entries after a restore from a backup.
Answers of the cached apps are compared with cache-less apps on the same databases.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
import pytest
import redis
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from creditgate import cli
from creditgate.adapters.cache import open_cache
from creditgate.adapters.cache.redis_cache import RedisCache, glob_escape, namespace
from creditgate.adapters.sql.db import Database, migrate
from creditgate.adapters.sql.installation import NoInstallation, read_installation_id
from creditgate.app import create_app, open_runtime
from creditgate.services.runtime import Runtime
from tests.conftest import (
    GQL,
    PG_ADMIN,
    REDIS_URL,
    Backend,
    Clock,
    _redis_cleanup,
    _unavailable,
    installation_of,
    make_settings,
)
from tests.ent_helpers import CHECK, VALUE, events, feature, grant, meter, metered

NOW = "2024-01-15T12:00:00Z"
EARLIER = "2024-01-15T11:59:00Z"


# -- databases of their own --


@dataclass
class Databases:
    """Creates PostgreSQL databases or SQLite files for one test, migrated; drops them afterwards."""

    tmp: Any
    pg_names: list[str] = field(default_factory=list)

    def new(self, kind: str) -> str:
        if kind == "sqlite":
            url = f"sqlite:///{self.tmp / (uuid.uuid4().hex[:8] + '.db')}"
        else:
            name = f"creditgate_test_{uuid.uuid4().hex[:12]}"
            try:
                with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3) as conn:
                    conn.execute(f'CREATE DATABASE "{name}"')
            except psycopg.Error as exc:
                _unavailable("PostgreSQL", exc)
            self.pg_names.append(name)
            url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
        migrate(url)
        return url

    def drop(self) -> None:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            for name in self.pg_names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def databases(tmp_path: Any) -> Iterator[Databases]:
    dbs = Databases(tmp_path)
    yield dbs
    dbs.drop()


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """One prefix on the test Redis db, shared by every deployment of the test; deleted afterwards."""
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        _unavailable("Redis", exc)
    prefix = f"cgtest:{uuid.uuid4().hex[:12]}:"
    yield prefix
    _redis_cleanup(REDIS_URL, prefix)


def redis_keys(prefix: str) -> list[str]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        return sorted(k.decode() for k in client.scan_iter(match=glob_escape(prefix) + "*", count=1000))
    finally:
        client.close()


# -- deployments: a cached app and a cache-less app on one database --


@dataclass
class Deployment:
    url: str
    installation: str
    db: Database
    cached: GQL
    plain: GQL  # no value cache: the database's own answer
    rt: Runtime

    async def same(self, query: str, **variables: Any) -> dict[str, Any]:
        """The cached app's answer, after checking that the cache-less app gives the same."""
        got, want = await self.cached(query, **variables), await self.plain(query, **variables)
        assert got == want, (got, want)
        return got


@pytest.fixture
async def deploy(clock: Clock) -> AsyncIterator[Callable[[str, str | None, str], Awaitable[Deployment]]]:
    """deploy(database url, redis url or None, prefix): a deployment as `serve` would open it."""
    opened: list[tuple[Deployment, list[httpx.AsyncClient]]] = []

    async def make(url: str, redis_url: str | None, prefix: str) -> Deployment:
        backend = Backend("x", url, redis_url, prefix, installation_of(url))
        settings = make_settings(backend)
        db = Database(url)
        installation = await read_installation_id(db)
        rt = Runtime(settings=settings, db=db, cache=open_cache(settings, installation), clock=clock)
        plain_rt = Runtime(settings=settings, db=db, cache=None, clock=clock)
        clients = [httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(runtime=r)), base_url="http://t")
                   for r in (rt, plain_rt)]
        dep = Deployment(url, installation, db, GQL(clients[0]), GQL(clients[1]), rt)
        opened.append((dep, clients))
        return dep

    yield make
    for dep, clients in opened:
        for client in clients:
            await client.aclose()
        if dep.rt.cache is not None:
            await dep.rt.cache.close()
        await dep.db.close()


async def setup_alice(gql: GQL, amount: float) -> None:
    await meter(gql)
    await feature(gql, "ai")
    await metered(gql, "alice", "ai", interval="MONTH", anchor="2024-01-01T00:00:00Z",
                  measureUsageFrom="2024-01-01T00:00:00Z")
    await grant(gql, "alice", "ai", amount, NOW)


PAIRS = [{"subjectKey": "alice", "featureKey": "ai"}, {"subjectKey": "bob", "featureKey": "ai"},
         {"subjectKey": "alice", "featureKey": "sso"}]


async def answers(dep: Deployment) -> tuple[Any, Any, Any]:
    """entitlementValue of alice and bob and checkAccess of three pairs, each equal to the cache-less one."""
    alice = await dep.same(VALUE, s="alice", e="ai")
    bob = await dep.same(VALUE, s="bob", e="ai")
    checks = await dep.same(CHECK, checks=PAIRS)
    return alice, bob, checks


def balance(answer: dict[str, Any]) -> Any:
    return answer["data"]["entitlementValue"]["balance"]


def reasons(answer: dict[str, Any]) -> list[str]:
    return [r["reason"] for r in answer["data"]["checkAccess"]]


# -- the installation id --


def test_migrations_keep_the_installation_id(backend: Backend) -> None:
    assert len(backend.installation) == 32 and int(backend.installation, 16) >= 0
    migrate(backend.database_url)
    migrate(backend.database_url)
    assert installation_of(backend.database_url) == backend.installation


def test_an_upgrade_from_0001_creates_the_id_once(databases: Databases, backend: Backend) -> None:
    from alembic import command

    from creditgate.adapters.sql.db import alembic_config, sync_engine

    url = databases.new(backend.name)
    cfg = alembic_config(url)
    command.downgrade(cfg, "0001")  # a database made before the installation id existed
    command.upgrade(cfg, "head")
    first = installation_of(url)
    command.upgrade(cfg, "head")
    migrate(url)
    assert installation_of(url) == first != backend.installation
    engine = sync_engine(url)
    try:
        with pytest.raises(IntegrityError), engine.begin() as conn:  # one row only
            conn.execute(text("INSERT INTO installation (singleton, id, created_at) "
                              "VALUES (2, 'other', CURRENT_TIMESTAMP)"))
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM installation")).scalar_one() == 1
    finally:
        engine.dispose()


async def test_a_database_without_the_row_does_not_start(databases: Databases) -> None:
    url = databases.new("sqlite")
    conn = sqlite3.connect(url.removeprefix("sqlite:///"))
    conn.execute("DELETE FROM installation")
    conn.commit()
    conn.close()
    with pytest.raises(NoInstallation, match="creditgate migrate"):
        async with open_runtime(make_settings(Backend("x", url, None, "cg:", ""))):
            pass


def test_namespace_rejects_ids_that_could_overlap() -> None:
    assert namespace("cg:", "ab12") == "cg:ab12:"
    for bad in ("", "a:b", "a*", "a?", "[a]", "a b"):
        with pytest.raises(ValueError):
            namespace("cg:", bad)
    assert glob_escape("cg*[x]?:\\") == "cg\\*\\[x\\]\\?:\\\\"


async def test_open_runtime_puts_the_installation_in_the_namespace(backend: Backend,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="creditgate")
    async with open_runtime(make_settings(backend)) as rt:
        if backend.redis_url:
            assert isinstance(rt.cache, RedisCache)
            assert rt.cache.namespace == f"{backend.redis_prefix}{backend.installation}:"
        else:
            assert rt.cache is not None and not hasattr(rt.cache, "namespace")
    assert f"installation {backend.installation}" in caplog.text


# -- two deployments, two databases, one Redis db and prefix --


@pytest.mark.parametrize("kind", ["postgres", "sqlite"])
async def test_two_databases_sharing_one_redis_never_see_each_other(
        kind: str, databases: Databases, redis_prefix: str,
        deploy: Callable[[str, str | None, str], Awaitable[Deployment]]) -> None:
    prod = await deploy(databases.new(kind), REDIS_URL, redis_prefix)
    staging = await deploy(databases.new(kind), REDIS_URL, redis_prefix)
    assert prod.installation != staging.installation

    # the scenario: alice is cached in production; staging's database is empty
    await setup_alice(prod.cached, 100)
    await events(prod.cached, "alice", (EARLIER, 30))
    for _ in range(2):  # the second round is served from Redis
        alice, bob, checks = await answers(prod)
        assert balance(alice) == 70.0 and reasons(checks) == ["GRANTED", "NO_ENTITLEMENT", "NO_ENTITLEMENT"]
    for _ in range(2):
        alice, bob, checks = await answers(staging)
        assert alice["errors"][0]["extensions"]["code"] == "NOT_FOUND"
        assert reasons(checks) == ["NO_ENTITLEMENT"] * 3

    # writes and reads interleaved on both
    await setup_alice(staging.cached, 10)
    assert balance((await answers(staging))[0]) == 10.0
    assert balance((await answers(prod))[0]) == 70.0
    await events(staging.cached, "alice", (EARLIER, 4))
    await metered(prod.cached, "bob", "ai", interval="MONTH", anchor="2024-01-01T00:00:00Z")
    await grant(prod.cached, "bob", "ai", 5, NOW)
    alice, bob, checks = await answers(staging)
    assert balance(alice) == 6.0 and bob["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    alice, bob, checks = await answers(prod)
    assert balance(alice) == 70.0 and balance(bob) == 5.0
    await events(prod.cached, "alice", (EARLIER, 70))
    await events(staging.cached, "bob", (EARLIER, 1))
    for dep, want in ((prod, ["NO_BALANCE", "GRANTED", "NO_ENTITLEMENT"]),
                      (staging, ["GRANTED", "NO_ENTITLEMENT", "NO_ENTITLEMENT"])):
        for _ in range(2):
            assert reasons((await answers(dep))[2]) == want

    # every key of the shared prefix belongs to exactly one of the two namespaces, and both are used
    keys = redis_keys(redis_prefix)
    spaces = {p: [k for k in keys if k.startswith(p)] for p in (f"{redis_prefix}{prod.installation}:",
                                                                 f"{redis_prefix}{staging.installation}:")}
    assert all(spaces.values()) and sum(map(len, spaces.values())) == len(keys)


async def test_in_process_caches_stay_per_process(databases: Databases, redis_prefix: str,
                                                  deploy: Callable[[str, str | None, str], Awaitable[Deployment]]
                                                  ) -> None:
    prod = await deploy(databases.new("sqlite"), None, redis_prefix)
    staging = await deploy(databases.new("sqlite"), None, redis_prefix)
    await setup_alice(prod.cached, 100)
    assert balance((await answers(prod))[0]) == 100.0
    assert balance((await answers(prod))[0]) == 100.0
    assert reasons((await answers(staging))[2]) == ["NO_ENTITLEMENT"] * 3
    assert redis_keys(redis_prefix) == []


# -- restore from a backup, then `creditgate cache flush` --


async def backup(dep: Deployment, kind: str, databases: Databases) -> str:
    """A copy of the deployment's database as it stands (PostgreSQL: a template copy)."""
    await dep.db.engine.dispose()
    if kind == "sqlite":
        copy = databases.new("sqlite")
        src, dst = sqlite3.connect(dep.url.removeprefix("sqlite:///")), sqlite3.connect(copy.removeprefix("sqlite:///"))
        src.backup(dst)
        src.close()
        dst.close()
        return copy
    name = f"creditgate_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{dep.url.rsplit("/", 1)[1]}"')
    databases.pg_names.append(name)
    return name


async def restore(dep: Deployment, kind: str, copy: str) -> None:
    """Replaces the deployment's database with the copy, under the same URL (the app keeps running)."""
    await dep.db.engine.dispose()
    if kind == "sqlite":
        src, dst = sqlite3.connect(copy.removeprefix("sqlite:///")), sqlite3.connect(dep.url.removeprefix("sqlite:///"))
        src.backup(dst)
        src.close()
        dst.close()
        return
    live = dep.url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{live}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{live}" TEMPLATE "{copy}"')


def run_cli(monkeypatch: pytest.MonkeyPatch, dep: Deployment, redis_url: str | None, prefix: str,
            *argv: str) -> int:
    monkeypatch.setenv("CREDITGATE_DATABASE_URL", dep.url)
    monkeypatch.setenv("CREDITGATE_REDIS_PREFIX", prefix)
    if redis_url:
        monkeypatch.setenv("CREDITGATE_REDIS_URL", redis_url)
    else:
        monkeypatch.delenv("CREDITGATE_REDIS_URL", raising=False)
    return cli.main(list(argv))


@pytest.mark.parametrize("kind", ["postgres", "sqlite"])
async def test_cache_flush_after_a_restore_gives_fresh_values(
        kind: str, databases: Databases, redis_prefix: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
        deploy: Callable[[str, str | None, str], Awaitable[Deployment]]) -> None:
    prod = await deploy(databases.new(kind), REDIS_URL, redis_prefix)
    other = await deploy(databases.new(kind), REDIS_URL, redis_prefix)  # another deployment on the same Redis
    await setup_alice(prod.cached, 100)
    await setup_alice(other.cached, 50)
    copy = await backup(prod, kind, databases)  # alice has 100 here
    await events(prod.cached, "alice", (EARLIER, 30))
    await events(other.cached, "alice", (EARLIER, 5))
    for dep, want in ((prod, 70.0), (other, 45.0)):
        for _ in range(2):  # cached
            assert balance((await answers(dep))[0]) == want

    await restore(prod, kind, copy)
    assert await read_installation_id(prod.db) == prod.installation  # the dump carries the id
    stale = await prod.cached(VALUE, s="alice", e="ai")
    assert balance(stale) == 70.0  # what a restore leaves behind: entries computed from newer data
    assert balance(await prod.plain(VALUE, s="alice", e="ai")) == 100.0
    other_keys = [k for k in redis_keys(redis_prefix) if k.startswith(f"{redis_prefix}{other.installation}:")]

    assert await asyncio.to_thread(run_cli, monkeypatch, prod, REDIS_URL, redis_prefix, "cache", "flush") == 0
    out = capsys.readouterr().out
    assert f"installation {prod.installation}" in out and f"{redis_prefix}{prod.installation}:" in out
    assert "unlinked 0 keys" not in out
    assert [k for k in redis_keys(redis_prefix) if k.startswith(f"{redis_prefix}{prod.installation}:")] == [
        f"{redis_prefix}{prod.installation}:epoch"]  # only the new epoch is left
    assert [k for k in redis_keys(redis_prefix) if k.startswith(f"{redis_prefix}{other.installation}:")] == other_keys

    for _ in range(2):
        alice, _bob, checks = await answers(prod)
        assert balance(alice) == 100.0 and reasons(checks)[0] == "GRANTED"
    await events(prod.cached, "alice", (EARLIER, 100))
    assert reasons((await answers(prod))[2])[0] == "NO_BALANCE"
    assert balance((await answers(other))[0]) == 45.0  # the other deployment's entries are untouched


async def test_flush_refuses_a_put_read_before_it(redis_prefix: str) -> None:
    c = RedisCache.from_url(REDIS_URL, redis_prefix, installation="ab")
    keys = [("s:alice", "a:ai")]
    before = await c.get_many(keys)
    assert await c.flush() == 0
    await c.put_many([("s:alice", "a:ai", b"old", before[0].token, 60.0)])  # computed before the flush
    assert [h.value for h in await c.get_many(keys)] == [None]
    await c.close()


async def test_cache_flush_without_redis_says_so(databases: Databases, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str],
                                                 deploy: Callable[[str, str | None, str], Awaitable[Deployment]]
                                                 ) -> None:
    dep = await deploy(databases.new("sqlite"), None, "cg:")
    assert await asyncio.to_thread(run_cli, monkeypatch, dep, None, "cg:", "cache", "flush") == 0
    assert "no CREDITGATE_REDIS_URL" in capsys.readouterr().out


async def test_cache_flush_reports_an_unreachable_redis(databases: Databases, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str],
                                                        deploy: Callable[[str, str | None, str],
                                                                         Awaitable[Deployment]]) -> None:
    dep = await deploy(databases.new("sqlite"), None, "cg:")
    code = await asyncio.to_thread(run_cli, monkeypatch, dep, "redis://127.0.0.1:1/0", "cg:", "cache", "flush")
    assert code == 1 and "cache flush failed" in capsys.readouterr().err


async def test_serve_prints_the_installation_and_namespace(backend: Backend, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    import uvicorn

    ran: list[bool] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: ran.append(True))
    monkeypatch.setenv("CREDITGATE_DATABASE_URL", backend.database_url)
    monkeypatch.setenv("CREDITGATE_REDIS_PREFIX", backend.redis_prefix)
    monkeypatch.setenv("CREDITGATE_TOKEN_SECRET", "s")
    if backend.redis_url:
        monkeypatch.setenv("CREDITGATE_REDIS_URL", backend.redis_url)
    args = argparse.Namespace(host="127.0.0.1", port=1, workers=1, log_level="warning")
    assert await asyncio.to_thread(cli.serve, args) == 0 and ran
    err = capsys.readouterr().err
    assert f"installation {backend.installation}" in err
    if backend.redis_url:
        assert f"key namespace '{backend.redis_prefix}{backend.installation}:'" in err
    else:
        assert "cache: in-process" in err
