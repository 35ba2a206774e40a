"""Event ingest over GraphQL (docs/semantics.md §1): structure, dedupe, value errors, aggregates, listing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import func, text
from sqlmodel import select

from creditgate.adapters.sql.tables import EventRow, MeterMinuteRow
from creditgate.domain.errors import BadInput
from creditgate.records import EventInput
from creditgate.services import events as event_svc
from creditgate.services import invalidation
from creditgate.services.invalidation import UsageTouch
from creditgate.services.runtime import Runtime
from tests.conftest import GQL, Clock

INGEST = "mutation($e: [CloudEventInput!]!) { ingestEvents(events: $e) { accepted duplicates } }"
CREATE = "mutation($input: CreateMeterInput!) { createMeter(input: $input) { id } }"
QUERY = """query($m: String!, $q: MeterQueryInput) { meterQuery(idOrSlug: $m, input: $q) {
  windowStart windowEnd value subject groupBy } }"""


def ev(i: int | str, subject: str = "acme", type: str = "prompt", **extra: Any) -> dict[str, Any]:
    return {"id": str(i), "source": "app", "type": type, "subject": subject, **extra}


async def total(gql: GQL, slug: str, **q: Any) -> float | None:
    rows = (await gql.ok(QUERY, m=slug, q=q or None))["meterQuery"]
    assert len(rows) <= 1, rows
    return rows[0]["value"] if rows else None


async def events_stored(rt: Runtime) -> int:
    async with rt.db.read() as s:
        return int((await s.exec(select(func.count()).select_from(EventRow))).one())


async def test_accepts_and_counts(gql: GQL, rt: Runtime) -> None:
    await gql.ok(CREATE, input={"slug": "tokens", "eventType": "prompt", "aggregation": "SUM",
                                "valueProperty": "$.tokens"})
    got = await gql.ok(INGEST, e=[ev(1, data={"tokens": 5}), ev(2, data={"tokens": "7.5"}),
                                  ev(3, time="2024-01-15T11:00:00Z", data={"tokens": 1})])
    assert got["ingestEvents"] == {"accepted": 3, "duplicates": 0}
    assert await total(gql, "tokens") == 13.5
    assert await events_stored(rt) == 3
    empty = await gql.ok(INGEST, e=[])
    assert empty["ingestEvents"] == {"accepted": 0, "duplicates": 0}


@pytest.mark.parametrize("bad", [
    {"id": ""}, {"id": "  "}, {"source": ""}, {"type": ""}, {"subject": ""},
    {"specversion": "0.3"}, {"data": [1, 2]}, {"data": "text"}, {"data": 3},
])
async def test_structural_error_rejects_the_whole_batch(gql: GQL, rt: Runtime, bad: dict[str, Any]) -> None:
    batch = [ev(1), ev(2), {**ev(3), **bad}]
    err = await gql.error(INGEST, "BAD_USER_INPUT", e=batch)
    assert "event 2" in err["message"]
    assert await events_stored(rt) == 0


async def test_missing_fields_and_bad_time_are_bad_input(gql: GQL, rt: Runtime) -> None:
    await gql.error(INGEST, "BAD_USER_INPUT", e=[ev(1), {"id": "2", "source": "app", "type": "prompt"}])
    await gql.error(INGEST, "BAD_USER_INPUT", e=[ev(1), ev(2, time="yesterday")])
    await gql.error(INGEST, "BAD_USER_INPUT", e=[ev(1), ev(2, time="2024-01-15T10:00:00")])
    assert await events_stored(rt) == 0


async def test_service_names_the_index_of_a_bad_time(rt: Runtime) -> None:
    good = EventInput(id="1", source="s", type="t", subject="x")
    with pytest.raises(BadInput, match="event 1: time"):
        await event_svc.ingest_events(rt, [good, EventInput(id="2", source="s", type="t", subject="x",
                                                            time="not a time")])
    with pytest.raises(BadInput, match="event 0: specversion"):
        await event_svc.ingest_events(rt, [EventInput(id="2", source="s", type="t", subject="x", specversion="2.0")])
    for edge in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"):  # out of range in UTC
        with pytest.raises(BadInput, match="event 0: time"):
            await event_svc.ingest_events(rt, [EventInput(id="3", source="s", type="t", subject="x", time=edge)])
    for bad in (EventInput(id="\ud800", source="s", type="t", subject="x"),  # lone surrogates
                EventInput(id="4", source="s", type="t", subject="x", data={"k": "\udc00"})):
        with pytest.raises(BadInput, match="event 0: text must be valid Unicode"):
            await event_svc.ingest_events(rt, [bad])
    assert await events_stored(rt) == 0


async def test_batch_size_limit(gql: GQL, http: httpx.AsyncClient, rt: Runtime) -> None:
    """At most 10,000 events per ingest call: a service rule, so both APIs answer alike."""
    with pytest.raises(BadInput, match="at most 10000 events"):
        await event_svc.ingest_events(rt, [EventInput(id=str(i), source="s", type="t", subject="x")
                                           for i in range(10_001)])
    err = await gql.error(INGEST, "BAD_USER_INPUT", e=[ev(i) for i in range(10_001)])
    assert "10000" in err["message"]
    resp = await http.post("/api/v1/events", json=[ev(i) for i in range(10_001)])
    assert resp.status_code == 400 and "at most 10000 events" in resp.json()["detail"]
    assert await events_stored(rt) == 0
    got = await gql.ok(INGEST, e=[ev(i) for i in range(10_000)])  # more than a GraphQL list argument's 1000
    assert got["ingestEvents"] == {"accepted": 10_000, "duplicates": 0}
    resp = await http.post("/api/v1/events", json=[ev(i, source="rest") for i in range(10_000)])
    assert resp.status_code == 204 and await events_stored(rt) == 20_000


async def test_dedupe_within_and_across_batches(gql: GQL, rt: Runtime) -> None:
    await gql.ok(CREATE, input={"slug": "calls", "eventType": "prompt", "aggregation": "COUNT"})
    got = await gql.ok(INGEST, e=[ev(1), ev(1), ev(2), {**ev(2), "source": "other"}])
    assert got["ingestEvents"] == {"accepted": 3, "duplicates": 1}
    got = await gql.ok(INGEST, e=[ev(1), ev(2), ev(3), ev(3)])
    assert got["ingestEvents"] == {"accepted": 1, "duplicates": 3}
    # a duplicate is skipped even when its content differs
    got = await gql.ok(INGEST, e=[ev(1, subject="someone-else", time="2024-01-15T10:00:00Z")])
    assert got["ingestEvents"] == {"accepted": 0, "duplicates": 1}
    assert await total(gql, "calls") == 4
    assert await events_stored(rt) == 4


async def test_concurrent_ingest_of_the_same_events(gql: GQL, rt: Runtime) -> None:
    await gql.ok(CREATE, input={"slug": "tokens", "eventType": "prompt", "aggregation": "SUM",
                                "valueProperty": "$.v", "groupBy": {"m": "$.m"}})
    await gql.ok(CREATE, input={"slug": "users", "eventType": "prompt", "aggregation": "UNIQUE_COUNT",
                                "valueProperty": "$.u"})
    base = datetime(2024, 1, 15, 11, 0, tzinfo=UTC)

    def batch(ids: range) -> list[EventInput]:
        return [EventInput(id=f"e{i}", source="app", type="prompt", subject=f"s{i % 3}",
                           time=base.replace(minute=i % 7), data={"v": "0.1", "m": f"m{i % 2}", "u": i % 5})
                for i in ids]

    batches = [batch(range(0, 300)), batch(range(100, 400)), batch(range(200, 500)),
               list(reversed(batch(range(0, 500)))), batch(range(450, 600))]
    results = await asyncio.gather(*(event_svc.ingest_events(rt, b) for b in batches))
    assert sum(r.accepted for r in results) == 600
    assert sum(r.duplicates for r in results) == sum(len(b) for b in batches) - 600
    assert await events_stored(rt) == 600
    assert await total(gql, "tokens") == 60.0
    async with rt.db.read() as s:
        conn = await s.connection()
        exact = (await conn.execute(text("SELECT sum(count) FROM meter_minutes"))).scalar_one()
        sums = list((await s.exec(select(MeterMinuteRow.sum))).all())
    assert int(exact) == 1200  # 600 events x 2 meters
    assert sum(sums, Decimal(0)) == Decimal(60)
    assert await total(gql, "users") == 5


async def test_value_errors_are_stored_and_count_nowhere(gql: GQL, rt: Runtime) -> None:
    await gql.ok(CREATE, input={"slug": "tokens", "eventType": "prompt", "aggregation": "SUM",
                                "valueProperty": "$.tokens"})
    await gql.ok(CREATE, input={"slug": "calls", "eventType": "prompt", "aggregation": "COUNT"})
    await gql.ok(CREATE, input={"slug": "users", "eventType": "prompt", "aggregation": "UNIQUE_COUNT",
                                "valueProperty": "$.user"})
    batch = [
        ev("ok", data={"tokens": 2, "user": "u1"}),
        ev("missing", data={"user": "u1"}),
        ev("null", data={"tokens": None, "user": "u1"}),
        ev("text", data={"tokens": "lots", "user": "u1"}),
        ev("bool", data={"tokens": True, "user": "u1"}),
        ev("object", data={"tokens": {"n": 1}, "user": "u1"}),
        ev("nan", data={"tokens": "NaN", "user": "u1"}),
        ev("huge", data={"tokens": "1e30", "user": "u1"}),
        ev("user-missing", data={"tokens": 3}),
        ev("user-list", data={"tokens": 3, "user": ["a"]}),
        ev("nodata"),
        ev("other-type", type="unmetered", data={"tokens": "bad"}),
    ]
    got = await gql.ok(INGEST, e=batch)
    assert got["ingestEvents"] == {"accepted": 12, "duplicates": 0}
    assert await total(gql, "tokens") == 2
    assert await total(gql, "calls") == 1  # the invalid events count toward no meter of their type
    assert await total(gql, "users") == 1
    listed = {e.id: e for e in await event_svc.list_events(rt, limit=100)}
    assert listed["ok"].validation_error is None and listed["other-type"].validation_error is None
    for bad in ["missing", "null", "text", "bool", "object", "nan", "huge", "nodata"]:
        assert "tokens" in (listed[bad].validation_error or ""), bad
    assert "users" in (listed["user-missing"].validation_error or "")
    assert "users" in (listed["user-list"].validation_error or "")
    errors = await event_svc.list_events(rt, has_error=True)
    assert len(errors) == 10


async def test_events_keep_their_time_and_late_events_update_their_minute(gql: GQL, rt: Runtime,
                                                                          clock: Clock) -> None:
    await gql.ok(CREATE, input={"slug": "tokens", "eventType": "prompt", "aggregation": "SUM",
                                "valueProperty": "$.n"})
    await gql.ok(INGEST, e=[ev(1, data={"n": 1}), ev(2, time="2024-01-15T12:05:59.5+01:00", data={"n": 2}),
                            ev(3, time="2024-01-20T00:00:00Z", data={"n": 4})])
    listed = {e.id: e for e in await event_svc.list_events(rt)}
    assert listed["1"].time == clock()
    assert listed["2"].time == datetime(2024, 1, 15, 11, 5, 59, 500000, tzinfo=UTC)
    assert listed["1"].ingested_at == clock()
    clock.set("2024-01-15T13:00:00+00:00")
    # a late event lands in its own minute and changes exactly that minute
    await gql.ok(INGEST, e=[ev(4, time="2024-01-15T11:05:10Z", data={"n": 10})])
    rows = (await gql.ok(QUERY, m="tokens", q={"from": "2024-01-15T11:00:00Z", "to": "2024-01-15T13:00:00Z",
                                               "windowSize": "MINUTE"}))["meterQuery"]
    assert [(r["windowStart"], r["value"]) for r in rows] == [
        ("2024-01-15T11:05:00Z", 12.0), ("2024-01-15T12:00:00Z", 1.0)]
    future = await total(gql, "tokens", **{"from": "2024-01-20T00:00:00Z", "to": "2024-01-20T00:01:00Z"})
    assert future == 4


async def test_invalidation_gets_one_touch_per_type_and_subject(gql: GQL, rt: Runtime,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, list[UsageTouch]]] = []

    async def in_tx(session: Any, touches: list[UsageTouch]) -> None:
        seen.append(("tx", list(touches)))

    async def after(runtime: Runtime, touches: list[UsageTouch]) -> None:
        seen.append(("after", list(touches)))

    monkeypatch.setattr(invalidation, "usage_changed_in_tx", in_tx)
    monkeypatch.setattr(invalidation, "usage_changed", after)
    await gql.ok(INGEST, e=[ev(1, time="2024-01-15T11:30:20Z"), ev(2, time="2024-01-15T10:00:59Z"),
                            ev(3, subject="other"), ev(4, type="api", time="2024-01-15T09:00:00Z")])
    t = datetime(2024, 1, 15, 12, 0, tzinfo=UTC)
    expected = [UsageTouch("api", "acme", t.replace(hour=9)), UsageTouch("prompt", "acme", t.replace(hour=10)),
                UsageTouch("prompt", "other", t)]
    assert seen == [("tx", expected), ("after", expected)]
    seen.clear()
    await gql.ok(INGEST, e=[ev(1), ev(2)])  # only duplicates: nothing changed
    assert seen == []
    await gql.ok(INGEST, e=[ev(1), ev(5, time="2024-01-15T08:00:00Z")])
    assert seen == [(k, [UsageTouch("prompt", "acme", t.replace(hour=8))]) for k in ("tx", "after")]


async def test_list_events_filters(gql: GQL, rt: Runtime, clock: Clock) -> None:
    await gql.ok(INGEST, e=[ev(1, time="2024-01-15T10:00:00Z", data={"a": 1}),
                            ev(2, subject="other", time="2024-01-15T11:00:00Z"),
                            ev(3, time="2024-01-15T09:00:00Z")])
    listed = await event_svc.list_events(rt)
    assert [e.id for e in listed] == ["2", "1", "3"]
    first = listed[1]
    assert (first.source, first.type, first.subject, first.data) == ("app", "prompt", "acme", {"a": 1})
    assert [e.id for e in await event_svc.list_events(rt, subject="acme")] == ["1", "3"]
    assert [e.id for e in await event_svc.list_events(rt, limit=1)] == ["2"]
    t10 = datetime(2024, 1, 15, 10, tzinfo=UTC)
    assert [e.id for e in await event_svc.list_events(rt, from_=t10, to=t10.replace(hour=11))] == ["1"]
    assert [e.id for e in await event_svc.list_events(rt, event_id="3")] == ["3"]
    assert len(await event_svc.list_events(rt, ingested_from=clock())) == 3
    with pytest.raises(BadInput):
        await event_svc.list_events(rt, limit=0)


async def test_awkward_text_round_trips(gql: GQL, rt: Runtime) -> None:
    await gql.ok(CREATE, input={"slug": "calls", "eventType": "t\\n\tx", "aggregation": "COUNT",
                                "groupBy": {"g": "$['k\\\\ey']"}})
    odd = "a\tb\\c\nd\r\\N é 🚀"
    data = {"text": odd, "k\\ey": odd, "nested": {"list": [1, "\\", None]}}
    got = await gql.ok(INGEST, e=[{"id": odd, "source": odd, "type": "t\\n\tx", "subject": odd, "data": data}])
    assert got["ingestEvents"] == {"accepted": 1, "duplicates": 0}
    (stored,) = await event_svc.list_events(rt)
    assert (stored.id, stored.source, stored.type, stored.subject, stored.data) == (odd, odd, "t\\n\tx", odd, data)
    rows = (await gql.ok(QUERY, m="calls", q={"groupBy": ["subject", "g"]}))["meterQuery"]
    assert [(r["subject"], r["groupBy"], r["value"]) for r in rows] == [(odd, {"g": odd}, 1.0)]
    dup = await gql.ok(INGEST, e=[{"id": odd, "source": odd, "type": "x", "subject": "s"}])
    assert dup["ingestEvents"] == {"accepted": 0, "duplicates": 1}


async def test_nul_characters_and_huge_integers(gql: GQL, rt: Runtime) -> None:
    err = await gql.error(INGEST, "BAD_USER_INPUT", e=[ev(1), ev(2, subject="a\u0000b")])
    assert "event 1" in err["message"]
    await gql.error(INGEST, "BAD_USER_INPUT", e=[ev(1, data={"k": ["x\u0000"]})])
    await gql.error(INGEST, "BAD_USER_INPUT", e=[ev(1, data={"k\u0000": 1})])
    assert await events_stored(rt) == 0
    # a literal backslash-u0000 is ordinary text; integers beyond 64 bits are kept
    data = {"text": "\\u0000", "big": 123456789012345678901234567890}
    got = await gql.ok(INGEST, e=[ev(1, data=data)])
    assert got["ingestEvents"]["accepted"] == 1
    (stored,) = await event_svc.list_events(rt)
    assert stored.data == data


async def test_partly_known_batch_of_several_types_counts_only_its_new_valid_events(gql: GQL, rt: Runtime) -> None:
    """The second store path (some events stored before): groups, UNIQUE_COUNT, COUNT of another type
    and value errors listed meter by meter, counted from the new events only (§1.3, §1.7)."""
    await gql.ok(CREATE, input={"slug": "tokens", "eventType": "prompt", "aggregation": "SUM",
                                "valueProperty": "$.tokens", "groupBy": {"model": "$.model"}})
    await gql.ok(CREATE, input={"slug": "users", "eventType": "prompt", "aggregation": "UNIQUE_COUNT",
                                "valueProperty": "$.user"})
    await gql.ok(CREATE, input={"slug": "calls", "eventType": "call", "aggregation": "COUNT"})
    first = [ev("p1", data={"tokens": 2, "model": "gpt", "user": "u1"}), ev("c1", type="call")]
    assert (await gql.ok(INGEST, e=first))["ingestEvents"] == {"accepted": 2, "duplicates": 0}
    second = [ev("p1", data={"tokens": "bad", "model": "gpt"}),  # known: counts nowhere, its error is not recorded
              ev("p2", data={"tokens": 3, "model": "gpt", "user": "u2"}),
              ev("c1", type="call"), ev("c2", type="call"),
              ev("p3", data={"tokens": "4.25", "model": "llama", "user": "u1"}),
              ev("p4", data={"tokens": "x", "model": "gpt"}),  # both meters of its type refuse it
              ev("p2", data={"tokens": 50, "model": "gpt", "user": "u8"})]  # same batch: the first wins
    assert (await gql.ok(INGEST, e=second))["ingestEvents"] == {"accepted": 4, "duplicates": 3}
    assert await total(gql, "tokens", filterGroupBy={"model": "gpt"}) == 5
    assert await total(gql, "tokens", filterGroupBy={"model": "llama"}) == 4.25
    assert await total(gql, "users") == 2
    assert await total(gql, "calls") == 2
    listed = {e.id: e for e in await event_svc.list_events(rt, limit=100)}
    assert listed["p4"].validation_error == ("meter tokens: value $.tokens must be a number or a numeric string; "
                                             "meter users: value $.user is missing or null")
    assert listed["p2"].data["tokens"] == 3 and listed["p1"].data["tokens"] == 2
    assert [e.validation_error for e in listed.values() if e.id != "p4"] == [None] * 5
