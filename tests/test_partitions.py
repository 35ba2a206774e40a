"""Monthly partitions and event retention (migration 0007, adapters/sql/partitions.py, services/maintenance.py;
docs/operations.md "Partitions and retention"). PostgreSQL only, except the SQLite settings check."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Any

import pytest
from sqlalchemy import text

from creditgate.adapters.sql import partitions
from creditgate.records import EventInput
from creditgate.services import events as event_svc
from creditgate.services import maintenance
from creditgate.services.runtime import Runtime
from tests.conftest import GQL, Backend, Clock, make_settings
from tests.ent_helpers import events, feature, grant, meter, metered, value

HISTORY = """query($id: ID!, $w: WindowSize!, $from: DateTime, $to: DateTime) {
  entitlement(id: $id) { ... on MeteredEntitlement { history(windowSize: $w, from: $from, to: $to) {
    windowedHistory { period { from to } usage balanceAtStart }
    burndownHistory { period { from to } usage overage balanceAtStart balanceAtEnd } } } } }"""
QUERY = """query($m: String!, $q: MeterQueryInput) { meterQuery(idOrSlug: $m, input: $q) {
  windowStart windowEnd subject groupBy value } }"""


def postgres_only(backend: Backend) -> None:
    if backend.name != "postgres":
        pytest.skip("partitions are PostgreSQL's (SQLite keeps one table)")


async def fetch(rt: Runtime, sql: str, **params: Any) -> list[Any]:
    async with rt.db.read() as s:
        return list((await (await s.connection()).execute(text(sql), params)).all())


async def tables(rt: Runtime, like: str) -> set[str]:
    rows = await fetch(rt, "SELECT relname FROM pg_class WHERE relname LIKE :p AND relkind = 'r'", p=like)
    return {r[0] for r in rows}


async def answers(gql: GQL, ent: dict[str, Any]) -> list[Any]:
    """Everything a client can ask about the usage: values now and in the past, history, meter queries."""
    out: list[Any] = [await value(gql, "cust", "ai", at) for at in
                      (None, "2024-02-10T00:00:00Z", "2024-04-01T00:00:00Z", "2024-05-31T23:59:00Z")]
    for w in ("HOUR", "DAY"):
        out.append(await gql.ok(HISTORY, id=ent["id"], w=w, **{"from": "2024-01-01T00:00:00Z",
                                                               "to": "2024-09-01T00:00:00Z"}))
    for q in ({"windowSize": "DAY"}, {"windowSize": "HOUR", "groupBy": ["model"]}, None):
        out.append(await gql.ok(QUERY, m="tokens", q=q))
    return out


async def test_months_get_partitions_as_events_arrive(backend: Backend, rt: Runtime, gql: GQL) -> None:
    postgres_only(backend)
    await meter(gql)
    assert await events(gql, "cust", ("2031-05-31T23:59:59.5Z", 1.25), ("2031-06-01T00:00:00Z", 2)) == \
        {"accepted": 2, "duplicates": 0}
    assert await tables(rt, "events_2031_%") == {"events_2031_05", "events_2031_06"}
    rows = await fetch(rt, "SELECT tableoid::regclass::text FROM events ORDER BY time")
    assert [r[0] for r in rows] == ["events_2031_05", "events_2031_06"]


async def test_a_remembered_month_is_asked_for_again_once_retention_could_drop_it(
        backend: Backend, rt: Runtime, gql: GQL, clock: Clock) -> None:
    """A process remembers the partitions it has seen until MIN_RETENTION after their month ends; after
    that, one dropped meanwhile by another process's retention is made again, not written into blindly."""
    postgres_only(backend)
    await meter(gql)
    clock.set("2036-01-20T00:00:00+00:00")
    assert (await events(gql, "cust", ("2036-01-05T00:00:00Z", 1)))["accepted"] == 1
    async with rt.db.transaction() as s:  # what another process's retention does
        await (await s.connection()).execute(text("ALTER TABLE events DETACH PARTITION events_2036_01"))
        await (await s.connection()).execute(text("DROP TABLE events_2036_01"))
    clock.set("2036-02-02T00:00:01+00:00")  # February 1st + 1 day: from now on it could have been dropped
    assert (await events(gql, "cust", ("2036-01-06T00:00:00Z", 2)))["accepted"] == 1
    assert await tables(rt, "events_2036_01") == {"events_2036_01"}


async def test_concurrent_writers_make_a_new_month_once(backend: Backend, rt: Runtime, gql: GQL) -> None:
    postgres_only(backend)
    await meter(gql)
    batches = [[EventInput(id=str(i), source=f"writer{w}", type="prompt", subject="cust",
                           time="2032-03-04T05:06:07Z", data={"tokens": 1}) for i in range(50)] for w in range(4)]
    done = await asyncio.gather(*(event_svc.ingest_events(rt, b) for b in batches))
    assert [d.accepted for d in done] == [50] * 4
    assert await tables(rt, "events_2032_03") == {"events_2032_03"}


async def test_a_writer_already_in_the_table_makes_the_month_itself(backend: Backend, rt: Runtime) -> None:
    """The partition is made aside unless the writer's own transaction holds the table (it would wait for
    itself): then in that transaction, committed with it."""
    postgres_only(backend)
    async with rt.db.transaction() as s:
        await partitions.ensure_months(s, [date(2035, 1, 1)], rt.now())
        await (await s.connection()).execute(text(
            "INSERT INTO events (event_id, source, type, subject, time, data, ingested_at) "
            "VALUES ('1', 'x', 't', 's', '2035-01-02T00:00:00Z', '{}', now())"))
        await partitions.ensure_months(s, [date(2035, 2, 1)], rt.now())
        assert await tables(rt, "events_2035_02") == set()  # not committed yet
    assert await tables(rt, "events_2035_0%") == {"events_2035_01", "events_2035_02"}


async def test_maintenance_makes_months_ahead(backend: Backend, rt: Runtime, clock: Clock) -> None:
    postgres_only(backend)
    clock.set("2033-11-20T00:00:00+00:00")
    done = await maintenance.maintain(rt)
    assert done.created == ["events_2033_11", "events_2033_12", "events_2034_01", "events_2034_02"]
    assert "events_2034_03" not in await tables(rt, "events_2034_%")
    assert (await maintenance.maintain(rt)).created == []  # idempotent


async def test_retention_drops_raw_events_and_no_answer_changes(backend: Backend, rt: Runtime, gql: GQL,
                                                                 clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    postgres_only(backend)
    clock.set("2024-01-01T00:00:00+00:00")
    await meter(gql, group_by={"model": "$.model"})
    await feature(gql)
    ent = await metered(gql, anchor="2024-01-01T00:00:00Z")
    await grant(gql, "cust", "ai", 1000, "2024-01-01T00:00:00Z", recurrence={"interval": "MONTH"},
                maxRolloverAmount=250)
    old = [EventInput(id=f"old{i}", source="test", type="prompt", subject="cust", time=t, data={"tokens": n,
                                                                                                "model": "a"})
           for i, (t, n) in enumerate([("2024-01-31T23:59:59.999Z", 0.1), ("2024-02-01T00:00:00Z", 0.2),
                                       ("2024-02-14T10:11:12Z", 333.3), ("2024-03-31T12:00:00Z", 1e-7),
                                       ("2024-04-02T00:00:00Z", 0.3)])]
    clock.set("2024-09-10T00:00:00+00:00")
    await event_svc.ingest_events(rt, old)
    await events(gql, "cust", ("2024-08-20T00:00:00Z", 7.5), extra={"model": "b"})
    before = await answers(gql, ent)
    assert len(await event_svc.list_events(rt, limit=100)) == 6

    monkeypatch.setattr(rt, "settings", make_settings(backend, event_retention="140d"))  # cutoff 2024-04-23
    done = await maintenance.maintain(rt)
    assert {"events_2024_01", "events_2024_02", "events_2024_03"} <= set(done.dropped)
    assert "events_2024_04" not in done.dropped  # ends 2024-05-01, after the cutoff
    assert await tables(rt, "events_2024_0%") >= {"events_2024_04", "events_2024_08"}
    assert not await tables(rt, "events_2024_01")

    assert await answers(gql, ent) == before
    kept = await event_svc.list_events(rt, limit=100)
    assert sorted(e.time.isoformat() for e in kept) == ["2024-04-02T00:00:00+00:00", "2024-08-20T00:00:00+00:00"]
    # Dedupe outlives the raw events: the dropped events sent again are duplicates and count nothing.
    got = await event_svc.ingest_events(rt, old[:4])
    assert (got.accepted, got.duplicates) == (0, 4)
    assert await answers(gql, ent) == before
    # A late event for a dropped month is still counted (its month's partition is made again).
    await events(gql, "cust", ("2024-02-20T00:00:00Z", 5), extra={"model": "a"})
    assert await tables(rt, "events_2024_02") == {"events_2024_02"}
    assert (await value(gql, "cust", "ai", "2024-02-29T00:00:00Z"))["usage"] == pytest.approx(338.5)
    # (re-sent duplicates made their months' partitions again too: empty, they go with the next pass)
    assert (await maintenance.maintain(rt)).dropped == ["events_2024_01", "events_2024_02", "events_2024_03"]


async def test_retention_is_refused_where_it_cannot_work(backend: Backend) -> None:
    if backend.name == "postgres":
        assert make_settings(backend, event_retention="400d").retention() is not None
        with pytest.raises(ValueError, match="at least 1d"):
            make_settings(backend, event_retention="2h").retention()
    else:
        with pytest.raises(ValueError, match="needs PostgreSQL"):
            make_settings(backend, event_retention="400d").retention()
    with pytest.raises(ValueError, match="needs a unit"):
        make_settings(backend, event_retention="400").retention()
    assert make_settings(backend).retention() is None
