"""`creditgate import` (issue 14): a live creditgate filled through the OpenMeter SDK is the source; the import
writes an empty second database; both are compared through the API (docs/import.md)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from openmeter import Client

from creditgate.adapters.cache import open_cache
from creditgate.adapters.importer.command import USAGE_BATCH, WRITE_BATCH, Options, Summary, _UsageReads, run_import
from creditgate.adapters.importer.source import Source
from creditgate.adapters.sql.db import Database, migrate
from creditgate.records import Meter
from creditgate.services.imports import UsageMinute
from creditgate.services.runtime import Runtime
from tests.conftest import PG_ADMIN, Backend, Clock, installation_of, make_settings
from tests.live_helpers import API_KEY, live_server
from tests.rest.conftest import Server

T0 = datetime(2024, 1, 1, tzinfo=UTC)
NOW = T0 + timedelta(days=1, hours=12, seconds=30)
SUBJECTS = [f"cust-{i:02d}" for i in range(50)]


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def fill(om: Client, clock: Clock) -> None:
    """Meters, features (one archived), 50 subjects with boolean, static and metered entitlements (one deleted and
    replaced), grants with priorities, expiry, recurrence, rollover and a void, manual resets before and in the
    current period, and usage over two periods."""
    clock.set(T0 + timedelta(seconds=30))
    om.create_meter({"slug": "tokens", "eventType": "tokens", "aggregation": "SUM", "valueProperty": "$.tokens",
                     "groupBy": {"model": "$.model"}, "description": "LLM tokens"})
    om.create_meter({"slug": "requests", "eventType": "request", "aggregation": "COUNT",
                     "groupBy": {"region": "$.region"}})
    om.create_meter({"slug": "latency", "eventType": "request", "aggregation": "AVG", "valueProperty": "$.ms"})
    om.create_meter({"slug": "peak", "eventType": "request", "aggregation": "MAX", "valueProperty": "$.ms"})
    om.create_meter({"slug": "users", "eventType": "request", "aggregation": "UNIQUE_COUNT",
                     "valueProperty": "$.user", "groupBy": {"region": "$.region"}})
    om.create_feature({"key": "ai", "name": "AI tokens", "meterSlug": "tokens", "metadata": {"tier": "x"}})
    om.create_feature({"key": "ai_gpt", "name": "GPT tokens", "meterSlug": "tokens",
                       "meterGroupByFilters": {"model": "gpt"}})
    om.create_feature({"key": "calls", "name": "API calls", "meterSlug": "requests"})
    om.create_feature({"key": "sso", "name": "SSO"})
    om.create_feature({"key": "plan", "name": "Plan"})
    legacy = om.create_feature({"key": "legacy", "name": "Legacy"})
    om.delete_feature(legacy["id"])  # archived
    om.upsert_subject([{"key": k, "displayName": f"Customer {k}", "metadata": {"n": i}}
                       for i, k in enumerate(SUBJECTS)])
    ai: dict[str, str] = {}
    grants3: list[str] = []
    calls: dict[str, str] = {}
    for i, s in enumerate(SUBJECTS):
        om.create_entitlement(s, {"type": "boolean", "featureKey": "sso"})
        om.create_entitlement(s, {"type": "static", "featureKey": "plan", "config": f'{{"seats": {i}}}'})
        body: dict[str, Any] = {"type": "metered", "featureKey": "ai", "measureUsageFrom": iso(T0),
                                "usagePeriod": {"interval": "DAY", "anchor": iso(T0)}, "isSoftLimit": i % 5 == 0,
                                "metadata": {"i": str(i)}}
        if i % 7 == 0:
            body.update(issueAfterReset=15, issueAfterResetPriority=4)
        ent = om.create_entitlement(s, body)
        ai[s] = ent["id"]
        om.create_grant(s, ent["id"], {"amount": 100, "priority": 1, "effectiveAt": iso(T0),
                                       "expiration": {"duration": "DAY", "count": 30},
                                       "recurrence": {"interval": "DAY", "anchor": iso(T0)},
                                       "maxRolloverAmount": 50, "metadata": {"kind": "monthly"}})
        om.create_grant(s, ent["id"], {"amount": 40, "priority": 2, "effectiveAt": iso(T0 + timedelta(hours=2)),
                                       "expiration": {"duration": "HOUR", "count": 30}})
        if i % 5:
            om.create_grant(s, ent["id"], {"amount": 30, "priority": 3, "effectiveAt": iso(T0),
                                           "expiration": {"duration": "MONTH", "count": 1},
                                           "minRolloverAmount": 5, "maxRolloverAmount": 20})
        if i % 4 == 0:
            g = om.create_grant(s, ent["id"], {"amount": 25, "priority": 5, "effectiveAt": iso(T0 + timedelta(hours=1)),
                                               "expiration": {"duration": "DAY", "count": 2}})
            grants3.append(g["id"])
        if i % 2 == 0:
            c = om.create_entitlement(s, {"type": "metered", "featureKey": "calls",
                                          "usagePeriod": {"interval": "DAY", "anchor": iso(T0 + timedelta(hours=6))},
                                          "measureUsageFrom": iso(T0)})
            calls[s] = c["id"]
            om.create_grant(s, c["id"], {"amount": 10, "priority": 1, "effectiveAt": iso(T0 + timedelta(hours=6)),
                                         "expiration": {"duration": "MONTH", "count": 1},
                                         "recurrence": {"interval": "DAY"}})
        if i % 3 == 0:
            g2 = om.create_entitlement(s, {"type": "metered", "featureKey": "ai_gpt", "measureUsageFrom": iso(T0),
                                           "usagePeriod": {"interval": "WEEK", "anchor": iso(T0)}})
            om.create_grant(s, g2["id"], {"amount": 20, "priority": 1, "effectiveAt": iso(T0),
                                          "expiration": {"duration": "WEEK", "count": 1}})
    events: list[dict[str, Any]] = []
    for i, s in enumerate(SUBJECTS):
        for k in range(23):  # every 90 minutes over a day and a half
            t = T0 + timedelta(minutes=90 * k, seconds=i)
            events.append({"specversion": "1.0", "id": f"t-{s}-{k}", "source": "fill", "type": "tokens",
                           "subject": s, "time": iso(t),
                           "data": {"tokens": (i * 7 + k * 3) % 11 + 0.5, "model": "gpt" if k % 2 else "claude"}})
        for k in range(18):
            t = T0 + timedelta(hours=2 * k, minutes=i % 3)
            events.append({"specversion": "1.0", "id": f"r-{s}-{k}", "source": "fill", "type": "request",
                           "subject": s, "time": iso(t),
                           "data": {"region": "eu" if (i + k) % 2 else "us", "ms": 10 + (i + k) % 17,
                                    "user": f"u{(i + k) % 5}"}})
    clock.set(T0 + timedelta(hours=12))
    for i, s in enumerate(SUBJECTS):  # manual resets before the current period: not listed by the v1 API
        if i % 5 == 3:
            om.reset_entitlement_usage(s, ai[s], {})
    for j in range(0, len(events), 1000):
        om.ingest_events(events[j:j + 1000])
    clock.set(T0 + timedelta(hours=20))
    for g in grants3:
        om.void_grant(g)
    clock.set(T0 + timedelta(days=1, hours=6, seconds=30))
    for i, s in enumerate(SUBJECTS):  # resets in the current period: its start (lastReset)
        if i % 5 in (1, 2):
            om.reset_entitlement_usage(s, ai[s], {"retainAnchor": i % 5 == 2})
    om.delete_entitlement("cust-06", calls["cust-06"])
    om.create_entitlement("cust-06", {"type": "metered", "featureKey": "calls", "measureUsageFrom": iso(T0),
                                      "usagePeriod": {"interval": "DAY", "anchor": iso(T0)}})
    clock.set(NOW)


# -- the target: a second database, and a server on it -------------------------------------------------------

@contextmanager
def target_database(backend: Backend, tmp_path: Path) -> Iterator[str]:
    if backend.name == "sqlite":
        url = f"sqlite:///{tmp_path / f'target-{uuid.uuid4().hex[:8]}.db'}"
        migrate(url)
        yield url
        return
    name = f"creditgate_import_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    try:
        migrate(url)
        yield url
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _settings(backend: Backend, url: str, **overrides: Any) -> Any:
    return make_settings(backend, database_url=url, redis_prefix=f"{backend.redis_prefix}import:", **overrides)


@asynccontextmanager
async def target_runtime(backend: Backend, url: str, clock: Clock) -> AsyncIterator[Runtime]:
    db = Database(url)
    settings = _settings(backend, url)
    rt = Runtime(settings=settings, db=db, cache=open_cache(settings, installation_of(url)), clock=clock)
    try:
        yield rt
    finally:
        if rt.cache is not None:
            await rt.cache.close()
        await db.close()


@contextmanager
def target_server(backend: Backend, url: str, clock: Clock) -> Iterator[Client]:
    """A server on the target database (the shared live server, tests/live_helpers.py), as an SDK client."""
    with live_server(backend, clock=clock, database_url=url, redis_prefix=f"{backend.redis_prefix}import:") as srv:
        yield srv.client()


async def do_import(backend: Backend, url: str, live: Server, **kwargs: Any) -> Summary:
    async with target_runtime(backend, url, live.clock) as rt:
        return await run_import(rt, Source(live.client()), Options(), **kwargs)


# -- comparing through the API --------------------------------------------------------------------------------

def _by_id(items: list[Any]) -> list[Any]:
    return sorted(items, key=lambda x: x["id"])


def everything(om: Client) -> dict[str, Any]:
    """Every meter, feature, subject, entitlement (deleted too) and grant (voided too), by id."""
    return {"meters": _by_id(om.list_meters()),
            "features": _by_id(om.list_features(include_archived=True)),
            "subjects": _by_id(om.list_subjects()),
            "entitlements": _by_id(om.list_entitlements(params={"includeDeleted": "true"})),
            "grants": _by_id(om.list_grants(include_deleted=True))}


def metered_reads(om: Client, ents: list[dict[str, Any]], meters: list[dict[str, Any]]) -> dict[str, Any]:
    """Values at now and at instants inside the current period, history from the current period start, meter
    queries at MINUTE windows (and HOUR for the meters whose hours sum minutes exactly)."""
    out: dict[str, Any] = {}
    for e in ents:
        if e["type"] != "metered" or e.get("deletedAt"):
            continue
        start = datetime.fromisoformat(e["currentUsagePeriod"]["from"])
        span = NOW - start
        instants = sorted({start + span * k / 4 for k in range(4)} | {start, start + timedelta(minutes=1)})
        key = f"{e['subjectKey']}/{e['featureKey']}"
        out[key + " now"] = om.get_entitlement_value(e["subjectKey"], e["id"])
        for t in instants:
            t = t.replace(second=0, microsecond=0)
            out[f"{key} {iso(t)}"] = om.get_entitlement_value(e["subjectKey"], e["id"], time=t)
        out[key + " history"] = om.get_entitlement_history(e["subjectKey"], e["id"], window_size="HOUR",
                                                           from_parameter=start)
    for m in meters:
        group_by = ["subject", *sorted(m.get("groupBy") or {})]
        out[m["slug"] + " minutes"] = om.query_meter(m["id"], window_size="MINUTE", group_by=group_by)["data"]
        if m["aggregation"] in ("SUM", "COUNT", "MAX", "MIN"):
            out[m["slug"] + " hours"] = om.query_meter(m["id"], window_size="HOUR", group_by=group_by)["data"]
    return out


def assert_same(src: Client, dst: Client) -> None:
    before = everything(src)
    after = everything(dst)
    for kind in before:
        assert after[kind] == before[kind], kind
    assert len(before["entitlements"]) == 50 * 3 + 25 + 17 + 1
    assert any(e.get("deletedAt") for e in before["entitlements"])
    assert any(f.get("archivedAt") for f in before["features"])
    assert any(g.get("voidedAt") for g in before["grants"])
    want = metered_reads(src, before["entitlements"], before["meters"])
    got = metered_reads(dst, before["entitlements"], before["meters"])
    assert got.keys() == want.keys()
    differ = [k for k in want if got[k] != want[k]]
    assert not differ, [(k, want[k], got[k]) for k in differ[:3]]


# -- the tests --------------------------------------------------------------------------------------------------

def test_dry_run_command_writes_nothing(om: Client, live: Server, backend: Backend, tmp_path: Path) -> None:
    fill(om, live.clock)
    with target_database(backend, tmp_path) as url:
        env = {**os.environ, "CREDITGATE_DATABASE_URL": url}
        done = subprocess.run([sys.executable, "-m", "creditgate.cli", "import", "--from", live.url, "--api-key",
                               API_KEY, "--dry-run"], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert "entitlements  would import     193" in done.stdout, done.stdout
        assert "lastReset" in done.stdout  # the limits are said
        with target_server(backend, url, live.clock) as dst:
            assert dst.list_meters() == [] and dst.list_entitlements(params={"includeDeleted": "true"}) == []
        bad = subprocess.run([sys.executable, "-m", "creditgate.cli", "import", "--from", live.url, "--api-key",
                              "wrong"], env=env, capture_output=True, text=True, timeout=300)
        assert bad.returncode == 1 and "cannot read" in bad.stderr


async def test_import_keeps_ids_fields_values_and_history(om: Client, live: Server, backend: Backend,
                                                          tmp_path: Path) -> None:
    fill(om, live.clock)
    with target_database(backend, tmp_path) as url:
        summary = await do_import(backend, url, live)
        t = summary.tallies
        assert summary.failed == 0, summary.lines()
        assert (t["meters"].imported, t["features"].imported, t["subjects"].imported) == (5, 6, 50)
        assert t["entitlements"].imported == 193
        # AVG, MAX and UNIQUE_COUNT meters and the requests of subjects without a `calls` entitlement
        assert t["usage"].imported == 3 * 50 + 25
        with target_server(backend, url, live.clock) as dst:
            assert_same(om, dst)
        again = await do_import(backend, url, live)  # a second run finds everything there
        assert again.failed == 0 and all(x.imported == 0 for x in again.tallies.values()), "\n".join(again.lines())
        assert again.tallies["entitlements"].skipped == 193 and again.tallies["meters"].skipped == 5


class Killed(Exception):
    pass


async def test_import_killed_half_way_then_resumed(om: Client, live: Server, backend: Backend,
                                                   tmp_path: Path) -> None:
    fill(om, live.clock)
    with target_database(backend, tmp_path) as url:
        def kill(n: int) -> None:
            if n == 90:
                raise Killed

        with pytest.raises(Killed):
            await do_import(backend, url, live, after_entitlement=kill)
        with target_server(backend, url, live.clock) as dst:  # the 90th's transaction (WRITE_BATCH of them)
            stored = len(dst.list_entitlements(params={"includeDeleted": "true"}))
        assert 90 <= stored < 90 + WRITE_BATCH
        second = await do_import(backend, url, live)
        assert second.failed == 0, second.lines()
        assert (second.tallies["entitlements"].skipped, second.tallies["entitlements"].imported) == \
            (stored, 193 - stored)
        with target_server(backend, url, live.clock) as dst:
            assert_same(om, dst)


async def test_events_ingested_after_an_import_add_to_imported_minutes(om: Client, live: Server, backend: Backend,
                                                                       tmp_path: Path) -> None:
    fill(om, live.clock)
    with target_database(backend, tmp_path) as url:
        assert (await do_import(backend, url, live)).failed == 0
        with target_server(backend, url, live.clock) as dst:
            ent = next(e for e in dst.list_subject_entitlements("cust-04") if e["featureKey"] == "ai")
            minute = T0 + timedelta(hours=33, minutes=0)  # a minute of the current period with imported usage
            q = {"window_size": "MINUTE", "subject": ["cust-04"], "from_parameter": minute,
                 "to": minute + timedelta(minutes=1)}
            [before] = dst.query_meter("tokens", **q)["data"]
            value = dst.get_entitlement_value("cust-04", ent["id"])
            late = {"specversion": "1.0", "id": "late-1", "source": "after", "type": "tokens", "subject": "cust-04",
                    "time": iso(minute + timedelta(seconds=20)), "data": {"tokens": 2.25, "model": "gpt"}}
            dst.ingest_events([late, late])
            dst.ingest_events(late)  # deduplicated, as any event
            [after] = dst.query_meter("tokens", **q)["data"]
            assert after["value"] == before["value"] + 2.25
            now = dst.get_entitlement_value("cust-04", ent["id"])
            assert now["usage"] == value["usage"] + 2.25
            assert now["balance"] - now["overage"] == value["balance"] - value["overage"] - 2.25
            # a UNIQUE_COUNT minute: the imported count, plus the values that events bring later
            one = T0 + timedelta(minutes=1)  # cust-04's first request: region us, user u4
            users = {"window_size": "MINUTE", "subject": ["cust-04"], "group_by": ["region"],
                     "from_parameter": one, "to": one + timedelta(minutes=1)}
            assert [r["value"] for r in dst.query_meter("users", **users)["data"]] == [1]
            dst.ingest_events({"specversion": "1.0", "id": "late-2", "source": "after", "type": "request",
                               "subject": "cust-04", "time": iso(one + timedelta(seconds=40)),
                               "data": {"region": "us", "ms": 1, "user": "new"}})
            assert [r["value"] for r in dst.query_meter("users", **users)["data"]] == [2]


class _Batches:
    """A source whose batched usage reads of some subjects fail; single reads fail only for `broken`."""

    def __init__(self, failing_batch: str, broken: str) -> None:
        self.failing_batch, self.broken = failing_batch, broken
        self.batches: list[list[str]] = []

    def usage_of(self, meter: Meter, subjects: list[str]) -> dict[str, list[UsageMinute]]:
        self.batches.append(list(subjects))
        if self.failing_batch in subjects:
            raise RuntimeError("batch failed")
        return {s: [UsageMinute(s, {}, T0, Decimal(len(s)))] for s in subjects}

    def usage(self, meter: Meter, subject: str) -> list[UsageMinute]:
        if subject == self.broken:
            raise RuntimeError(f"{subject} unreadable")
        return [UsageMinute(subject, {}, T0, Decimal(1))]


async def test_usage_reads_are_batched_and_a_failed_batch_is_read_subject_by_subject() -> None:
    meter = Meter(id="m1", slug="tokens", description=None, event_type="tokens", aggregation="SUM",
                  value_property="$.t", group_by={}, window_size="MINUTE", created_at=T0, updated_at=T0)
    subjects = [f"s{i:03d}" for i in range(2 * USAGE_BATCH + 5)]
    source = _Batches(failing_batch=subjects[USAGE_BATCH + 3], broken=subjects[USAGE_BATCH + 7])
    with ThreadPoolExecutor(2) as pool:
        reads = _UsageReads(source, pool, [(meter, s) for s in subjects])  # type: ignore[arg-type]
        got: dict[str, Any] = {}
        for s in subjects:
            try:
                got[s] = [m.value for m in await reads.minutes(meter, s)]
            except RuntimeError as exc:
                got[s] = str(exc)
    assert sorted(map(tuple, source.batches)) == [tuple(subjects[i:i + USAGE_BATCH])
                                                   for i in range(0, len(subjects), USAGE_BATCH)]
    assert got[subjects[0]] == [Decimal(4)]  # from its batch
    assert got[subjects[USAGE_BATCH]] == [Decimal(1)]  # its batch failed: read alone
    assert got[subjects[USAGE_BATCH + 7]] == f"{subjects[USAGE_BATCH + 7]} unreadable"  # only this one fails
    assert got[subjects[-1]] == [Decimal(4)]
    assert reads.futures == {}  # every answer let go once read
